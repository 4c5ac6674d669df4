import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

extension PostgresTests {
    /// `Replayer` in process against the test server: the COPY fast path into an empty range, the idempotent
    /// path over rows already there.
    @Suite struct LibraryReplay {
        @Test func replayThroughTheLibraryWritesEachRowOnceWhateverIsAlreadyThere() throws {
            let database = try TestDatabase()
            let log = try CatalogLog(records: 6000, prefix: "walctl-pg-replay")
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            defer { sink.disconnect() }
            var settings = ReplayConfiguration()
            settings.batchSize = 1000
            settings.filter.toSeq = 3000
            let first = try Replayer(directory: log.path, sink: sink, configuration: settings).run()
            #expect(first.sent == 3000 && first.alreadyPresent == 0)
            settings.filter.toSeq = .max
            let second = try Replayer(directory: log.path, sink: sink, configuration: settings).run()
            #expect(second.sent == 3000 && second.alreadyPresent == 3000)
            _ = try database.connect().execute("DELETE FROM agent_state_metrics WHERE wal_seq BETWEEN 100 AND 2000")
            let missing = log.records.filter { (100...2000).contains($0.seq) && $0.category == .state }.count
            let third = try Replayer(directory: log.path, sink: sink, configuration: settings).run()
            #expect(third.sent == UInt64(missing) && third.alreadyPresent == UInt64(6000 - missing))
            let rows = try database.allRows()
            #expect(rows.count == 6000)
            #expect(Set(rows.map(\.seq)) == Set(1...6000))
            for (row, record) in zip(rows.sorted { $0.seq < $1.seq }, log.records) {
                #expect(row.name == record.name && row.value == record.value && row.tags == record.tags)
            }
            #expect(try database.scalar("SELECT count(*) FROM walctl_cursors") == "0", "no cursor written")
        }
    }
}
