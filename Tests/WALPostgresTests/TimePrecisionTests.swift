import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit

@testable import WALPostgres

extension PostgresTests {
    /// One rule per sink for what PostgreSQL cannot keep whole (wal-format.md, "What each sink keeps").
    @Suite struct TimePrecision {
        /// Emit times rounded to the nearest microsecond, ties to even, the same instant PostgreSQL's own text
        /// input gives for the nine-digit RFC 3339 time of the envelope; -0.0 kept as -0.
        @Test func timestampsRoundToTheNearestMicrosecondAsPostgresTextInputDoes() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            // Two days ago, a whole second: inside retention (the sink deletes expired rows when it connects).
            let second = (Int64(Date().timeIntervalSince1970) - 2 * 86_400) * 1_000_000_000
            var offsets: [Int64] = [0, 1, 499, 500, 501, 999, 1_000, 1_500, 2_500, 3_499, 999_999_499, 999_999_500]
            var generator = SeededGenerator(test: "timestampsRoundToTheNearestMicrosecond", default: 700)
            for _ in 0..<200 { offsets.append(Int64.random(in: 0..<86_400_000_000_000, using: &generator)) }
            let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
            for offset in offsets {
                collector.record(
                    "state_snapshot_size_kb",
                    type: .gauge,
                    value: offset == 0 ? -0.0 : 1,
                    unit: "KB",
                    timestampNanos: second + offset
                )
            }
            try collector.close()
            try drain(path, into: database)
            let rows = try database.query(
                "SELECT wal_seq, (extract(epoch FROM timestamp) * 1000000)::bigint, value::text "
                    + "FROM agent_state_metrics ORDER BY wal_seq"
            )
            #expect(rows.count == offsets.count)
            for (row, offset) in zip(rows, offsets) {
                let nanos = second + offset
                // Independent of the sink's code: exact half-to-even on the integer.
                let (floor, remainder) = (nanos / 1000, nanos % 1000)
                let expected = remainder > 500 || (remainder == 500 && floor % 2 == 1) ? floor + 1 : floor
                #expect(row[1] == String(expected), "seq \(row[0] ?? "?"): \(nanos) ns")
                // PostgreSQL's own reading of the envelope's time.
                var text: [UInt8] = []
                Envelope.appendTimestamp(nanos, into: &text)
                let parsed = try database.scalar(
                    "SELECT (extract(epoch FROM '\(String(decoding: text, as: UTF8.self))'::timestamptz) * 1000000)::bigint"
                )
                #expect(parsed == row[1], "\(String(decoding: text, as: UTF8.self))")
            }
            #expect(rows.first?[2] == "-0", "negative zero keeps its sign")
            #expect(rows[11][1] == String((second + 1_000_000_000) / 1000), "…01.999999500Z is stored as …02.000000")
        }
    }
}

extension PostgresTests.TimePrecision {
    /// A row shipped by a walctl that floored emit times (up to 1 µs earlier than today's rounding) is the same
    /// record to `replay`: no second row.
    @Test func replayOverRowsWithFlooredTimesAddsNothing() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let database = try TestDatabase()
        let path = directory.file("log")
        // An hour ago, a whole second: inside retention (the sink deletes expired rows when it connects).
        let second = (Int64(Date().timeIntervalSince1970) - 3600) * 1_000_000_000
        let offsets: [Int64] = [999_999_500, 1_700, 2_500, 10]
        let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
        for offset in offsets {
            collector.record(
                "state_snapshot_size_kb",
                type: .gauge,
                value: 1,
                unit: "KB",
                timestampNanos: second + offset
            )
        }
        try collector.close()
        try drain(path, into: database)
        // What the earlier walctl stored: the floor.
        for (index, offset) in offsets.enumerated() {
            var floored: [UInt8] = []
            Envelope.appendTimestamp((second + offset) / 1000 * 1000, into: &floored)
            _ = try database.connect().execute(
                "UPDATE agent_state_metrics SET timestamp = '\(String(decoding: floored, as: UTF8.self))' "
                    + "WHERE wal_seq = \(index + 1)"
            )
        }
        #expect(
            try database.scalar(
                "SELECT (extract(epoch FROM timestamp) * 1000000)::bigint FROM agent_state_metrics WHERE wal_seq = 1"
            ) == String((second + 999_999_500) / 1000),
            "seq 1 now holds the floor, 1 µs before the rounding"
        )
        let result = try walctl(["replay", path, "--to", "postgres", "--postgres", database.conninfo])
        #expect(result.status == 0, "\(result.err)")
        #expect(try database.scalar("SELECT count(*) FROM agent_state_metrics") == String(offsets.count))
    }
}
