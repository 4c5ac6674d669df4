import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

/// `ShippingLag` and `LogInspector.overview`: positions against a log's end, per log and for many logs.
@Suite struct ShippingLagTests {
    @Test func positionsBehindTheEndLagByRecordsAndEmitAge() throws {
        let log = try CatalogLog(records: 1000, prefix: "walctl-lag")
        let now = Int64(Date().timeIntervalSince1970 * 1e9) + 60_000_000_000
        let lags = ShippingLag.measure(
            directory: log.path,
            lastSeq: 1000,
            positions: [
                CursorPosition(name: "postgres", source: "postgres", seq: 1000),
                CursorPosition(name: "kafka", source: "local", seq: 400),
                CursorPosition(name: "new", source: "local", seq: 0),
            ],
            now: now
        )
        #expect(lags.map(\.recordsBehind) == [0, 600, 1000])
        #expect(lags[0].ageSeconds == 0)
        let emitted401 = try #require(log.records.first { $0.seq == 401 }?.timestampNanos)
        #expect(abs(lags[1].ageSeconds - Double(now - emitted401) / 1e9) < 1e-6)
        #expect(lags[2].ageSeconds >= lags[1].ageSeconds)
        #expect(lags.map(\.name) == ["postgres", "kafka", "new"])
    }

    @Test func standingsOfManyLogsReadLocalCursorsAndSinkPositions() throws {
        let first = try CatalogLog(records: 1200, prefix: "walctl-lag")
        let second = try CatalogLog(records: 300, prefix: "walctl-lag")
        try CursorStore(path: first.path).store("postgres", seq: 1000)
        let standings = ShippingLag.standings(
            of: [first.path, second.path, "/nonexistent/walctl-lag"],
            sinks: { overview in
                overview.logID == second.logID.description
                    ? [CursorPosition(name: "kafka", source: "kafka", seq: 300)] : []
            },
            now: Int64(Date().timeIntervalSince1970 * 1e9)
        )
        #expect(standings.count == 2, "an unreadable directory is left out")
        let one = standings[0]
        #expect(one.overview.records == 1200 && one.overview.lastSeq == 1200 && one.overview.firstSeq == 1)
        #expect(one.overview.cursors == ["postgres": 1000])
        #expect(one.overview.bytesOnDisk > 0 && one.overview.bytesAllocated >= one.overview.bytesOnDisk)
        #expect(one.overview.writerPID == nil)
        #expect(
            one.lags == [
                CursorLag(
                    name: "postgres",
                    source: "local",
                    seq: 1000,
                    recordsBehind: 200,
                    ageSeconds: one.lags[0].ageSeconds
                )
            ]
        )
        #expect(one.lags[0].ageSeconds > 0)
        let two = standings[1]
        #expect(two.lags.map(\.recordsBehind) == [0])
        #expect(two.lags.map(\.source) == ["kafka"])
    }

    @Test func theOverviewAgreesWithTheThoroughExamination() throws {
        let log = try CatalogLog(records: 5000, prefix: "walctl-lag")
        let overview = try LogInspector.overview(path: log.path)
        let summary = try LogInspector.examine(path: log.path)
        #expect(overview.records == summary.records)
        #expect(overview.firstSeq == summary.firstSeq && overview.lastSeq == summary.lastSeq)
        #expect(overview.bytesOnDisk == summary.bytesOnDisk)
        #expect(overview.segments == summary.segments)
        #expect(overview.stagedRecords == summary.staged.records)
    }
}
