import Foundation
import Testing
import WALCore
import WALMetrics
import WALShipping
import WALTestKit

@testable import WALPostgres

/// Every raw row with its rollup keys, as the rollups group them (one SELECT per category table).
func rawRollupRows(minuteOrHour unit: String) -> String {
    MetricCategory.allCases.map { category in
        let tag = PostgresSchema.mainTag(of: category)
        let mainTag = tag.isEmpty ? "''" : "coalesce(tags ->> '\(tag)', '')"
        return """
            SELECT date_trunc('\(unit)', timestamp) AS t, '\(category.rawValue)'::text AS category, metric_name::text,
                \(mainTag) AS main_tag, coalesce(agent_id, '')::text AS agent_id, value
            FROM \(category.table)
            """
    }.joined(separator: " UNION ALL ")
}

extension TestDatabase {
    /// Differences between a rollup table and a GROUP BY over the raw rows of the same minutes (or hours): counts,
    /// sums, min and max exactly, the histogram's count, and p50/p95/p99 within the histogram's error. Empty when
    /// they agree.
    func rollupDifferences(_ table: String, unit: String) throws -> [String] {
        let column = unit == "minute" ? "minute" : "hour"
        let error = PostgresSchema.histogramRelativeError * 1.000001
        let rows = try query(
            """
            WITH raw AS (\(rawRollupRows(minuteOrHour: unit))),
            g AS (
                SELECT t, category, metric_name, main_tag, agent_id, count(*) AS count, sum(value::numeric) AS sum,
                    min(value) AS min, max(value) AS max,
                    percentile_disc(0.5) WITHIN GROUP (ORDER BY value) AS p50,
                    percentile_disc(0.95) WITHIN GROUP (ORDER BY value) AS p95,
                    percentile_disc(0.99) WITHIN GROUP (ORDER BY value) AS p99
                FROM raw GROUP BY 1, 2, 3, 4, 5
            )
            SELECT coalesce(g.t, r.\(column))::text, coalesce(g.metric_name, r.metric_name),
                g.count, r.count, g.sum, r.sum, g.min, r.min, g.max, r.max, walctl_hist_count(r.hist),
                g.p50, walctl_hist_percentile(r.hist, 0.5), g.p99, walctl_hist_percentile(r.hist, 0.99)
            FROM g FULL JOIN \(table) r ON r.\(column) = g.t AND r.category = g.category
                AND r.metric_name = g.metric_name AND r.main_tag = g.main_tag AND r.agent_id = g.agent_id
            WHERE g.count IS DISTINCT FROM r.count OR g.sum IS DISTINCT FROM r.sum OR g.min IS DISTINCT FROM r.min
                OR g.max IS DISTINCT FROM r.max OR walctl_hist_count(r.hist) IS DISTINCT FROM r.count
                OR abs(g.p50 - walctl_hist_percentile(r.hist, 0.5)) > \(error) * abs(g.p50) + 1e-9
                OR abs(g.p95 - walctl_hist_percentile(r.hist, 0.95)) > \(error) * abs(g.p95) + 1e-9
                OR abs(g.p99 - walctl_hist_percentile(r.hist, 0.99)) > \(error) * abs(g.p99) + 1e-9
            LIMIT 10
            """
        )
        return rows.map { row in row.prefix(15).map { $0 ?? "null" }.joined(separator: " | ") }
    }

    func expectRollupsMatchRaw(sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try rollupDifferences("walctl_rollup_1m", unit: "minute") == [], sourceLocation: sourceLocation)
        #expect(try rollupDifferences("walctl_rollup_1h", unit: "hour") == [], sourceLocation: sourceLocation)
        #expect(
            try count("SELECT sum(count) FROM walctl_rollup_1m")
                == count("SELECT count(*) FROM (\(rawRollupRows(minuteOrHour: "minute"))) r"),
            sourceLocation: sourceLocation
        )
    }
}

/// Records of assorted metrics spread over the last `hours` hours (values negative, zero, tiny and large too).
func spreadRecords(count: Int, hours: Int, firstSeq: UInt64, seed: UInt64) -> [MetricRecord] {
    var generator = SeededGenerator(seed: seed)
    let now = Int64(Date().timeIntervalSince1970 * 1e9)
    let names = ["routing_decision_time_ms", "state_get_time_ms", "workflow_success_rate", "quorum_latency_ms"]
    let special: [Double] = [0, -3.5, 1e-12, 1e9, 1]
    return (0..<count).map { index in
        let name = names[Int(generator.next() % UInt64(names.count))]
        let definition = MetricCatalog.byName[name]!
        let value =
            index % 50 == 0
            ? special[index / 50 % special.count] : Double(generator.next() % 1_000_000) / 1000
        let tag = PostgresSchema.mainTag(of: definition.category)
        return MetricRecord(
            seq: firstSeq + UInt64(index),
            name: name,
            type: definition.type,
            value: value,
            unit: definition.unit,
            tags: [tag: ["alpha", "beta", "gamma"][Int(generator.next() % 3)], "other": "x"],
            timestampNanos: now - Int64(generator.next() % UInt64(hours * 3600)) * 1_000_000_000,
            correlationID: nil,
            agentID: index % 7 == 0 ? nil : "agent-\(generator.next() % 3)"
        )
    }
}

extension PostgresTests {
    /// Issue 17: rollups equal a GROUP BY over the raw rows, whatever the order and timing of arrivals.
    @Suite struct Rollups {
        @Test func rollupsEqualAGroupByOverTheRawRowsAndLateRowsReopenTheirMinutes() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "20000", "--threads", "2"]).status == 0)
            try drain(path, into: database, batchSize: 1000)
            let sink = PostgresSink(configuration: PostgresSinkConfiguration(conninfo: database.conninfo))
            let logID = LogID.random()
            let early = spreadRecords(count: 5000, hours: 72, firstSeq: 1, seed: 1)
            try sink.deliver(ShipBatch(logID: logID, records: early, throughSeq: 5000, skipped: []))
            let first = try RollupMaintenance.run(conninfo: database.conninfo)
            #expect(first.ran && first.minutes > 100 && first.hours > 10)
            try database.expectRollupsMatchRaw()

            // Late rows into minutes already rolled up: they re-open those minutes (and only those).
            let late = spreadRecords(count: 3000, hours: 72, firstSeq: 5001, seed: 2)
            try sink.deliver(ShipBatch(logID: logID, records: late, throughSeq: 8000, skipped: []))
            #expect(try database.rollupDifferences("walctl_rollup_1m", unit: "minute") != [], "the check can fail")
            let second = try RollupMaintenance.run(conninfo: database.conninfo)
            let lateMinutes = try database.count(
                "SELECT count(*) FROM ("
                    + MetricCategory.allCases.map {
                        "SELECT DISTINCT '\($0.rawValue)', date_trunc('minute', timestamp) FROM \($0.table) "
                            + "WHERE log_id = '\(logID)' AND wal_seq > 5000"
                    }.joined(separator: " UNION ALL ") + ") AS late"
            )
            #expect(lateMinutes > 100)
            #expect(second.minutes == lateMinutes, "only the minutes late rows landed in")
            try database.expectRollupsMatchRaw()

            // Nothing new: nothing recomputed, nothing changed.
            let third = try RollupMaintenance.run(conninfo: database.conninfo)
            #expect(third.ran && third.minutes == 0)
            try database.expectRollupsMatchRaw()

            // A long range from hourly rollups: the same percentiles as the raw rows, within the stated error.
            let spread = try database.query(
                """
                WITH h AS (SELECT metric_name, walctl_hist_merge(hist) AS hist FROM walctl_rollup_1h
                    GROUP BY 1),
                r AS (SELECT metric_name, percentile_disc(0.95) WITHIN GROUP (ORDER BY value) AS p95
                    FROM agent_state_metrics GROUP BY 1)
                SELECT r.metric_name, r.p95, walctl_hist_percentile(h.hist, 0.95) FROM r JOIN h USING (metric_name)
                """
            )
            #expect(!spread.isEmpty)
            for row in spread {
                let exact = Double(row[1] ?? "") ?? .nan
                let estimate = Double(row[2] ?? "") ?? .nan
                #expect(abs(exact - estimate) <= 0.0100001 * abs(exact) + 1e-9, "\(row)")
            }
        }

        /// The watermark's hard case: a transaction that started before a rebuild and commits after it, with rows
        /// whose created_at is older than the rebuild. A plain `created_at > last run` would miss them forever.
        @Test func rowsCommittedAfterARebuildStartedAreNotMissed() throws {
            let database = try TestDatabase()
            #expect(try walctl(["pg", "init", "--postgres", database.conninfo]).status == 0)
            let slow = try database.connect()
            let insert = """
                INSERT INTO agent_state_metrics (metric_id, metric_name, metric_type, value, unit, log_id, wal_seq,
                    timestamp)
                VALUES ('state_001', 'state_get_time_ms', 'timing', $1::float8, 'ms', gen_random_uuid(), $2::bigint,
                    now() - interval '2 hours')
                """
            // In flight with rows written before the rebuild.
            try slow.execute("BEGIN")
            try slow.execute(insert, ["1.5", "1"])
            // In flight, no row yet (no xid): it writes only after the rebuild.
            let later = try database.connect()
            try later.execute("BEGIN")
            try later.execute("SELECT 1")
            let first = try RollupMaintenance.run(conninfo: database.conninfo)
            #expect(first.ran && first.minutes == 0)
            try later.execute(insert, ["2.5", "2"])
            try slow.execute("COMMIT")
            try later.execute("COMMIT")
            // Both rows' created_at predate the first rebuild's clock.
            #expect(
                try database.count(
                    "SELECT count(*) FROM agent_state_metrics, walctl_rollup_state WHERE created_at < ran_at"
                ) == 2
            )
            let second = try RollupMaintenance.run(conninfo: database.conninfo)
            #expect(second.minutes == 1)
            #expect(try database.scalar("SELECT sum(count) FROM walctl_rollup_1m") == "2")
            try database.expectRollupsMatchRaw()
            // Once they are seen, the scan moves on past them.
            _ = try RollupMaintenance.run(conninfo: database.conninfo)
            #expect(
                try database.scalar(
                    "SELECT scan_from > (SELECT max(created_at) FROM agent_state_metrics) FROM walctl_rollup_state"
                ) == "t"
            )
        }

        /// Shipper SIGKILLed at random moments while rebuilds run beside it (and the shipper rebuilds at every
        /// start): the rollups still equal the raw rows.
        @Test func rollupsStayExactAcrossShipperSigkillsAndConcurrentRebuilds() throws {
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = try TestDatabase()
            let path = directory.file("log")
            #expect(try walctl(["emit", "--dir", path, "--count", "60000", "--threads", "2"]).status == 0)
            var generator = SeededGenerator()
            var rebuilds = 0
            for trial in 0..<6 {
                let shipper = try ChildProcess(
                    walctlPath,
                    ["ship", "--dir", path, "--postgres", database.conninfo, "--batch-size", "500"]
                )
                // Rebuild while the shipper commits batches, then kill it at a random moment.
                // At least two rebuilds that ran per trial, however slow the machine (a rebuild does not run while
                // another session, such as the shipper's start-up rebuild, holds the lock).
                let deadline = Date().addingTimeInterval(Double(UInt32.random(in: 50...600, using: &generator)) / 1000)
                let giveUp = Date().addingTimeInterval(60)
                var ranNow = 0
                repeat {
                    if (try? RollupMaintenance.run(conninfo: database.conninfo))?.ran == true {
                        rebuilds += 1
                        ranNow += 1
                    }
                } while (Date() < deadline || ranNow < 2) && Date() < giveUp
                shipper.kill(SIGKILL)
                _ = shipper.wait()
                _ = trial
            }
            #expect(rebuilds >= 12)
            try drain(path, into: database, batchSize: 1000)
            try expectExactlyOnce(path, database)
            #expect(try RollupMaintenance.run(conninfo: database.conninfo).ran)
            try database.expectRollupsMatchRaw()
        }

        @Test func migratingAVersionOneDatabaseKeepsItsRowsAndRollsThemUp() throws {
            let database = try TestDatabase()
            let connection = try database.connect()
            try connection.execute(
                "CREATE TABLE walctl_schema (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            try connection.execute(PostgresSchema.migrations[0])
            try connection.execute("INSERT INTO walctl_schema (version) VALUES (1)")
            try connection.execute(
                """
                INSERT INTO agent_routing_metrics (metric_id, metric_name, metric_type, value, unit, tags, log_id,
                    wal_seq, timestamp)
                VALUES ('route_001', 'routing_decision_time_ms', 'timing', 4, 'ms', '{"agent_type": "router"}',
                    gen_random_uuid(), 1, now())
                """
            )
            let result = try walctl(["pg", "maintain", "--postgres", database.conninfo])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("rollups: 1 minutes"), "\(result.out)")
            #expect(try database.scalar("SELECT max(version) FROM walctl_schema") == "\(PostgresSchema.version)")
            #expect(try database.scalar("SELECT main_tag FROM walctl_rollup_1m") == "router")
            try database.expectRollupsMatchRaw()
        }
    }
}
