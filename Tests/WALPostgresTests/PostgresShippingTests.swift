import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

/// Every test that talks to the test server; serialized, because one of them restarts the server.
@Suite(.serialized, .enabled(if: hasTestServer, "needs the test PostgreSQL started by tools/test.sh"))
struct PostgresTests {}

extension PostgresTests {
    @Suite struct Shipping {
        @Test func everyRecordArrivesExactlyOnceWithEqualValues() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "30000", "--threads", "2"]).status == 0)
            let statistics = try drain(path, into: database, batchSize: 500)
            #expect(statistics.recordsShipped == 30_000)
            try expectExactlyOnce(path, database)
            // Per-category routing: every table the catalog covers got rows, custom none.
            for category in MetricCategory.allCases where category != .custom {
                #expect(Int(try database.scalar("SELECT count(*) FROM \(category.table)") ?? "0") ?? 0 > 0)
            }
            // The local cursor follows the sink's (it holds back retention).
            #expect(try CursorStore(path: path).load("postgres")?.seq == 30_000)
            // Shipping again adds nothing.
            try drain(path, into: database)
            try expectExactlyOnce(path, database)
        }

        @Test func hostileTagContentArrivesIntact() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            let nasty = [
                "quote": "it's \"quoted\"", "backslash": #"C:\path\to\file \\ \n"#, "tab": "a\tb",
                "newline": "line1\nline2\r\n",
                "json": #"{"a": [1, {"b": null}], "c": "\u0041"}"#, "unicode": "ünïcødé 日本語 🚀",
                "control": "bell\u{7}esc\u{1B}",
                "sql": "'); DROP TABLE agent_state_metrics; --", "empty": "",
            ]
            let collector = try MetricsCollector(
                configuration: MetricsConfiguration(directory: path, agentID: "agent \"x\" \\ y")
            )
            #expect(
                collector.recordCounter("state_operation_count", tags: nasty, correlationID: "corr\t\"1\"").isRecorded
            )
            try collector.close()
            try drain(path, into: database)
            let rows = try database.allRows()
            #expect(rows.count == 1)
            #expect(rows.first?.tags == nasty)
            #expect(rows.first?.agent == "agent \"x\" \\ y")
            #expect(rows.first?.correlation == "corr\t\"1\"")
        }

        @Test func largeValuesFitDoublePrecision() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
            let values = [1_000_000.5, 1e15, 123_456_789_012.25, -3.5, 1e-12]
            for value in values { collector.recordGauge("state_snapshot_size_kb", value: value, unit: "KB") }
            try collector.close()
            try drain(path, into: database)
            #expect(try database.allRows().map(\.value) == values)
            #expect(
                try database.scalar(
                    "SELECT data_type FROM information_schema.columns WHERE table_name = 'agent_state_metrics' AND column_name = 'value'"
                ) == "double precision"
            )
        }

        @Test func permanentlyRejectedRecordsGoToDeadLettersWithoutBlockingTheRest() throws {
            let database = try TestDatabase()
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let logID = LogID.random()
            func record(_ seq: UInt64, name: String) -> MetricRecord {
                MetricRecord(
                    seq: seq,
                    name: name,
                    type: .gauge,
                    value: Double(seq),
                    unit: "count",
                    tags: [:],
                    timestampNanos: Int64(Date().timeIntervalSince1970 * 1e9),
                    correlationID: nil,
                    agentID: nil
                )
            }
            // A name over the column's 100 characters: PostgreSQL refuses it (it cannot come from a validated emit).
            let tooLong = "state_" + String(repeating: "x", count: 120)
            let batch = ShipBatch(
                logID: logID,
                records: [
                    record(1, name: "state_a_count"), record(2, name: tooLong), record(3, name: "state_b_count"),
                ],
                throughSeq: 4,
                skipped: [SkippedEntry(fromSeq: 4, toSeq: 4, reason: "dropped by whenFull policy")]
            )
            try sink.deliver(batch)
            #expect(try sink.committedSeq(logID: logID) == 4)
            #expect(
                try database.query("SELECT wal_seq FROM agent_state_metrics ORDER BY 1").map { $0[0] } == ["1", "3"]
            )
            let letters = try database.query(
                "SELECT wal_seq_from, wal_seq_to, target_table, error FROM walctl_dead_letters ORDER BY 1"
            )
            #expect(letters.count == 2)
            #expect(letters[0][0] == "2" && letters[0][2] == "agent_state_metrics")
            #expect(letters[0][3]?.contains("22001") == true, "\(letters[0][3] ?? "")")
            #expect(letters[1][0] == "4" && letters[1][3]?.contains("whenFull") == true)
            #expect(sink.deadLetterCount == 1)
        }
    }

    @Suite struct Schema {
        @Test func initCreatesTheSchemaAndReRunsAreHarmless() throws {
            let database = try TestDatabase()
            for _ in 0..<2 {
                let result = try walctl(["pg", "init", "--postgres", database.conninfo])
                #expect(result.status == 0, "\(result.err)")
                #expect(result.out.contains("schema version \(PostgresSchema.version)"))
            }
            #expect(try database.scalar("SELECT count(*) FROM walctl_schema") == "\(PostgresSchema.version)")
            for table in PostgresSchema.tables {
                #expect(
                    try database.scalar("SELECT relkind FROM pg_class WHERE relname = '\(table)'") == "p",
                    "partitioned"
                )
                #expect(try database.scalar("SELECT to_regclass('\(table)_default') IS NOT NULL") == "t")
                let indexes = try database.query("SELECT indexdef FROM pg_indexes WHERE tablename = '\(table)'")
                    .compactMap { $0[0] }
                // Migration 3's cheaper indexes (IndexTests check that they serve the queries).
                #expect(indexes.contains { $0.contains("brin (\"timestamp\")") })
                #expect(indexes.contains { $0.contains("gin (tags jsonb_path_ops)") })
                #expect(indexes.contains { $0.contains("hash (correlation_id)") })
                #expect(indexes.contains { $0.contains("(metric_name)") })
                #expect(indexes.contains { $0.contains("(correlation_id)") })
                #expect(indexes.contains { $0.contains("UNIQUE") && $0.contains("(log_id, wal_seq, \"timestamp\")") })
            }
            #expect(try database.scalar("SELECT to_regclass('walctl_cursors') IS NOT NULL") == "t")
        }

        @Test func aSchemaNewerThanTheCodeIsAnErrorNotAGuess() throws {
            let database = try TestDatabase()
            #expect(try walctl(["pg", "init", "--postgres", database.conninfo]).status == 0)
            _ = try database.connect().execute("INSERT INTO walctl_schema (version) VALUES (99)")
            let result = try walctl(["pg", "init", "--postgres", database.conninfo])
            #expect(result.status == 1)
            #expect(result.err.contains("newer than this walctl"))
            // A shipper stops on it instead of retrying forever.
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            #expect(try walctl(["emit", "--dir", directory.file("log"), "--count", "10"]).status == 0)
            let ship = try walctl(["ship", "--dir", directory.file("log"), "--postgres", database.conninfo, "--drain"])
            #expect(ship.status == 1)
            #expect(ship.err.contains("newer than this walctl"))
        }

        @Test func partitionsAreCreatedAheadFilledFromDefaultAndDroppedAfterRetention() throws {
            let database = try TestDatabase()
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let logID = LogID.random()
            let day: Int64 = 86_400 * 1_000_000_000
            let now = Int64(Date().timeIntervalSince1970 * 1e9)
            let offsets: [Int64] = [-100, -30, -3, 0, 3, 30]
            let records = offsets.enumerated().map { index, offset in
                MetricRecord(
                    seq: UInt64(index + 1),
                    name: "workflow_step_count",
                    type: .counter,
                    value: 1,
                    unit: "count",
                    tags: [:],
                    timestampNanos: now + offset * day,
                    correlationID: nil,
                    agentID: nil
                )
            }
            try sink.deliver(ShipBatch(logID: logID, records: records, throughSeq: 6, skipped: []))
            func partition(of seq: Int) throws -> String? {
                try database.scalar(
                    "SELECT tableoid::regclass::text FROM agent_workflow_metrics WHERE wal_seq = \(seq)"
                )
            }
            // Today and +3 days landed in daily partitions made ahead; the others in the default partition.
            #expect(try partition(of: 4)?.hasPrefix("agent_workflow_metrics_p") == true)
            #expect(try partition(of: 5)?.hasPrefix("agent_workflow_metrics_p") == true)
            #expect(try partition(of: 6) == "agent_workflow_metrics_default")
            #expect(try partition(of: 2) == "agent_workflow_metrics_default")
            // Maintenance moves the recent days out of the default partition and drops what is past retention.
            let result = try walctl(["pg", "maintain", "--postgres", database.conninfo, "--retention-days", "60"])
            #expect(result.status == 0, "\(result.err)")
            #expect(
                try partition(of: 2)?.hasPrefix("agent_workflow_metrics_p") == true,
                "30 days ago: moved to its day"
            )
            #expect(try partition(of: 3)?.hasPrefix("agent_workflow_metrics_p") == true)
            #expect(try partition(of: 1) == nil, "100 days ago: expired from the default partition")
            #expect(try partition(of: 6) == "agent_workflow_metrics_default", "beyond the days ahead: stays in default")
            #expect(try database.scalar("SELECT count(*) FROM agent_workflow_metrics") == "5")
            // A partition older than the retention is dropped.
            let dropped = try walctl(["pg", "maintain", "--postgres", database.conninfo, "--retention-days", "10"])
            #expect(dropped.out.contains("dropped"))
            #expect(try partition(of: 2) == nil)
            #expect(try database.scalar("SELECT count(*) FROM agent_workflow_metrics") == "4")
        }
    }
}
