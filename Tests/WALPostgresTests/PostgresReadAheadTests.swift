import Foundation
import Logging
import Synchronization
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

extension PostgresTests {
    /// Read-ahead (`send` through `DeliveryPipeline`): while one transaction commits, the next batch waits ready;
    /// when a commit fails, the batch waiting is dropped and shipping goes on from the committed cursor.
    @Suite struct ReadAhead {
        /// What the commit hook saw, shared with the sink's thread.
        final class Observations: @unchecked Sendable {
            let admin: PGConnection
            let logID: String
            struct State {
                var transactions = 0
                var failed: [Int] = []
                var waitingAtFailure: [Int] = []
                var violations: [String] = []
            }
            let state = Mutex(State())

            init(admin: PGConnection, logID: String) {
                self.admin = admin
                self.logID = logID
            }

            /// The cursor as committed (the transaction calling the hook has not committed yet).
            func committedCursor() throws(PGError) -> UInt64 {
                let value = try admin.execute(
                    "SELECT wal_seq FROM walctl_cursors WHERE log_id = $1 AND shipper = 'postgres'",
                    [logID]
                ).value(0, 0)
                return value.flatMap { UInt64($0) } ?? 0
            }
        }

        /// Fails the commit of transactions 3 (an error before `COMMIT`, rolled back) and 7 (the server ends the
        /// session under it), each time with the next batch already handed over and waiting: the waiting batch is
        /// never written, every transaction starts right after the committed cursor, and every record is in
        /// PostgreSQL exactly once.
        @Test func aFailedCommitDropsTheBatchReadAheadAndLosesNothing() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "40000", "--threads", "2"]).status == 0)
            let logID = try LogDirectory(path: path).readMeta().logID.description
            let observations = Observations(admin: try database.connect(), logID: logID)
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            sink.beforeCommit = { [unowned sink] batches throws(PGError) in
                let number = observations.state.withLock { state -> Int in
                    state.transactions += 1
                    return state.transactions
                }
                // Every transaction continues the committed cursor: none was planned past a failure.
                let cursor = try observations.committedCursor()
                for batch in batches where batch.logID.description == logID {
                    if let first = batch.records.first?.seq, first != cursor + 1 {
                        observations.state.withLock {
                            $0.violations.append("transaction \(number) starts at \(first), cursor \(cursor)")
                        }
                    }
                }
                guard number == 3 || number == 7 else { return }
                // The next batch is read, decoded and handed over while this one commits.
                let ready = waitFor(seconds: 30) { sink.pipelineCounts.waiting > 0 }
                observations.state.withLock {
                    $0.failed.append(number)
                    $0.waitingAtFailure.append(ready ? sink.pipelineCounts.waiting : 0)
                }
                if number == 3 {
                    throw PGError(message: "injected: the commit of transaction 3 failed", connectionLost: true)
                }
                _ = try? observations.admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'walctl-postgres'"
                )
            }
            var settings = ShipperConfiguration()
            settings.batchSize = 100
            settings.catchUpBatchSize = 2000
            settings.pollMilliseconds = 5
            settings.retry = RetryPolicy(initialMilliseconds: 5, maximumMilliseconds: 20)
            settings.drainThroughSeq = try LogInspector.lastSealedSeqCheap(path: path)
            let shipper = Shipper(directory: path, sink: sink, configuration: settings, logger: Logger(label: "test"))
            try shipper.runBlocking()
            let seen = observations.state.withLock { $0 }
            #expect(seen.failed == [3, 7])
            #expect(seen.waitingAtFailure.allSatisfy { $0 >= 1 }, "a batch was ready behind each failed commit")
            #expect(seen.violations.isEmpty, "\(seen.violations)")
            #expect(shipper.statistics.retries == 2)
            #expect(shipper.statistics.committedSeq == 40_000)
            try expectExactlyOnce(path, database)
            #expect(try database.scalar("SELECT count(*) FROM walctl_dead_letters") == "0")
        }

        /// The pipeline keeps the next batch ready: in a drain of a backlog, most transactions start with the next
        /// one already handed over, and the statistics count every record once.
        @Test func aBacklogShipsWithTheNextBatchReady() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "30000", "--threads", "2"]).status == 0)
            var settings = ShipperConfiguration()
            settings.catchUpBatchSize = 3000
            settings.drainThroughSeq = try LogInspector.lastSealedSeqCheap(path: path)
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let shipper = Shipper(directory: path, sink: sink, configuration: settings, logger: Logger(label: "test"))
            try shipper.runBlocking()
            #expect(sink.pipelineCounts.runs == 10)
            #expect(sink.pipelineCounts.mostWaiting == 1)
            #expect(shipper.statistics.recordsShipped == 30_000)
            #expect(shipper.statistics.batchesShipped == 10)
            #expect(shipper.statistics.bytesShipped > 0)
            #expect(shipper.statistics.lastProgressNanos != nil)
            try expectExactlyOnce(path, database)
        }

        /// A transaction that hangs on the sink's own thread (a lock wait inside PostgreSQL) while the engine's
        /// calls keep returning is still marked as a call in progress: /healthz reads that mark (before, only calls
        /// made by the engine's thread were, and a hung read-ahead transaction went unseen by it). The mark starts
        /// no later than the hang and clears when the transaction ends.
        @Test func aTransactionHungOnTheSinksThreadIsMarkedAsACallInProgress() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "3000"]).status == 0)
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let hung = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            let hangs = Atomic<Int>(0)
            sink.beforeCommit = { _ throws(PGError) in
                guard hangs.wrappingAdd(1, ordering: .relaxed).oldValue == 1 else { return }
                hung.signal()
                release.wait()
            }
            var settings = ShipperConfiguration()
            settings.catchUpBatchSize = 1000
            settings.drainThroughSeq = try LogInspector.lastSealedSeqCheap(path: path)
            let shipper = Shipper(directory: path, sink: sink, configuration: settings, logger: Logger(label: "test"))
            let done = DispatchSemaphore(value: 0)
            let outcome = Mutex<(any Error)?>(nil)
            Thread {
                do { try shipper.runBlocking() } catch { outcome.withLock { $0 = error } }
                done.signal()
            }.start()
            #expect(hung.wait(timeout: .now() + 60) == .success, "the second transaction reached its commit")
            let hungAt = monotonicNanos()
            // The engine's own calls come and go meanwhile (the last batch is handed over; it waits in bounded
            // calls): for a second of samples, the mark stays at the sink's transaction, begun before the hang.
            var samples = 0
            var unmarked: [String] = []
            let until = hungAt + 1_000_000_000
            while monotonicNanos() < until {
                let since = shipper.statistics.sinkCallSinceNanos
                if since == nil || since! > hungAt {
                    unmarked.append(since.map { "from \($0 - hungAt) ns after" } ?? "none")
                }
                samples += 1
                usleep(2000)
            }
            #expect(samples > 10)
            #expect(unmarked.count == 0, "\(unmarked.count) of \(samples) samples: \(unmarked.prefix(5))")
            #expect(sink.callRunningSinceNanos != nil)
            release.signal()
            #expect(done.wait(timeout: .now() + 60) == .success)
            #expect(outcome.withLock { $0 } == nil)
            #expect(sink.callRunningSinceNanos == nil)
            #expect(shipper.statistics.sinkCallSinceNanos == nil)
            #expect(shipper.statistics.committedSeq == 3000)
            try expectExactlyOnce(path, database)
        }

        /// The database itself refuses a batch that does not start right after the committed cursor (one planned
        /// past a failed commit), before anything is written; the batch that does continue it commits.
        @Test func aBatchThatDoesNotContinueTheCommittedCursorIsRefusedAndWritesNothing() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "3000"]).status == 0)
            let records = try logRecords(path)
            let logID = try LogDirectory(path: path).readMeta().logID
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            #expect(try sink.committedSeqs(logIDs: [logID]) == [logID: 0])
            func batch(_ range: Range<Int>, after: UInt64?) -> ShipBatch {
                var batch = ShipBatch(
                    logID: logID,
                    records: Array(records[range]),
                    throughSeq: records[range.upperBound - 1].seq,
                    skipped: []
                )
                batch.afterSeq = after
                return batch
            }
            try sink.deliver(batch(0..<1000, after: 0))
            // Planned on the assumption that 1001...2000 committed, which it did not.
            let refusal = #expect(throws: PGError.self) { try sink.deliver(batch(2000..<3000, after: 2000)) }
            #expect(refusal?.sqlState == "40001" && refusal?.isTransient == true)
            #expect(try database.scalar("SELECT wal_seq FROM walctl_cursors") == "1000")
            #expect(try database.allRows().count == 1000)
            // Through read-ahead too: the refusal is thrown by the call after the hand-over.
            let late = #expect(throws: PGError.self) {
                _ = try sink.send([batch(1000..<2000, after: 500)])
                _ = try sink.awaitBatchesInFlight(milliseconds: 60_000)
            }
            #expect(late?.sqlState == "40001")
            sink.disconnect()
            #expect(try sink.committedSeqs(logIDs: [logID]) == [logID: 1000])
            _ = try sink.send([batch(1000..<2000, after: 1000)])
            try sink.deliver(batch(2000..<3000, after: 2000))
            try expectExactlyOnce(path, database)
        }
    }
}
