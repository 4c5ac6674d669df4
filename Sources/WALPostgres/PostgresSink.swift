import Logging
import Synchronization
import WALCore
import WALMetrics
import WALShipping

/// Settings of the PostgreSQL sink.
public struct PostgresSinkConfiguration: Sendable {
    /// A libpq conninfo string or URL (`DATABASE_URL`); libpq's `PG*` variables fill the gaps; TLS via `sslmode`.
    public var conninfo: String
    /// The shipper's name in `walctl_cursors` and in the local cursor file.
    public var shipperName = "postgres"
    /// Daily partitions created ahead of today (UTC).
    public var partitionDaysAhead = 7
    /// Partitions (and default-partition rows) older than this many days are dropped.
    public var retentionDays = 90
    /// How often partition maintenance runs while shipping, in seconds.
    public var maintenanceIntervalSeconds = 3600
    /// `statement_timeout` of the shipper's session, in milliseconds (0: none).
    public var statementTimeoutMilliseconds = 60_000

    public init(conninfo: String) { self.conninfo = conninfo }
}

/// Delivers metric records to PostgreSQL exactly once: each batch is written with binary `COPY` into the category
/// tables and the shipper's cursor row is updated in the same transaction. A record PostgreSQL rejects for good
/// is isolated (savepoint per record) and written to `walctl_dead_letters` with the error, in the same transaction,
/// so it neither vanishes nor blocks the others. Gaps and damage the log reports are recorded there too.
///
/// Blocking: the shipper calls it from its own thread. Not thread-safe.
public final class PostgresSink: MetricSink, @unchecked Sendable {
    public let configuration: PostgresSinkConfiguration
    public var name: String { configuration.shipperName }
    private let logger: Logger
    private var connection: PGConnection?
    private var lastMaintenance: UInt64 = 0
    private let deadLetters = Atomic<UInt64>(0)

    public init(configuration: PostgresSinkConfiguration, logger: Logger = Logger(label: "walctl.postgres")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Records written to `walctl_dead_letters` by this sink since it started.
    public var deadLetterCount: UInt64 { deadLetters.load(ordering: .relaxed) }

    // MARK: - Connection and schema

    private func connected() throws -> PGConnection {
        do {
            return try connect()
        } catch  where error.fatal {
            throw FatalSinkError(error.message)
        }
    }

    private func connect() throws(PGError) -> PGConnection {
        if let connection, connection.isConnected { return connection }
        connection = nil
        let fresh = try PGConnection.connect(configuration.conninfo, applicationName: "walctl-\(name)")
        try fresh.execute("SET client_min_messages = warning")
        if configuration.statementTimeoutMilliseconds > 0 {
            try fresh.execute("SET statement_timeout = \(configuration.statementTimeoutMilliseconds)")
        }
        try Self.migrate(fresh)
        connection = fresh
        logger.info("connected to PostgreSQL", metadata: ["conninfo": "\(redactConninfo(configuration.conninfo))"])
        try maintainIfDue(fresh)
        return fresh
    }

    /// Brings the schema to `PostgresSchema.version`, in one transaction, serialised by an advisory lock.
    static func migrate(_ connection: PGConnection) throws(PGError) {
        try connection.execute("BEGIN")
        do throws(PGError) {
            try connection.execute("SELECT pg_advisory_xact_lock(7745117331)")
            try connection.execute(
                "CREATE TABLE IF NOT EXISTS walctl_schema (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            let current =
                Int(try connection.execute("SELECT coalesce(max(version), 0) FROM walctl_schema").value(0, 0) ?? "0")
                ?? 0
            if current > PostgresSchema.version {
                throw PGError(
                    message:
                        "the database schema is version \(current), newer than this walctl (\(PostgresSchema.version)); upgrade walctl",
                    fatal: true
                )
            }
            for version in (current + 1)...max(current + 1, PostgresSchema.version)
            where version <= PostgresSchema.version {
                try connection.execute(PostgresSchema.migrations[version - 1])
                try connection.execute("INSERT INTO walctl_schema (version) VALUES (\(version))")
            }
            try connection.execute("COMMIT")
        } catch {
            _ = try? connection.execute("ROLLBACK")
            throw error
        }
    }

    // MARK: - MetricSink

    public func committedSeq(logID: LogID) throws -> UInt64 {
        let connection = try connected()
        let result = try connection.execute(
            "SELECT wal_seq FROM walctl_cursors WHERE log_id = $1 AND shipper = $2",
            [logID.description, name]
        )
        return result.value(0, 0).flatMap { UInt64($0) } ?? 0
    }

    public func deliver(_ batch: ShipBatch) throws {
        let connection = try connected()
        try maintainIfDue(connection)
        do {
            try connection.execute("BEGIN")
            try copyAll(batch.records, logID: batch.logID, connection: connection)
            try recordSkipped(batch, connection: connection)
            try advanceCursor(batch, connection: connection)
            try connection.execute("COMMIT")
        } catch  where !error.isTransient {
            _ = try? connection.execute("ROLLBACK")
            logger.warning("a batch was refused; isolating its records", metadata: ["error": "\(error)"])
            try deliverIsolating(batch, connection: connection)
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    public func disconnect() {
        connection = nil
    }

    // MARK: - Writing

    private func copyAll(_ records: [MetricRecord], logID: LogID, connection: PGConnection) throws(PGError) {
        var byTable: [String: BinaryCopyBuilder] = [:]
        for record in records {
            byTable[record.category.table, default: BinaryCopyBuilder()].append(record, logID: logID)
        }
        for (table, builder) in byTable.sorted(by: { $0.key < $1.key }) {
            try connection.copyIn(
                "COPY \(table) (\(PostgresSchema.copyColumns)) FROM STDIN (FORMAT binary)",
                data: builder.finished()
            )
        }
    }

    private func recordSkipped(_ batch: ShipBatch, connection: PGConnection) throws(PGError) {
        for entry in batch.skipped {
            try connection.execute(
                "INSERT INTO walctl_dead_letters (log_id, wal_seq_from, wal_seq_to, error) VALUES ($1, $2, $3, $4)",
                [
                    batch.logID.description, String(entry.fromSeq), String(entry.toSeq),
                    "not in the log: \(entry.reason)",
                ]
            )
        }
    }

    private func advanceCursor(_ batch: ShipBatch, connection: PGConnection) throws(PGError) {
        try connection.execute(
            """
            INSERT INTO walctl_cursors (log_id, shipper, wal_seq, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (log_id, shipper) DO UPDATE SET wal_seq = excluded.wal_seq, updated_at = now()
            """,
            [batch.logID.description, name, String(batch.throughSeq)]
        )
    }

    /// One transaction, a savepoint per record: what PostgreSQL refuses goes to `walctl_dead_letters`.
    private func deliverIsolating(_ batch: ShipBatch, connection: PGConnection) throws(PGError) {
        do {
            try connection.execute("BEGIN")
            for record in batch.records {
                try connection.execute("SAVEPOINT one")
                do {
                    try copyAll([record], logID: batch.logID, connection: connection)
                    try connection.execute("RELEASE SAVEPOINT one")
                } catch  where !error.isTransient {
                    try connection.execute("ROLLBACK TO SAVEPOINT one")
                    try connection.execute(
                        """
                        INSERT INTO walctl_dead_letters (log_id, wal_seq_from, wal_seq_to, target_table, record, error)
                        VALUES ($1, $2, $2, $3, $4::jsonb, $5)
                        """,
                        [
                            batch.logID.description, String(record.seq), record.category.table,
                            Envelope.json(record, logID: batch.logID), error.description,
                        ]
                    )
                    deadLetters.add(1, ordering: .relaxed)
                    logger.error(
                        "record moved to walctl_dead_letters",
                        metadata: ["seq": "\(record.seq)", "error": "\(error)"]
                    )
                }
            }
            try recordSkipped(batch, connection: connection)
            try advanceCursor(batch, connection: connection)
            try connection.execute("COMMIT")
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: - Replay

    /// What one replayed batch did.
    public struct ReplayOutcome: Sendable, Equatable {
        /// Rows written.
        public var inserted = 0
        /// Rows skipped because the table already holds them (same `log_id`, `wal_seq`, `timestamp`).
        public var present = 0
    }

    /// Writes records idempotently, for `walctl replay`: each batch is copied into a temporary table and inserted
    /// with `ON CONFLICT (log_id, wal_seq, timestamp) DO NOTHING`, in one transaction, so replaying a range twice
    /// (or over rows the shipper already wrote) adds nothing. Rows written before emit times were rounded to the
    /// nearest microsecond (they were floored: up to 1 µs earlier) count as present too. Does not touch
    /// `walctl_cursors`.
    public func replay(_ records: [MetricRecord], logID: LogID) throws -> ReplayOutcome {
        let connection = try connected()
        var outcome = ReplayOutcome()
        var byTable: [String: BinaryCopyBuilder] = [:]
        for record in records {
            byTable[record.category.table, default: BinaryCopyBuilder()].append(record, logID: logID)
        }
        do {
            try connection.execute("BEGIN")
            for (table, builder) in byTable.sorted(by: { $0.key < $1.key }) {
                let staging = "walctl_replay_\(table)"
                try connection.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS \(staging) (LIKE \(table) INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                try connection.copyIn(
                    "COPY \(staging) (\(PostgresSchema.copyColumns)) FROM STDIN (FORMAT binary)",
                    data: builder.finished()
                )
                let result = try connection.execute(
                    """
                    INSERT INTO \(table) (\(PostgresSchema.copyColumns))
                    SELECT \(PostgresSchema.copyColumns) FROM \(staging) AS s
                    WHERE NOT EXISTS (
                        SELECT 1 FROM \(table) AS t WHERE t.log_id = s.log_id AND t.wal_seq = s.wal_seq
                        AND t.timestamp BETWEEN s.timestamp - interval '1 microsecond' AND s.timestamp)
                    ON CONFLICT (log_id, wal_seq, timestamp) DO NOTHING
                    """
                )
                outcome.inserted += result.affectedRows
                outcome.present += builder.rows - result.affectedRows
            }
            try connection.execute("COMMIT")
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
        return outcome
    }

    /// Moves this shipper's cursor for `logID` forward to `seq` (never back): `walctl replay --advance-cursor`.
    /// Returns the cursor after the call.
    public func advanceCursor(logID: LogID, to seq: UInt64) throws -> UInt64 {
        let connection = try connected()
        let result = try connection.execute(
            """
            INSERT INTO walctl_cursors (log_id, shipper, wal_seq, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (log_id, shipper) DO UPDATE SET wal_seq = greatest(walctl_cursors.wal_seq, excluded.wal_seq),
                updated_at = now()
            RETURNING wal_seq
            """,
            [logID.description, name, String(seq)]
        )
        return result.value(0, 0).flatMap { UInt64($0) } ?? seq
    }

    // MARK: - Administration (walctl pg init / maintain)

    /// Connects and applies migrations; returns the schema version.
    public static func initialize(conninfo: String) throws(PGError) -> Int {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-pg-init")
        try connection.execute("SET client_min_messages = warning")
        try migrate(connection)
        return PostgresSchema.version
    }

    /// Connects, migrates, and runs partition maintenance now.
    public static func maintain(
        conninfo: String,
        daysAhead: Int = 7,
        retentionDays: Int = 90
    ) throws(PGError) -> PartitionMaintenance.Report {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-pg-maintain")
        try connection.execute("SET client_min_messages = warning")
        try migrate(connection)
        return try PartitionMaintenance.run(connection, daysAhead: daysAhead, retentionDays: retentionDays)
    }

    /// The baseline for the ship benchmark: the same rows written with binary COPY in transactions of `batchSize`,
    /// with no log reading, decoding or cursor.
    public static func plainCopy(
        conninfo: String,
        records: [MetricRecord],
        logID: LogID,
        batchSize: Int
    ) throws(PGError) {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-baseline")
        try migrate(connection)
        var start = 0
        while start < records.count {
            let end = min(start + batchSize, records.count)
            var byTable: [String: BinaryCopyBuilder] = [:]
            for record in records[start..<end] {
                byTable[record.category.table, default: BinaryCopyBuilder()].append(record, logID: logID)
            }
            try connection.execute("BEGIN")
            for (table, builder) in byTable {
                try connection.copyIn(
                    "COPY \(table) (\(PostgresSchema.copyColumns)) FROM STDIN (FORMAT binary)",
                    data: builder.finished()
                )
            }
            try connection.execute("COMMIT")
            start = end
        }
    }

    /// The committed position of every shipper of every log in this database.
    public static func cursors(conninfo: String) throws(PGError) -> [(logID: String, shipper: String, seq: UInt64)] {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-inspect")
        let exists = try connection.execute("SELECT to_regclass('walctl_cursors') IS NOT NULL").value(0, 0) == "t"
        guard exists else { return [] }
        let result = try connection.execute("SELECT log_id, shipper, wal_seq FROM walctl_cursors ORDER BY 1, 2")
        return (0..<result.rowCount).map { row in
            (result.value(row, 0) ?? "", result.value(row, 1) ?? "", UInt64(result.value(row, 2) ?? "0") ?? 0)
        }
    }

    // MARK: - Partitions

    private func maintainIfDue(_ connection: PGConnection) throws(PGError) {
        let now = monotonicSeconds()
        guard lastMaintenance == 0 || now - lastMaintenance >= UInt64(configuration.maintenanceIntervalSeconds) else {
            return
        }
        let report = try PartitionMaintenance.run(
            connection,
            daysAhead: configuration.partitionDaysAhead,
            retentionDays: configuration.retentionDays
        )
        lastMaintenance = max(now, 1)
        if !report.created.isEmpty || !report.dropped.isEmpty {
            logger.info(
                "partition maintenance",
                metadata: ["created": "\(report.created.count)", "dropped": "\(report.dropped.count)"]
            )
        }
    }
}

func monotonicSeconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
