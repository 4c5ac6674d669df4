import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

extension PostgresTests {
    /// `walctl replay --to postgres` through the built executable against the test server.
    @Suite struct Replay {
        func replay(_ path: String, _ database: TestDatabase, _ extra: [String] = []) throws -> [String: Any] {
            let result = try walctl(
                ["replay", path, "--to", "postgres", "--postgres", database.conninfo, "--json"] + extra
            )
            #expect(result.status == 0, "\(result.err)")
            return try #require(try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any])
        }

        @Test func replayAfterTruncatingRestoresEveryRowExactlyOnceAndASecondReplayAddsNothing() throws {
            let database = try TestDatabase()
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "20000", "--threads", "2"]).status == 0)
            try drain(path, into: database)
            try expectExactlyOnce(path, database)

            // An outage lost the rows (restored from an old backup, say): the cursor still says everything shipped.
            for table in PostgresSchema.tables { _ = try database.connect().execute("TRUNCATE \(table)") }
            #expect(try database.allRows().isEmpty)
            let first = try replay(path, database)
            #expect(first["sent"] as? Int == 20_000 && first["already_present"] as? Int == 0)
            try expectExactlyOnce(path, database)

            let second = try replay(path, database)
            #expect(second["sent"] as? Int == 0 && second["already_present"] as? Int == 20_000)
            try expectExactlyOnce(path, database)

            // A partial loss: only the missing rows are written.
            _ = try database.connect().execute("DELETE FROM agent_state_metrics WHERE wal_seq BETWEEN 5000 AND 9000")
            let missing = try logRecords(path).filter { (5000...9000).contains($0.seq) && $0.category == .state }.count
            let partial = try replay(path, database, ["--from-seq", "4000", "--to-seq", "10000"])
            #expect(partial["sent"] as? Int == missing)
            #expect(partial["already_present"] as? Int == 6001 - missing)
            try expectExactlyOnce(path, database)
        }

        @Test func replayDoesNotTouchTheCursorUnlessAskedAndNeverMovesItBack() throws {
            let database = try TestDatabase()
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "5000"]).status == 0)
            func cursor() throws -> String? {
                try database.scalar("SELECT wal_seq FROM walctl_cursors WHERE shipper = 'postgres'")
            }
            _ = try replay(path, database, ["--to-seq", "3000"])
            #expect(try cursor() == nil, "replay leaves the shipper's cursor alone")
            let advanced = try replay(path, database, ["--to-seq", "3000", "--advance-cursor"])
            #expect(advanced["cursor"] as? Int == 3000)
            #expect(try cursor() == "3000")
            // The shipper then resumes after the replayed range: every row once.
            try drain(path, into: database)
            try expectExactlyOnce(path, database)
            let back = try replay(path, database, ["--to-seq", "100", "--advance-cursor"])
            #expect(back["cursor"] as? Int == 5000, "never moved back")
            // A cursor before --from-seq would skip records: refused.
            _ = try database.connect().execute("UPDATE walctl_cursors SET wal_seq = 10")
            let refused = try walctl([
                "replay", path, "--to", "postgres", "--postgres", database.conninfo, "--from-seq", "4000",
                "--advance-cursor",
            ])
            #expect(refused.status == 1)
            #expect(refused.err.contains("advancing it would skip 11...3999"))
            #expect(try cursor() == "10")
        }

        @Test func aDeadDatabaseFailsWithWhereToResume() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "1000"]).status == 0)
            let result = try walctl([
                "replay", path, "--to", "postgres", "--postgres", "host=127.0.0.1 port=1 user=nobody connect_timeout=2",
                "--retries", "2",
            ])
            #expect(result.status == 1)
            #expect(result.err.contains("resume with --from-seq 1"))
            #expect(result.err.contains("attempt 1 failed"))
        }
    }
}
