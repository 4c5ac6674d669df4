import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

extension PGConnection {
    /// The plan of `sql` with sequential scans priced out (`enable_seqscan = off`): what remains a sequential scan
    /// of a metric table has no index that serves it. Returns the parent indexes (`agent_state_metrics_timestamp_brin`,
    /// not the partition's generated name) the plan reads, and the tables it still scans sequentially.
    /// With `onlyQueryIndexes`, the keys (the primary key and the idempotency key, which a small table's plan may
    /// scan whole) are dropped first, inside the transaction that is rolled back: what is left to serve the query
    /// are the indexes meant for queries.
    func indexUse(
        _ sql: String,
        onlyQueryIndexes: Bool = false
    ) throws -> (indexes: Set<String>, seqScans: Set<String>, plan: String) {
        try execute("BEGIN")
        defer { _ = try? execute("ROLLBACK") }
        try execute("SET LOCAL enable_seqscan = off")
        if onlyQueryIndexes {
            for table in PostgresSchema.tables {
                try execute("ALTER TABLE \(table) DROP CONSTRAINT \(table)_pkey")
                try execute("DROP INDEX \(table)_log_seq_idx")
            }
        }
        let plan = try execute("EXPLAIN " + sql)
        let text = (0..<plan.rowCount).compactMap { plan.value($0, 0) }.joined(separator: "\n")
        var indexes: Set<String> = []
        var seqScans: Set<String> = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            // "Index Scan using INDEX on TABLE", "Index Only Scan using INDEX on TABLE", "Bitmap Index Scan on INDEX"
            let name = words.firstIndex(of: "using") ?? words.firstIndex(of: "on")
            if line.contains("Index"), let name, name + 1 < words.count {
                let index = String(words[name + 1])
                let parent = try execute(
                    """
                    SELECT p.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
                    JOIN pg_class p ON p.oid = i.inhparent WHERE c.relname = $1
                    """,
                    [index]
                ).value(0, 0)
                indexes.insert(parent ?? index)
            }
            if line.contains("Seq Scan on "), let on = words.firstIndex(of: "on"), on + 1 < words.count {
                let table = String(words[on + 1])
                if table.contains("_metrics") { seqScans.insert(table) }
            }
        }
        return (indexes, seqScans, text)
    }
}

extension PostgresTests {
    /// Issue 18: the indexes of migration 3 (BRIN on `timestamp`, GIN `jsonb_path_ops` on `tags`, hash on
    /// `correlation_id`) serve every query of the design and the dashboards, and a version 2 database upgrades to them.
    @Suite struct Indexes {
        /// A database with rows over the last day in daily partitions.
        func populatedDatabase() throws -> TestDatabase {
            let database = try TestDatabase()
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            var records = spreadRecords(count: 3000, hours: 20, firstSeq: 1, seed: 11)
            let coordination = [
                "coordination_overhead_ms", "coordination_sync_time_ms", "coordination_dependency_wait_ms",
            ]
            for index in records.indices {
                if index % 3 == 0 { records[index].correlationID = "trace-\(index / 9)" }
                // Every table of a realtime panel has rows (an empty table's plan proves nothing).
                if index % 5 == 1 { records[index].name = coordination[index % coordination.count] }
            }
            try sink.deliver(ShipBatch(logID: LogID.random(), records: records, throughSeq: 3000, skipped: []))
            _ = try PostgresSink.maintain(conninfo: database.conninfo)
            try database.connect().execute("ANALYZE")
            return database
        }

        @Test func theDesignsQueriesAreServedByTheirIndexes() throws {
            let database = try populatedDatabase()
            let connection = try database.connect()
            let logID = try #require(try database.scalar("SELECT log_id FROM agent_state_metrics LIMIT 1"))
            // (query, the index that must serve it, on agent_state_metrics)
            let table = "agent_state_metrics"
            let queries: [(String, String)] = [
                (
                    "SELECT count(*) FROM \(table) WHERE timestamp > now() - interval '1 hour'",
                    "\(table)_timestamp_brin"
                ),
                (
                    "SELECT * FROM \(table) WHERE timestamp BETWEEN now() - interval '20 minutes' AND now() "
                        + "ORDER BY timestamp DESC LIMIT 100", "\(table)_timestamp_brin"
                ),
                ("SELECT count(*) FROM \(table) WHERE metric_name = 'state_get_time_ms'", "\(table)_metric_name_idx"),
                (
                    #"SELECT count(*) FROM \#(table) WHERE tags @> '{"operation_type": "alpha"}'"#,
                    "\(table)_tags_path_idx"
                ),
                ("SELECT * FROM \(table) WHERE correlation_id = 'trace-3'", "\(table)_correlation_hash"),
                (
                    "SELECT * FROM \(table) WHERE correlation_id IN ('trace-3', 'trace-4')",
                    "\(table)_correlation_hash"
                ),
                // The idempotency key: what a replay's probe and ON CONFLICT read.
                (
                    "SELECT 1 FROM \(table) WHERE log_id = '\(logID)' AND wal_seq BETWEEN 1 AND 100 "
                        + "AND timestamp BETWEEN now() - interval '1 day' AND now()", "\(table)_log_seq_idx"
                ),
                // What a rollup rebuild reads: rows landed since the last one.
                (
                    "SELECT count(*) FROM \(table) WHERE created_at >= now() - interval '5 minutes'",
                    "\(table)_created_at_idx"
                ),
            ]
            for (sql, index) in queries {
                let use = try connection.indexUse(sql)
                #expect(use.seqScans.isEmpty, "\(sql) scans \(use.seqScans):\n\(use.plan)")
                #expect(use.indexes.contains(index), "\(sql) does not use \(index):\n\(use.plan)")
            }
            // Every metric table has exactly the indexes of migration 3.
            for table in PostgresSchema.tables {
                let indexes = Set(
                    try database.query(
                        """
                        SELECT c.relname || ' ' || a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                        JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = '\(table)'::regclass
                        """
                    ).compactMap { $0[0] }
                )
                #expect(
                    indexes == [
                        "\(table)_pkey btree", "\(table)_metric_name_idx btree", "\(table)_log_seq_idx btree",
                        "\(table)_created_at_idx brin", "\(table)_timestamp_brin brin", "\(table)_tags_path_idx gin",
                        "\(table)_correlation_hash hash",
                    ],
                    "\(table)"
                )
            }
        }

        @Test func everyRawTablePanelOfTheDashboardsIsServedByAnIndex() throws {
            let database = try populatedDatabase()
            let connection = try database.connect()
            let now = Date()
            var checked = 0
            for panel in try DashboardPanel.all() where !panel.longRange {
                for selection: [String: [String]?] in [
                    ["agent": nil, "agent_type": nil], ["agent": ["agent-1", "agent-2"], "agent_type": ["alpha"]],
                ] {
                    let sql = GrafanaExpander(
                        from: now.addingTimeInterval(-15 * 60),
                        to: now,
                        multi: selection,
                        single: ["latency": "state_get_time_ms"]
                    ).expand(panel.sql)
                    let all = try connection.indexUse(sql)
                    #expect(all.seqScans.isEmpty, "\(panel.title) scans \(all.seqScans):\n\(all.plan)")
                    #expect(!all.indexes.isEmpty, "\(panel.title) uses no index:\n\(all.plan)")
                    let use = try connection.indexUse(sql, onlyQueryIndexes: true)
                    #expect(use.seqScans.isEmpty, "\(panel.title) scans \(use.seqScans):\n\(use.plan)")
                    if use.plan.contains("_metrics") {
                        // The time filter goes through the BRIN or the metric name's B-tree, never a full partition.
                        #expect(
                            use.indexes.contains {
                                $0.hasSuffix("_timestamp_brin") || $0.hasSuffix("_metric_name_idx")
                            },
                            "\(panel.title): \(use.indexes)"
                        )
                        checked += 1
                    }
                }
            }
            #expect(checked == 2 * 12)
        }

        @Test func aVersionTwoDatabaseUpgradesToTheCheaperIndexesAndKeepsItsRows() throws {
            let database = try TestDatabase()
            let connection = try database.connect()
            try connection.execute(
                "CREATE TABLE walctl_schema (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            try connection.execute(PostgresSchema.migrations[0])
            try connection.execute(PostgresSchema.migrations[1])
            try connection.execute("INSERT INTO walctl_schema (version) VALUES (1), (2)")
            _ = try PartitionMaintenance.run(connection, daysAhead: 1, retentionDays: 90)
            let logID = LogID.random()
            let records = spreadRecords(count: 500, hours: 20, firstSeq: 1, seed: 5)
            // Rows shipped by the version 2 code (its indexes in place), through the raw COPY path.
            try connection.execute("BEGIN")
            let copy = BinaryCopy(records, logID: logID)
            var buffer: [UInt8] = []
            for (table, category, _) in copy.tables {
                try copy.copy(category, into: table, connection: connection, buffer: &buffer)
            }
            try connection.execute("COMMIT")
            #expect(try database.scalar("SELECT to_regclass('agent_state_metrics_tags_idx') IS NOT NULL") == "t")

            let result = try walctl(["pg", "init", "--postgres", database.conninfo])
            #expect(result.status == 0, "\(result.err)")
            #expect(try database.scalar("SELECT max(version) FROM walctl_schema") == "3")
            for table in PostgresSchema.tables {
                for gone in ["timestamp_idx", "tags_idx", "correlation_idx"] {
                    #expect(try database.scalar("SELECT to_regclass('\(table)_\(gone)') IS NULL") == "t")
                }
                for present in ["timestamp_brin", "tags_path_idx", "correlation_hash", "log_seq_idx"] {
                    #expect(try database.scalar("SELECT to_regclass('\(table)_\(present)') IS NOT NULL") == "t")
                }
            }
            // Every partition has the new indexes (the parent's, attached), none of the old.
            #expect(
                try database.scalar(
                    """
                    SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                    JOIN pg_am a ON a.oid = c.relam JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname ~ '_metrics_(p[0-9]{8}|default)$'
                      AND (a.amname = 'hash' OR (a.amname = 'brin' AND c.relname LIKE '%timestamp%'))
                    """
                )
                    == (try database.scalar(
                        "SELECT 2 * count(*) FROM pg_class WHERE relname ~ '_metrics_(p[0-9]{8}|default)$'"
                    ))
            )
            #expect(try database.scalar("SELECT sum(n) FROM (\(countAll)) c") == "500")
            // The upgraded database takes the same rows again idempotently, and new ones.
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let again = try sink.replay(ShipBatch(logID: logID, records: records, throughSeq: 500, skipped: []))
            #expect(again == ReplayOutcome(sent: 0, alreadyPresent: 500))
            let more = spreadRecords(count: 100, hours: 1, firstSeq: 501, seed: 6)
            try sink.deliver(ShipBatch(logID: logID, records: more, throughSeq: 600, skipped: []))
            #expect(try database.scalar("SELECT sum(n) FROM (\(countAll)) c") == "600")
        }

        var countAll: String {
            PostgresSchema.tables.map { "SELECT count(*) AS n FROM \($0)" }.joined(separator: " UNION ALL ")
        }
    }
}
