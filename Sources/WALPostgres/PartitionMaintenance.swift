/// Daily partitions: created ahead of time, filled from the default partition when it already holds rows for a day,
/// and dropped after the retention. See `walctl pg maintain`.
public enum PartitionMaintenance {
    public struct Report: Sendable, Equatable {
        public var created: [String] = []
        public var dropped: [String] = []
        /// Rows moved out of default partitions into new daily partitions.
        public var movedRows = 0
        /// Rows deleted from default partitions for being older than the retention.
        public var expiredDefaultRows = 0
    }

    static func run(_ connection: PGConnection, daysAhead: Int, retentionDays: Int) throws(PGError) -> Report {
        var report = Report()
        let today = try connection.execute("SELECT (now() AT TIME ZONE 'UTC')::date").value(0, 0) ?? ""
        for table in PostgresSchema.tables {
            // Days to have: yesterday to today + daysAhead, and any day within the retention already in the default
            // partition. Rows with odd timestamps beyond the days ahead stay in the default partition.
            var days = Set<String>()
            let ahead = try connection.execute(
                "SELECT to_char(d, 'YYYY-MM-DD') FROM generate_series($1::date - 1, $1::date + $2::int, '1 day') AS d",
                [today, String(daysAhead)]
            )
            for row in 0..<ahead.rowCount { if let day = ahead.value(row, 0) { days.insert(day) } }
            let present = try connection.execute(
                """
                SELECT DISTINCT to_char((timestamp AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') FROM \(table)_default
                WHERE timestamp >= (now() AT TIME ZONE 'UTC')::date - $1::int
                  AND timestamp < (now() AT TIME ZONE 'UTC')::date + $2::int + 1
                """,
                [String(retentionDays), String(daysAhead)]
            )
            for row in 0..<present.rowCount { if let day = present.value(row, 0) { days.insert(day) } }
            for day in days.sorted() {
                let moved = try ensurePartition(connection, table: table, day: day)
                if let moved {
                    report.created.append(partitionName(table, day))
                    report.movedRows += moved
                }
            }
            // Drop partitions past the retention.
            let old = try connection.execute(
                """
                SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                WHERE p.relname = $1 AND c.relname ~ '_p[0-9]{8}$'
                  AND to_date(right(c.relname, 8), 'YYYYMMDD') < (now() AT TIME ZONE 'UTC')::date - $2::int
                """,
                [table, String(retentionDays)]
            )
            for row in 0..<old.rowCount {
                guard let name = old.value(row, 0) else { continue }
                try connection.execute("DROP TABLE IF EXISTS \(name)")
                report.dropped.append(name)
            }
            let expired = try connection.execute(
                "DELETE FROM \(table)_default WHERE timestamp < (now() AT TIME ZONE 'UTC')::date - $1::int",
                [String(retentionDays)]
            )
            report.expiredDefaultRows += expired.affectedRows
        }
        return report
    }

    static func partitionName(_ table: String, _ day: String) -> String {
        table + "_p" + day.filter { $0 != "-" }
    }

    /// Creates the partition of `day` (YYYY-MM-DD) unless it exists, moving that day's rows out of the default
    /// partition in the same transaction. Returns the rows moved, or nil when the partition already existed.
    static func ensurePartition(_ connection: PGConnection, table: String, day: String) throws(PGError) -> Int? {
        let name = partitionName(table, day)
        let exists = try connection.execute("SELECT to_regclass($1) IS NOT NULL", [name]).value(0, 0) == "t"
        if exists { return nil }
        let from = "'\(day) 00:00:00+00'"
        let to = "('\(day)'::date + 1)::timestamp AT TIME ZONE 'UTC'"
        do throws(PGError) {
            try connection.execute("BEGIN")
            try connection.execute("LOCK TABLE \(table) IN SHARE ROW EXCLUSIVE MODE")
            if try connection.execute("SELECT to_regclass($1) IS NOT NULL", [name]).value(0, 0) == "t" {
                try connection.execute("COMMIT")
                return nil
            }
            try connection.execute("CREATE TABLE \(name) (LIKE \(table) INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            let moved = try connection.execute(
                """
                WITH moved AS (
                    DELETE FROM \(table)_default WHERE timestamp >= \(from) AND timestamp < \(to) RETURNING *
                ) INSERT INTO \(name) SELECT * FROM moved
                """
            )
            try connection.execute("ALTER TABLE \(table) ATTACH PARTITION \(name) FOR VALUES FROM (\(from)) TO (\(to))")
            try connection.execute("COMMIT")
            return moved.affectedRows
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }
}
