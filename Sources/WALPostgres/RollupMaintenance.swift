import Logging
import WALMetrics

/// Per-minute and per-hour rollups, rebuilt from the raw rows for every minute a row landed in since the last
/// rebuild. Run by `walctl pg maintain` and by the shipper wherever it runs partition maintenance.
///
/// Why the rollups are exact (equal to a `GROUP BY` over the raw rows of the same minutes):
/// - the raw rows are exactly once (the shipper commits rows and cursor in one transaction);
/// - a rebuild recomputes each touched minute whole from the raw rows, in one REPEATABLE READ transaction
///   (delete the minute's rollup rows, insert the `GROUP BY`), so running it twice, or after a crash, or
///   concurrently with shipping gives the same rows; hours are recomputed whole from their minutes the same way;
/// - a minute is touched when any of its rows has `created_at >= scan_from`; a late row (a replay, a backlog, a
///   clock behind) has a fresh `created_at` whatever its `timestamp`, so it re-opens its minute;
/// - `scan_from` never passes a row the rebuild could not see. `created_at` is the inserting transaction's start
///   (`now()`), and such a transaction may commit long after. So before taking its snapshot, a rebuild reads the
///   clock (W) and then the transactions in flight (their virtual ids in `pg_locks`, visible to any role). A row
///   the snapshot misses belongs either to a transaction that started after W, or to one in flight then, which
///   started after the W of the last rebuild that did not see it in flight (that bound is kept in `in_flight`).
///   The next rebuild scans from the least of these bounds, so a long transaction only widens the next scan.
///
/// Minutes older than the raw retention are never recomputed (their raw rows are gone; the rollups keep them).
public enum RollupMaintenance {
    public struct Report: Sendable, Equatable {
        /// False when another rebuild held the lock (nothing was done).
        public var ran = false
        /// Category-minutes recomputed.
        public var minutes = 0
        /// Category-hours recomputed.
        public var hours = 0
        /// Rollup rows deleted for being older than the rollup retention.
        public var expired = 0
    }

    /// The advisory lock serialising rebuilds (a session lock: taken before the transaction's snapshot).
    static let lockKey = "7745117332"

    /// Rebuilds the rollups of every minute touched since the last rebuild and drops rollups older than
    /// `rollupRetentionDays`. Minutes older than `retentionDays` (the raw retention) are left as they are.
    /// Returns `ran == false` when another session is rebuilding now.
    static func run(
        _ connection: PGConnection,
        retentionDays: Int,
        rollupRetentionDays: Int = 400
    ) throws(PGError) -> Report {
        var report = Report()
        guard try connection.execute("SELECT pg_try_advisory_lock(\(lockKey))").value(0, 0) == "t" else {
            return report
        }
        defer { _ = try? connection.execute("SELECT pg_advisory_unlock(\(lockKey))") }
        // W, then the transactions in flight, both before the snapshot (taken by the first query after BEGIN).
        // Sessions known to be elsewhere (another database) or not clients (autovacuum) are left out; a role
        // without pg_read_all_stats sees neither for other roles' sessions, and counts them (conservative). A
        // session that connects after this read starts its transaction after W. Prepared transactions count.
        let clock = try connection.execute("SELECT clock_timestamp()").value(0, 0) ?? ""
        let inFlight =
            try connection.execute(
                """
                SELECT coalesce(array_agg(DISTINCT l.virtualxid), '{}') FROM pg_locks l
                WHERE l.locktype = 'virtualxid' AND l.pid IS DISTINCT FROM pg_backend_pid()
                  AND NOT EXISTS (
                      SELECT 1 FROM pg_stat_activity a
                      WHERE a.pid = l.pid AND (a.backend_type <> 'client backend'
                          OR a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())))
                """
            ).value(0, 0) ?? "{}"
        try connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        do throws(PGError) {
            report = try rebuild(
                connection,
                clock: clock,
                inFlight: inFlight,
                retentionDays: retentionDays,
                rollupRetentionDays: max(rollupRetentionDays, retentionDays)
            )
            try connection.execute("COMMIT")
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
        return report
    }

    private static func rebuild(
        _ connection: PGConnection,
        clock: String,
        inFlight: String,
        retentionDays: Int,
        rollupRetentionDays: Int
    ) throws(PGError) -> Report {
        var report = Report(ran: true)
        let state = try connection.execute(
            "SELECT scan_from, coalesce(ran_at, '-infinity') FROM walctl_rollup_state WHERE id = 1 FOR UPDATE"
        )
        let scanFrom = state.value(0, 0) ?? "-infinity"
        let previousRun = state.value(0, 1) ?? "-infinity"
        // The raw retention's floor, as PartitionMaintenance drops days.
        let floor = "((now() AT TIME ZONE 'UTC')::date - \(retentionDays))::timestamp AT TIME ZONE 'UTC'"
        try connection.execute(
            "CREATE TEMP TABLE walctl_touched (category TEXT, minute TIMESTAMPTZ, PRIMARY KEY (category, minute)) "
                + "ON COMMIT DROP"
        )
        for category in MetricCategory.allCases {
            try connection.execute(
                """
                INSERT INTO walctl_touched
                SELECT DISTINCT $1::text, date_trunc('minute', timestamp) FROM \(category.table)
                WHERE created_at >= $2::timestamptz AND timestamp >= \(floor)
                """,
                [category.rawValue, scanFrom]
            )
        }
        report.minutes = Int(try connection.execute("SELECT count(*) FROM walctl_touched").value(0, 0) ?? "0") ?? 0
        try connection.execute(
            "DELETE FROM walctl_rollup_1m r USING walctl_touched t WHERE r.minute = t.minute AND r.category = t.category"
        )
        for category in MetricCategory.allCases {
            let tag = PostgresSchema.mainTag(of: category)
            let mainTag = tag.isEmpty ? "''" : "coalesce(r.tags ->> '\(tag)', '')"
            try connection.execute(
                """
                WITH v AS (
                    SELECT t.minute, r.metric_name, \(mainTag) AS main_tag, coalesce(r.agent_id, '') AS agent_id,
                        r.value
                    FROM walctl_touched t JOIN \(category.table) r
                        ON r.timestamp >= t.minute AND r.timestamp < t.minute + interval '1 minute'
                    WHERE t.category = $1
                ), buckets AS (
                    SELECT minute, metric_name, main_tag, agent_id, jsonb_object_agg(k, n) AS hist FROM (
                        SELECT minute, metric_name, main_tag, agent_id, walctl_hist_key(value) AS k, count(*) AS n
                        FROM v GROUP BY 1, 2, 3, 4, 5
                    ) AS b WHERE k IS NOT NULL GROUP BY 1, 2, 3, 4
                )
                INSERT INTO walctl_rollup_1m (minute, category, metric_name, main_tag, agent_id, count, sum, min,
                    max, hist)
                SELECT g.minute, $1, g.metric_name, g.main_tag, g.agent_id, g.count, g.sum, g.min, g.max,
                    coalesce(b.hist, '{}')
                FROM (
                    SELECT minute, metric_name, main_tag, agent_id, count(*) AS count, sum(value::numeric) AS sum,
                        min(value) AS min, max(value) AS max
                    FROM v GROUP BY 1, 2, 3, 4
                ) AS g LEFT JOIN buckets b USING (minute, metric_name, main_tag, agent_id)
                """,
                [category.rawValue]
            )
        }
        // Hours: each touched hour recomputed whole from its minutes.
        report.hours =
            try connection.execute(
                """
                WITH h AS (SELECT DISTINCT category, date_trunc('hour', minute) AS hour FROM walctl_touched),
                gone AS (
                    DELETE FROM walctl_rollup_1h r USING h WHERE r.hour = h.hour AND r.category = h.category
                )
                SELECT 1 FROM h
                """
            ).rowCount
        try connection.execute(
            """
            INSERT INTO walctl_rollup_1h (hour, category, metric_name, main_tag, agent_id, count, sum, min, max, hist)
            SELECT date_trunc('hour', m.minute), m.category, m.metric_name, m.main_tag, m.agent_id, sum(m.count),
                sum(m.sum), min(m.min), max(m.max), walctl_hist_merge(m.hist)
            FROM walctl_rollup_1m m
            JOIN (SELECT DISTINCT category, date_trunc('hour', minute) AS hour FROM walctl_touched) h
                ON m.category = h.category AND m.minute >= h.hour AND m.minute < h.hour + interval '1 hour'
            GROUP BY 1, 2, 3, 4, 5
            """
        )
        // Rollup retention.
        let rollupFloor = "((now() AT TIME ZONE 'UTC')::date - \(rollupRetentionDays))::timestamp AT TIME ZONE 'UTC'"
        report.expired += try connection.execute("DELETE FROM walctl_rollup_1m WHERE minute < \(rollupFloor)")
            .affectedRows
        report.expired += try connection.execute("DELETE FROM walctl_rollup_1h WHERE hour < \(rollupFloor)")
            .affectedRows
        // The next scan's start: W, or the start bound of a transaction in flight now, whichever is earlier. A
        // transaction in flight at the previous rebuild keeps its bound; one new since started after that
        // rebuild's W.
        try connection.execute(
            """
            WITH now_in_flight AS (
                SELECT x, coalesce((s.in_flight ->> x)::timestamptz, $3::timestamptz) AS since
                FROM walctl_rollup_state s, unnest($2::text[]) AS x WHERE s.id = 1
            )
            UPDATE walctl_rollup_state SET
                scan_from = least($1::timestamptz, (SELECT min(since) FROM now_in_flight)),
                in_flight = coalesce((SELECT jsonb_object_agg(x, since) FROM now_in_flight), '{}'),
                ran_at = $1::timestamptz
            WHERE id = 1
            """,
            [clock, inFlight, previousRun]
        )
        return report
    }
}

// MARK: - From the shipper

extension RollupMaintenance {
    /// The shipper's periodic rebuild, beside partition maintenance: never fails delivery (a rebuild that fails
    /// is logged and left to the next one or to `walctl pg maintain`).
    static func runForShipper(_ connection: PGConnection, retentionDays: Int, logger: Logger) {
        do {
            let report = try run(connection, retentionDays: retentionDays)
            if report.minutes > 0 {
                logger.debug("rollups rebuilt", metadata: ["minutes": "\(report.minutes)", "hours": "\(report.hours)"])
            }
        } catch {
            logger.notice("rollup rebuild failed; walctl pg maintain rebuilds them", metadata: ["error": "\(error)"])
        }
    }
}

// MARK: - Administration (walctl pg maintain / init)

extension RollupMaintenance {
    /// Connects, migrates, and rebuilds the rollups of the minutes touched since the last rebuild
    /// (`walctl pg maintain`). Run it after partition maintenance (expired raw rows are then gone).
    public static func run(
        conninfo: String,
        retentionDays: Int = 90,
        rollupRetentionDays: Int = 400
    ) throws(PGError) -> Report {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-pg-rollups")
        try connection.execute("SET client_min_messages = warning")
        try PostgresSink.migrate(connection)
        return try run(connection, retentionDays: retentionDays, rollupRetentionDays: rollupRetentionDays)
    }

    /// Gives `role` read access for dashboards (`PostgresSchema.readOnlyGrants(to:)`), creating it as a LOGIN role
    /// without a password when it does not exist (set one with `ALTER ROLE ... PASSWORD`, or use certificates).
    /// Returns the statements run.
    public static func grantReadOnly(conninfo: String, role: String) throws(PGError) -> [String] {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-pg-init")
        try connection.execute("SET client_min_messages = warning")
        var statements: [String] = []
        let exists = try connection.execute("SELECT 1 FROM pg_roles WHERE rolname = $1", [role]).rowCount > 0
        if !exists { statements.append("CREATE ROLE \(quoteIdentifier(role)) LOGIN") }
        return try PostgresSink.runGrants(statements + PostgresSchema.readOnlyGrants(to: role), connection)
    }

    static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
