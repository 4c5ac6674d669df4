import Dispatch
import Synchronization
import Testing
import WALCore
import WALMetrics
import WALTestKit

@testable import WALShipping

/// `DeliveryPipeline` without a server: order, positions, bounded depth, and what a failure does to the batches
/// handed over behind it.
@Suite struct DeliveryPipelineTests {
    let logID = LogID.random()

    func batch(through seq: UInt64) -> ShipBatch { ShipBatch(logID: logID, records: [], throughSeq: seq, skipped: []) }

    struct Refused: Error {}

    /// Waits until the positions the pipeline reports bring the log to `seq`.
    func reported(by pipeline: DeliveryPipeline, reaching seq: UInt64) -> Bool {
        var position: UInt64 = 0
        return waitFor {
            let positions = (try? pipeline.awaitBatchesInFlight(milliseconds: 50)) ?? [:]
            position = max(position, positions[logID] ?? 0)
            return position == seq
        }
    }

    /// Transactions that block until released, one at a time, and fail on request.
    final class Transactions: @unchecked Sendable {
        let state = Mutex<(ran: [UInt64], failing: Set<UInt64>)>(([], []))
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)

        func run(_ batches: [ShipBatch]) throws {
            started.signal()
            release.wait()
            let through = batches.last?.throughSeq ?? 0
            let fails = state.withLock { state in
                state.ran.append(through)
                return state.failing.contains(through)
            }
            if fails { throw Refused() }
        }
    }

    @Test func batchesCommitInOrderWhileTheNextWaitsAndPositionsAreReportedOnce() throws {
        let transactions = Transactions()
        let pipeline = DeliveryPipeline(name: "test-pipeline") { try transactions.run($0) }
        defer { pipeline.close() }
        #expect(try pipeline.send([batch(through: 10)]).isEmpty)
        transactions.started.wait()
        // One runs, one waits ready: the third hand-over would block, so it is made after a release.
        #expect(try pipeline.send([batch(through: 20)]).isEmpty)
        #expect(pipeline.counts.waiting == 1)
        #expect(pipeline.hasBatchesInFlight)
        transactions.release.signal()
        transactions.started.wait()  // the second one runs now: the first committed
        #expect(try pipeline.send([batch(through: 30)]) == [logID: 10])
        transactions.release.signal()
        transactions.release.signal()
        #expect(reported(by: pipeline, reaching: 30))
        #expect(transactions.state.withLock { $0.ran } == [10, 20, 30])
        #expect(!pipeline.hasBatchesInFlight)
        #expect(pipeline.counts.runs == 3 && pipeline.counts.mostWaiting == 1)
    }

    @Test func aFailureDropsTheBatchWaitingBehindItAndIsThrownAfterThePositionsBeforeIt() throws {
        let transactions = Transactions()
        transactions.state.withLock { $0.failing = [20] }
        let pipeline = DeliveryPipeline(name: "test-pipeline") { try transactions.run($0) }
        defer { pipeline.close() }
        _ = try pipeline.send([batch(through: 10)])
        transactions.started.wait()
        _ = try pipeline.send([batch(through: 20)])
        transactions.release.signal()  // 10 commits
        transactions.started.wait()
        #expect(try pipeline.send([batch(through: 30)]) == [logID: 10])  // 30 waits behind 20
        transactions.release.signal()  // 20 fails: 30 is planned after it and must never run
        // The positions committed before the failure came first; the failure follows, once.
        #expect(throws: Refused.self) {
            for _ in 0..<50 { _ = try pipeline.awaitBatchesInFlight(milliseconds: 100) }
        }
        #expect(!pipeline.hasBatchesInFlight)
        #expect(transactions.state.withLock { $0.ran } == [10, 20])
        // Shipping goes on from the committed position.
        transactions.state.withLock { $0.failing = [] }
        _ = try pipeline.send([batch(through: 20)])
        transactions.release.signal()
        #expect(reported(by: pipeline, reaching: 20))
        #expect(transactions.state.withLock { $0.ran } == [10, 20, 20])
    }

    @Test func aSendAfterAFailureReportsCommittedPositionsFirstAndQueuesNothing() throws {
        let transactions = Transactions()
        transactions.state.withLock { $0.failing = [20] }
        let pipeline = DeliveryPipeline(name: "test-pipeline") { try transactions.run($0) }
        defer { pipeline.close() }
        _ = try pipeline.send([batch(through: 10)])
        _ = try pipeline.send([batch(through: 20)])
        transactions.release.signal()  // 10 commits
        transactions.release.signal()  // 20 fails
        #expect(waitFor { transactions.state.withLock { $0.ran.count } == 2 && !pipeline.counts.running })
        // 10's position is not reported yet: this send reports it and hands nothing over (30 was read on the
        // assumption that 20 commits); the failure is thrown by the next call.
        #expect(try pipeline.send([batch(through: 30)]) == [logID: 10])
        #expect(pipeline.hasBatchesInFlight)
        #expect(throws: Refused.self) { _ = try pipeline.awaitBatchesInFlight(milliseconds: 0) }
        #expect(!pipeline.hasBatchesInFlight)
        #expect(transactions.state.withLock { $0.ran } == [10, 20])
        #expect(pipeline.counts.runs == 2)
    }
}
