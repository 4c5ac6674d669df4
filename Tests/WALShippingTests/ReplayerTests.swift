import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

/// `Replayer` in process, against `FakeSink`: ranges, filters, retries after injected failures, idempotence,
/// cursor advance, dry runs.
@Suite struct ReplayerTests {
    func configuration(from: UInt64 = 1, to: UInt64 = .max, batch: Int = 500) -> ReplayConfiguration {
        var settings = ReplayConfiguration()
        settings.filter.fromSeq = from
        settings.filter.toSeq = to
        settings.batchSize = batch
        settings.retry = RetryPolicy(initialMilliseconds: 1, maximumMilliseconds: 2)
        return settings
    }

    @Test func aRangeIsSentOnceAndASecondReplayAddsNothing() throws {
        let log = try CatalogLog(records: 3000, prefix: "walctl-replayer")
        let sink = FakeSink()
        let first = try Replayer(directory: log.path, sink: sink, configuration: configuration(from: 1001, to: 2500))
            .run()
        #expect(first.sent == 1500 && first.alreadyPresent == 0 && first.failed == 0)
        #expect(first.firstSeq == 1001 && first.lastSeq == 2500)
        #expect(first.batches == 3)
        let rows = sink.rows(of: log.logID)
        #expect(Set(rows.keys) == Set(1001...2500))
        for record in log.records where (1001...2500).contains(record.seq) {
            #expect(rows[record.seq] == record, "seq \(record.seq) arrives as written")
        }
        let second = try Replayer(directory: log.path, sink: sink, configuration: configuration(from: 1001, to: 2500))
            .run()
        #expect(second.sent == 0 && second.alreadyPresent == 1500)
        #expect(sink.rows(of: log.logID).count == 1500)
        #expect(try sink.committedSeq(logID: log.logID) == 0, "replay commits no cursor")
    }

    @Test func contentFiltersPassRecordsOverAndCountThem() throws {
        let log = try CatalogLog(records: 2000, prefix: "walctl-replayer")
        let sink = FakeSink()
        var settings = configuration()
        settings.filter.metrics = ["quorum_*"]
        let statistics = try Replayer(directory: log.path, sink: sink, configuration: settings).run()
        let expected = log.records.filter { $0.name.hasPrefix("quorum_") }
        #expect(expected.count > 0)
        #expect(statistics.sent == UInt64(expected.count))
        #expect(statistics.scan.filteredOut == UInt64(2000 - expected.count))
        #expect(Set(sink.rows(of: log.logID).keys) == Set(expected.map(\.seq)))
    }

    @Test func injectedFailuresAreRetriedOnAFreshConnectionWithoutDuplicates() throws {
        let log = try CatalogLog(records: 2000, prefix: "walctl-replayer")
        let sink = FakeSink()
        sink.failNext(3)
        var retries: [Int] = []
        let statistics = try Replayer(directory: log.path, sink: sink, configuration: configuration()).run { event in
            if case .retrying(let attempt, _) = event { retries.append(attempt) }
        }
        #expect(retries == [1, 2, 3])
        #expect(statistics.retries == 3)
        #expect(sink.disconnects == 3)
        // A failed attempt wrote half its batch; the retry counts those as present and adds no copy.
        #expect(statistics.sent + statistics.alreadyPresent == 2000)
        #expect(statistics.alreadyPresent > 0)
        #expect(Set(sink.rows(of: log.logID).keys) == Set(1...2000))
    }

    @Test func aBatchThatKeepsFailingStopsWithWhereToResume() throws {
        let log = try CatalogLog(records: 2000, prefix: "walctl-replayer")
        let sink = FakeSink()
        var settings = configuration(batch: 500)
        settings.attempts = 2
        // The first two batches pass; the third fails twice (its attempts).
        let replayer = Replayer(directory: log.path, sink: sink, configuration: settings)
        var batches = 0
        let error = #expect(throws: ReplayError.self) {
            try replayer.run { event in
                if case .progress = event {
                    batches += 1
                    if batches == 2 { sink.failNext(2) }
                }
            }
        }
        #expect(error?.resumeFromSeq == 1001)
        #expect(error?.message.contains("resume with --from-seq 1001") == true)
        #expect(error?.statistics.sent == 1000)
    }

    @Test func advancingTheCursorMovesItForwardOnlyAndRefusesToSkip() throws {
        let log = try CatalogLog(records: 1000, prefix: "walctl-replayer")
        let sink = FakeSink()
        var settings = configuration(to: 600)
        settings.advancesCursor = true
        let advanced = try Replayer(directory: log.path, sink: sink, configuration: settings).run()
        #expect(advanced.cursor == 600)
        #expect(try sink.committedSeq(logID: log.logID) == 600)

        sink.setCommitted(900, of: log.logID)
        let back = try Replayer(directory: log.path, sink: sink, configuration: settings).run()
        #expect(back.cursor == 900, "never moved back")

        sink.setCommitted(10, of: log.logID)
        settings.filter.fromSeq = 400
        let error = #expect(throws: ReplayError.self) {
            try Replayer(directory: log.path, sink: sink, configuration: settings).run()
        }
        #expect(error?.message.contains("advancing it would skip 11...399") == true)
        #expect(try sink.committedSeq(logID: log.logID) == 10)
    }

    @Test func aDryRunCountsWithoutASink() throws {
        let log = try CatalogLog(records: 1500, prefix: "walctl-replayer")
        let statistics = try Replayer(directory: log.path, sink: nil, configuration: configuration(to: 1200)).run()
        #expect(statistics.sent == 1200)
        #expect(statistics.scan.matched == 1200)
    }

    @Test func theFileSinkWritesTheShippersEnvelopes() throws {
        let log = try CatalogLog(records: 800, prefix: "walctl-replayer")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let fast = try EnvelopeFileSink.create(path: directory.file("fast.jsonl"))
        let statistics = try Replayer(directory: log.path, sink: fast, configuration: configuration()).run()
        try fast.finish()
        #expect(statistics.sent == 800)
        // The same lines as rendering decoded records (`replay(_:)`), which other callers use.
        let slow = try EnvelopeFileSink.create(path: directory.file("slow.jsonl"))
        let batch = ShipBatch(
            logID: log.logID,
            records: log.records,
            throughSeq: 800,
            skipped: [],
            sourceService: Envelope.sourceService(directory: log.path)
        )
        #expect(try slow.replay(batch).sent == 800)
        try slow.finish()
        let fastBytes = try Data(contentsOf: URL(fileURLWithPath: directory.file("fast.jsonl")))
        let slowBytes = try Data(contentsOf: URL(fileURLWithPath: directory.file("slow.jsonl")))
        #expect(fastBytes == slowBytes)
        #expect(fastBytes.split(separator: 0x0A).count == 800)
    }
}
