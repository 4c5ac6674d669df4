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
    /// Read-ahead: each transaction of `send` commits on the sink's own thread while the shipper reads the next
    /// batch, and one more batch may wait ready (memory: up to two batches beside the shipper's). Off: `send`
    /// commits on the caller's thread before it returns (the shipper and PostgreSQL take turns). Default on.
    public var readAhead = true

    public init(conninfo: String) { self.conninfo = conninfo }
}

/// Delivers metric records to PostgreSQL exactly once: each batch is written with binary `COPY` into the category
/// tables and the shipper's cursor row is moved forward (never back: `greatest()`) in the same transaction.
///
/// Refusals are told apart by SQLSTATE, never by guessing:
/// - transient failures (connection, resources, shutdown, timeouts, serialization) are thrown for the shipper to
///   retry;
/// - a configuration the sink cannot work with (wrong password, missing database, a table altered so that it no
///   longer matches the schema, missing privileges) is a `FatalSinkError` naming what differs: the shipper stops;
/// - rows the table already holds (a unique violation on `(log_id, wal_seq, timestamp)`, after a replay or an
///   earlier shipper) are skipped, as replay skips them;
/// - only a record that no table of this schema could take (a data error, class 22 or 23) is dead-lettered, alone:
///   the batch is bisected under savepoints until the refused records are found, and each goes to
///   `walctl_dead_letters` with the error, in the same transaction.
///
/// One shipper per log and database: the sink holds a session advisory lock keyed by the log id while it
/// ships; a second shipper of the same log waits for it (logging once that it waits, and for which process).
///
/// With the schema at this code's version the sink runs no DDL (so a role granted by `walctl pg init --grant-to`
/// can ship); a missing or older schema is migrated when the role may, and is otherwise a fatal error that says
/// to run `walctl pg init`.
///
/// Read-ahead: `send` (the shipping engine's way in) runs each transaction on a thread of the sink's own, in order,
/// while the engine reads and decodes the next batch; a transaction that fails drops the batches handed over after
/// it unrun, so no batch is ever written that does not start right after the committed cursor (`DeliveryPipeline`).
///
/// Blocking: the shipper calls it from its own thread. Not thread-safe, except `interruptDelivery`; every method
/// other than `send` first waits for the transactions handed over to end.
public final class PostgresSink: MetricSink, @unchecked Sendable {
    public let configuration: PostgresSinkConfiguration
    public var name: String { configuration.shipperName }
    private let logger: Logger
    private var connection: PGConnection?
    /// The logs whose advisory locks the current connection holds.
    private var lockedLogs: Set<LogID> = []
    private var lastMaintenance: UInt64 = 0
    /// Off after PostgreSQL refused partition DDL to this role (42501): `walctl pg maintain` does it instead.
    private var maintenanceAllowed = true
    private let deadLetters = Atomic<UInt64>(0)
    private let present = Atomic<UInt64>(0)
    private let interrupted = Atomic<Bool>(false)
    /// Where binary COPY input is encoded, a chunk at a time (kept between batches).
    private var copyBuffer: [UInt8] = []
    /// Runs the transactions of `send` on a thread of its own, so the engine reads the next batch meanwhile.
    private var pipeline: DeliveryPipeline!
    /// For tests: called on the pipeline's thread inside each shipping transaction, just before its `COMMIT`.
    package var beforeCommit: (@Sendable ([ShipBatch]) throws(PGError) -> Void)?

    public init(configuration: PostgresSinkConfiguration, logger: Logger = Logger(label: "walctl.postgres")) {
        self.configuration = configuration
        self.logger = logger
        pipeline = DeliveryPipeline(name: "ship-pg-commit") { [weak self] batches in
            try self?.deliverNow(batches)
        }
    }

    deinit {
        pipeline.close()
    }

    /// The read-ahead's counts: transactions run by `send`, batches waiting ready now, and the most that waited.
    package var pipelineCounts: (runs: Int, running: Bool, waiting: Int, mostWaiting: Int) { pipeline.counts }

    /// Records written to `walctl_dead_letters` by this sink since it started.
    public var deadLetterCount: UInt64 { deadLetters.load(ordering: .relaxed) }

    /// Records skipped since the sink started because their table already held them.
    public var alreadyPresentCount: UInt64 { present.load(ordering: .relaxed) }

    public func interruptDelivery() {
        interrupted.store(true, ordering: .relaxed)
        pipeline.interrupt()
    }

    // MARK: - Read-ahead

    /// Hands the batches to the sink's thread, which commits them (COPY, skipped ranges, cursors, `COMMIT`) in
    /// order while the engine reads the next ones; returns the positions committed since the last call. A failed
    /// transaction drops the batches handed over after it unrun and is thrown by the next call (`DeliveryPipeline`).
    public func send(_ batches: [ShipBatch]) throws -> [LogID: UInt64] {
        guard configuration.readAhead else {
            try deliverNow(batches)
            return ShipBatch.positions(batches)
        }
        return try pipeline.send(batches)
    }

    public var hasBatchesInFlight: Bool { pipeline.hasBatchesInFlight }

    public var callRunningSinceNanos: UInt64? { pipeline.runningSinceNanos }

    public func awaitBatchesInFlight(milliseconds: Int) throws -> [LogID: UInt64] {
        try pipeline.awaitBatchesInFlight(milliseconds: milliseconds)
    }

    /// Waits for the transactions handed over by `send` (the engine calls it when it stops or has drained).
    public func commitDeferred() throws { pipeline.quiesce() }

    // MARK: - Connection and schema

    private func connected() throws -> PGConnection {
        do {
            return try connect()
        } catch  where error.fatal {
            throw FatalSinkError(error.description)
        }
    }

    private func connect() throws(PGError) -> PGConnection {
        if let connection, connection.isConnected { return connection }
        connection = nil
        lockedLogs.removeAll()
        let fresh = try PGConnection.connect(configuration.conninfo, applicationName: "walctl-\(name)")
        try fresh.execute("SET client_min_messages = warning")
        if configuration.statementTimeoutMilliseconds > 0 {
            try fresh.execute("SET statement_timeout = \(configuration.statementTimeoutMilliseconds)")
        }
        try Self.checkSchema(fresh)
        connection = fresh
        logger.info("connected to PostgreSQL", metadata: ["conninfo": "\(redactConninfo(configuration.conninfo))"])
        try maintainIfDue(fresh)
        return fresh
    }

    /// The schema version of the database, 0 when walctl's tables are not there.
    static func schemaVersion(_ connection: PGConnection) throws(PGError) -> Int {
        guard try connection.execute("SELECT to_regclass('walctl_schema') IS NOT NULL").value(0, 0) == "t" else {
            return 0
        }
        return Int(try connection.execute("SELECT coalesce(max(version), 0) FROM walctl_schema").value(0, 0) ?? "0")
            ?? 0
    }

    /// Checks the schema without DDL when it is current, migrates it when it is older (if this role may), and
    /// refuses a newer one or tables that no longer match.
    static func checkSchema(_ connection: PGConnection) throws(PGError) {
        let version = try schemaVersion(connection)
        if version > PostgresSchema.version { throw newerSchema(version) }
        if version < PostgresSchema.version {
            do {
                try migrate(connection)
            } catch  where error.sqlState == "42501" {
                throw PGError(
                    message: "the database schema is at version \(version), this walctl needs "
                        + "\(PostgresSchema.version), and this role may not create tables (\(error.message)): run "
                        + "walctl pg init with a role that may (--grant-to gives this role what shipping needs)",
                    sqlState: error.sqlState,
                    fatal: true
                )
            } catch  where !error.isTransient {
                // A table of the same name but another shape, say: retrying cannot fix it (it was retried forever).
                throw PGError(
                    message: "the database schema is at version \(version) and cannot be brought to "
                        + "\(PostgresSchema.version): \(error.message) (walctl pg init says the same)",
                    sqlState: error.sqlState,
                    fatal: true
                )
            }
        }
        let differences = try PostgresSchema.differences(connection)
        guard differences.isEmpty else { throw mismatch(differences) }
    }

    static func newerSchema(_ version: Int) -> PGError {
        PGError(
            message: "the database schema is version \(version), newer than this walctl "
                + "(\(PostgresSchema.version)); upgrade walctl",
            fatal: true
        )
    }

    static func mismatch(_ differences: [String], cause: PGError? = nil) -> PGError {
        var message = "the tables do not match walctl's schema: " + differences.joined(separator: "; ")
        if let cause { message += " (PostgreSQL said: \(cause))" }
        return PGError(message: message, sqlState: cause?.sqlState, fatal: true)
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
            if current > PostgresSchema.version { throw newerSchema(current) }
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

    // MARK: - One shipper per log

    /// Takes the log's advisory lock on this connection, waiting while another session holds it. Session locks
    /// go with their connection: after a reconnect the lock is taken again before anything is written.
    private func holdLock(of logID: LogID, _ connection: PGConnection) throws {
        if lockedLogs.contains(logID) { return }
        let key = Self.lockKey(logID)
        var announced = false
        while true {
            let taken = try connection.execute("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", [key])
            if taken.value(0, 0) == "t" {
                lockedLogs.insert(logID)
                if announced { logger.info("took over shipping of the log", metadata: ["log_id": "\(logID)"]) }
                return
            }
            if !announced {
                let holder = try connection.execute(
                    """
                    SELECT l.pid FROM pg_locks l
                    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                      AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)
                    """,
                    [key]
                ).value(0, 0)
                logger.warning(
                    "another shipper is shipping this log into this database; waiting until it stops",
                    metadata: ["log_id": "\(logID)", "holder_pid": "\(holder ?? "unknown")"]
                )
                announced = true
            }
            for _ in 0..<10 {
                if interrupted.load(ordering: .relaxed) {
                    throw PGError(
                        message: "stopped while waiting for another shipper of this log",
                        connectionLost: true
                    )
                }
                usleep(50_000)
            }
        }
    }

    // MARK: - MetricSink

    public func committedSeq(logID: LogID) throws -> UInt64 {
        pipeline.quiesce()
        let connection = try connected()
        try holdLock(of: logID, connection)
        return try cursorPosition(logID: logID, connection)
    }

    static func lockKey(_ logID: LogID) -> String { "walctl ship \(logID)" }

    /// Takes the advisory locks of the logs not held yet without waiting (one statement), and reads the positions
    /// of those held: a log another shipper holds is left out, and asked for again later by the engine.
    public func committedSeqs(logIDs: [LogID]) throws -> [LogID: UInt64] {
        pipeline.quiesce()
        let connection = try connected()
        let toLock = logIDs.filter { !lockedLogs.contains($0) }
        if !toLock.isEmpty {
            let result = try connection.execute(
                "SELECT k, pg_try_advisory_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k",
                [Self.arrayLiteral(toLock.map(Self.lockKey), quoted: true)]
            )
            var taken: Set<String> = []
            for row in 0..<result.rowCount where result.value(row, 1) == "t" {
                if let key = result.value(row, 0) { taken.insert(key) }
            }
            for logID in toLock where taken.contains(Self.lockKey(logID)) { lockedLogs.insert(logID) }
        }
        let held = logIDs.filter { lockedLogs.contains($0) }
        guard !held.isEmpty else { return [:] }
        let result = try connection.execute(
            "SELECT log_id, wal_seq FROM walctl_cursors WHERE shipper = $1 AND log_id = ANY($2::uuid[])",
            [name, Self.arrayLiteral(held.map(\.description), quoted: false)]
        )
        let found = Self.seqsByLogID(result)
        var positions: [LogID: UInt64] = [:]
        for logID in held { positions[logID] = found[logID.description] ?? 0 }
        return positions
    }

    /// The rows of `SELECT log_id, wal_seq ...` by log id.
    static func seqsByLogID(_ result: PGResult) -> [String: UInt64] {
        var found: [String: UInt64] = [:]
        for row in 0..<result.rowCount {
            if let id = result.value(row, 0), let seq = result.value(row, 1).flatMap({ UInt64($0) }) { found[id] = seq }
        }
        return found
    }

    /// A PostgreSQL array literal of `values` (log ids and lock keys: no quotes or backslashes in them).
    static func arrayLiteral(_ values: [String], quoted: Bool) -> String {
        "{" + values.map { quoted ? "\"\($0)\"" : $0 }.joined(separator: ",") + "}"
    }

    /// Delivers the batches of many logs in one transaction: their rows by binary COPY (one per table for all
    /// logs), their skipped ranges, and every log's cursor row. A refusal that is not transient falls back to
    /// one transaction per log, each with its own bisection and cursor, so exactly-once holds per log either way.
    public func deliver(_ batches: [ShipBatch]) throws {
        pipeline.quiesce()
        try deliverNow(batches)
    }

    /// `deliver`, on the thread that owns the connection now (the pipeline's, or the caller's after `quiesce`).
    private func deliverNow(_ batches: [ShipBatch]) throws {
        guard batches.count > 1 else {
            if let batch = batches.first { try deliverOne(batch) }
            return
        }
        let connection = try connected()
        for batch in batches { try holdLock(of: batch.logID, connection) }
        try maintainIfDue(connection)
        guard let refusal = try deliverWhole(batches, connection) else { return }
        try refuseIfSchemaDiffers(refusal, connection)
        for batch in batches { try deliverOne(batch) }
    }

    private func cursorPosition(logID: LogID, _ connection: PGConnection) throws(PGError) -> UInt64 {
        let result = try connection.execute(
            "SELECT wal_seq FROM walctl_cursors WHERE log_id = $1 AND shipper = $2",
            [logID.description, name]
        )
        return result.value(0, 0).flatMap { UInt64($0) } ?? 0
    }

    public func deliver(_ batch: ShipBatch) throws {
        pipeline.quiesce()
        try deliverOne(batch)
    }

    private func deliverOne(_ batch: ShipBatch) throws {
        let connection = try connected()
        try holdLock(of: batch.logID, connection)
        try maintainIfDue(connection)
        guard let refusal = try deliverWhole([batch], connection) else { return }
        try refuseIfSchemaDiffers(refusal, connection)
        if refusal.sqlState != "23505" {
            logger.warning("a batch was refused; isolating its records", metadata: ["error": "\(refusal)"])
        }
        let failure: PGError
        do throws(PGError) {
            try deliverIsolating(batch, connection: connection)
            return
        } catch {
            failure = error
        }
        if failure.fatal { throw FatalSinkError(failure.description) }
        throw failure
    }

    /// The fast path: one COPY per table, the cursor, one commit. Returns nil when committed, and PostgreSQL's
    /// refusal when it is not transient (then nothing was committed); throws transient failures.
    private func deliverWhole(_ batches: [ShipBatch], _ connection: PGConnection) throws(PGError) -> PGError? {
        do throws(PGError) {
            try connection.execute("BEGIN")
            try checkContinuity(batches, connection: connection)
            try copyAll(batches, connection: connection)
            for batch in batches { try recordSkipped(batch, connection: connection) }
            try advanceCursors(batches, connection: connection)
            try beforeCommit?(batches)
            try connection.execute("COMMIT")
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            if error.isTransient { throw error }
            return error
        }
        return nil
    }

    /// After a refusal: a table that no longer matches, or a refusal only a schema problem explains (class 42:
    /// undefined column or table, datatype mismatch, missing privilege; 22P03: binary data of another type), stops
    /// the shipper with what differs.
    private func refuseIfSchemaDiffers(_ error: PGError, _ connection: PGConnection) throws {
        let differences = (try? PostgresSchema.differences(connection)) ?? []
        if !differences.isEmpty { throw FatalSinkError(Self.mismatch(differences, cause: error).message) }
        if Self.isSchemaError(error) {
            throw FatalSinkError("PostgreSQL refuses the shipper's statements: \(error)")
        }
    }

    static func isSchemaError(_ error: PGError) -> Bool {
        guard let state = error.sqlState else { return false }
        // A row with no partition to go to: a partition (or the default one) detached or dropped by hand, not a bad
        // record (every timestamp has a partition, the default catches the rest). It dead-lettered good records.
        if state == "23514" && error.message.contains("no partition of relation") { return true }
        return state.hasPrefix("42") || state == "22P03" || state == "0A000"
    }

    public func disconnect() {
        pipeline.quiesce()
        connection = nil
        lockedLogs.removeAll()
    }

    // MARK: - Writing

    /// One streamed binary COPY per table for all the batches (`BinaryCopy`), in the caller's transaction.
    private func copyAll(_ batches: [ShipBatch], connection: PGConnection) throws(PGError) {
        let copy = BinaryCopy(batches)
        for (table, category, _) in copy.tables {
            try copy.copy(category, into: table, connection: connection, buffer: &copyBuffer)
        }
    }

    /// Copies `records` into per-table temporary tables, then inserts them with `ON CONFLICT (log_id, wal_seq,
    /// timestamp) DO NOTHING`: rows already there are counted, not written twice. Inside a transaction.
    private func insertIdempotently(
        _ records: ArraySlice<MetricRecord>,
        logID: LogID,
        connection: PGConnection
    ) throws(PGError) -> InsertOutcome {
        var outcome = InsertOutcome()
        let copy = BinaryCopy(records, logID: logID)
        for (table, category, rows) in copy.tables {
            let staging = "walctl_replay_\(table)"
            try connection.execute(
                "CREATE TEMP TABLE IF NOT EXISTS \(staging) (LIKE \(table) INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            // Rows of an earlier call in the same transaction are still there until the commit.
            try connection.execute("TRUNCATE \(staging)")
            try copy.copy(category, into: staging, connection: connection, buffer: &copyBuffer)
            let result = try connection.execute(
                """
                INSERT INTO \(table) (\(PostgresSchema.copyColumns))
                SELECT \(PostgresSchema.copyColumns) FROM \(staging) AS s
                WHERE NOT EXISTS (
                    -- A row shipped when times were floored to the microsecond (not rounded) is the same record.
                    SELECT 1 FROM \(table) AS t WHERE t.log_id = s.log_id AND t.wal_seq = s.wal_seq
                    AND t.timestamp BETWEEN s.timestamp - interval '1 microsecond' AND s.timestamp)
                ON CONFLICT (log_id, wal_seq, timestamp) DO NOTHING
                """
            )
            outcome.inserted += result.affectedRows
            outcome.present += rows - result.affectedRows
        }
        return outcome
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

    /// Refuses batches planned past a failure, before anything is written: a batch that says where it continues
    /// from (`afterSeq`, the engine's committed position plus what it handed over before) must find its log's
    /// cursor exactly there. The cursor rows stay locked until the commit (`FOR UPDATE`), so nothing moves them
    /// between this check and the cursor update. A refusal is a transient conflict (40001): the engine reads the
    /// positions again and plans from them.
    private func checkContinuity(_ batches: [ShipBatch], connection: PGConnection) throws(PGError) {
        let checked = batches.filter { $0.afterSeq != nil }
        guard !checked.isEmpty else { return }
        let result = try connection.execute(
            "SELECT log_id, wal_seq FROM walctl_cursors WHERE shipper = $1 AND log_id = ANY($2::uuid[]) FOR UPDATE",
            [name, Self.arrayLiteral(checked.map(\.logID.description), quoted: false)]
        )
        let cursors = Self.seqsByLogID(result)
        for batch in checked {
            let cursor = cursors[batch.logID.description] ?? 0
            guard let after = batch.afterSeq, after != cursor else { continue }
            throw PGError(
                message: "the cursor of log \(batch.logID) is at \(cursor) but the batch continues from \(after) "
                    + "(planned past a failed commit, or the cursor was moved): nothing written, positions read again",
                sqlState: "40001"
            )
        }
    }

    /// Moves the cursors of several logs forward in one statement (never back).
    private func advanceCursors(_ batches: [ShipBatch], connection: PGConnection) throws(PGError) {
        guard batches.count > 1 else {
            if let batch = batches.first { try advanceCursor(batch, connection: connection) }
            return
        }
        try connection.execute(
            """
            INSERT INTO walctl_cursors (log_id, shipper, wal_seq, updated_at)
            SELECT u.log_id, $1, u.wal_seq, now() FROM unnest($2::uuid[], $3::bigint[]) AS u(log_id, wal_seq)
            ON CONFLICT (log_id, shipper) DO UPDATE SET wal_seq = greatest(walctl_cursors.wal_seq, excluded.wal_seq),
                updated_at = now()
            """,
            [
                name, Self.arrayLiteral(batches.map(\.logID.description), quoted: false),
                Self.arrayLiteral(batches.map { String($0.throughSeq) }, quoted: false),
            ]
        )
    }

    /// Moves the cursor forward only: a shipper that lost its lock and committed late never moves it back.
    private func advanceCursor(_ batch: ShipBatch, connection: PGConnection) throws(PGError) {
        try connection.execute(
            """
            INSERT INTO walctl_cursors (log_id, shipper, wal_seq, updated_at) VALUES ($1, $2, $3, now())
            ON CONFLICT (log_id, shipper) DO UPDATE SET wal_seq = greatest(walctl_cursors.wal_seq, excluded.wal_seq),
                updated_at = now()
            """,
            [batch.logID.description, name, String(batch.throughSeq)]
        )
    }

    /// One transaction: the records go in idempotently, the batch bisected under savepoints until what
    /// PostgreSQL refuses is single records, which go to `walctl_dead_letters`. A schema error on the way is
    /// fatal (thrown with `fatal`), a transient one is thrown as is.
    private func deliverIsolating(_ batch: ShipBatch, connection: PGConnection) throws(PGError) {
        let sourceService = batch.sourceService ?? Envelope.defaultSourceService
        do {
            try connection.execute("BEGIN")
            try checkContinuity([batch], connection: connection)
            let outcome = try insertBisecting(
                batch.records[...],
                logID: batch.logID,
                sourceService: sourceService,
                depth: 0,
                connection: connection
            )
            if outcome.present > 0 {
                present.add(UInt64(outcome.present), ordering: .relaxed)
                logger.info(
                    "rows already in PostgreSQL were skipped",
                    metadata: ["rows": "\(outcome.present)", "through_seq": "\(batch.throughSeq)"]
                )
            }
            try recordSkipped(batch, connection: connection)
            try advanceCursor(batch, connection: connection)
            try connection.execute("COMMIT")
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            throw error
        }
    }

    private func insertBisecting(
        _ records: ArraySlice<MetricRecord>,
        logID: LogID,
        sourceService: String,
        depth: Int,
        connection: PGConnection
    ) throws(PGError) -> InsertOutcome {
        guard !records.isEmpty else { return InsertOutcome() }
        let savepoint = "walctl_part\(depth)"
        try connection.execute("SAVEPOINT \(savepoint)")
        do {
            let outcome = try insertIdempotently(records, logID: logID, connection: connection)
            try connection.execute("RELEASE SAVEPOINT \(savepoint)")
            return outcome
        } catch  where error.isTransient {
            throw error
        } catch {
            try connection.execute("ROLLBACK TO SAVEPOINT \(savepoint)")
            try connection.execute("RELEASE SAVEPOINT \(savepoint)")
            if Self.isSchemaError(error) {
                let differences = (try? PostgresSchema.differences(connection)) ?? []
                throw differences.isEmpty
                    ? PGError(message: "PostgreSQL refuses the shipper's statements: \(error)", fatal: true)
                    : Self.mismatch(differences, cause: error)
            }
            guard records.count > 1 else {
                try deadLetter(
                    records[records.startIndex],
                    logID: logID,
                    sourceService: sourceService,
                    error: error,
                    connection: connection
                )
                return InsertOutcome()
            }
            let middle = records.startIndex + records.count / 2
            var outcome = InsertOutcome()
            for half in [records[..<middle], records[middle...]] {
                let part = try insertBisecting(
                    half,
                    logID: logID,
                    sourceService: sourceService,
                    depth: depth + 1,
                    connection: connection
                )
                outcome.inserted += part.inserted
                outcome.present += part.present
            }
            return outcome
        }
    }

    private func deadLetter(
        _ record: MetricRecord,
        logID: LogID,
        sourceService: String,
        error: PGError,
        connection: PGConnection
    ) throws(PGError) {
        try connection.execute(
            """
            INSERT INTO walctl_dead_letters (log_id, wal_seq_from, wal_seq_to, target_table, record, error)
            VALUES ($1, $2, $2, $3, $4::jsonb, $5)
            """,
            [
                logID.description, String(record.seq), record.category.table,
                Envelope.json(record, logID: logID, sourceService: sourceService),
                error.description,
            ]
        )
        deadLetters.add(1, ordering: .relaxed)
        logger.error("record moved to walctl_dead_letters", metadata: ["seq": "\(record.seq)", "error": "\(error)"])
    }

    // MARK: - Replay

    /// What an idempotent insert did.
    struct InsertOutcome: Sendable, Equatable {
        /// Rows written.
        var inserted = 0
        /// Rows skipped because the table already holds them (same `log_id`, `wal_seq`, `timestamp`).
        var present = 0
    }

    /// Writes a batch idempotently, in one transaction, without touching `walctl_cursors` (`Replayer`): rows the
    /// tables already hold (same `log_id`, `wal_seq` and `timestamp`; or a timestamp up to 1 µs earlier, from
    /// before emit times were rounded to the nearest microsecond rather than floored) are counted, not written.
    ///
    /// Fast path: one index probe per table for any row of the batch's log in its seq and time range; when there
    /// is none (a replay into a database that lost the range), plain binary COPY, as shipping writes. Otherwise,
    /// or when the COPY meets a row written meanwhile (a unique violation), the rows go through a temporary table
    /// and `INSERT ... WHERE NOT EXISTS ... ON CONFLICT DO NOTHING`. Takes no advisory lock: it runs beside a
    /// shipper of the same log.
    public func replay(_ batch: ShipBatch) throws -> ReplayOutcome {
        guard !batch.records.isEmpty else { return ReplayOutcome() }
        pipeline.quiesce()
        let connection = try connected()
        do throws(PGError) {
            try connection.execute("BEGIN")
            var outcome: InsertOutcome?
            if try !anyRowPresent(batch, connection) {
                try connection.execute("SAVEPOINT walctl_replay_copy")
                do throws(PGError) {
                    try copyAll([batch], connection: connection)
                    try connection.execute("RELEASE SAVEPOINT walctl_replay_copy")
                    outcome = InsertOutcome(inserted: batch.records.count, present: 0)
                } catch  where error.sqlState == "23505" {
                    try connection.execute("ROLLBACK TO SAVEPOINT walctl_replay_copy")
                }
            }
            let done: InsertOutcome
            if let outcome {
                done = outcome
            } else {
                done = try insertIdempotently(batch.records[...], logID: batch.logID, connection: connection)
            }
            try connection.execute("COMMIT")
            return ReplayOutcome(sent: UInt64(done.inserted), alreadyPresent: UInt64(done.present))
        } catch {
            if connection.isConnected { _ = try? connection.execute("ROLLBACK") }
            if error.fatal || Self.isSchemaError(error) { throw FatalSinkError(error.description) }
            throw error
        }
    }

    /// True when any table holds a row of the batch's log within the seq range and (widened) time range of the
    /// batch's records for that table: one statement, one index probe per table (the time range prunes partitions).
    private func anyRowPresent(_ batch: ShipBatch, _ connection: PGConnection) throws(PGError) -> Bool {
        var ranges: [String: (seqs: ClosedRange<UInt64>, micros: ClosedRange<Int64>)] = [:]
        for record in batch.records {
            let micros = record.timestampNanos / 1000
            let table = record.category.table
            if let range = ranges[table] {
                ranges[table] = (
                    min(range.seqs.lowerBound, record.seq)...max(range.seqs.upperBound, record.seq),
                    min(range.micros.lowerBound, micros)...max(range.micros.upperBound, micros)
                )
            } else {
                ranges[table] = (record.seq...record.seq, micros...micros)
            }
        }
        // Microseconds since the Unix epoch, widened by 2 on each side (rounding, and rows floored by 1 µs).
        let probes = ranges.sorted { $0.key < $1.key }.map { table, range in
            "EXISTS (SELECT 1 FROM \(table) WHERE log_id = $1 "
                + "AND wal_seq BETWEEN \(range.seqs.lowerBound) AND \(range.seqs.upperBound) "
                + "AND timestamp BETWEEN timestamptz 'epoch' + \(range.micros.lowerBound - 2) * interval '1 microsecond' "
                + "AND timestamptz 'epoch' + \(range.micros.upperBound + 2) * interval '1 microsecond')"
        }
        let result = try connection.execute("SELECT " + probes.joined(separator: " OR "), [batch.logID.description])
        return result.value(0, 0) != "f"
    }

    /// This shipper's committed position for `logID`, read without taking the log's lock (for replay and
    /// inspect, which run beside a shipper).
    public func peekCommittedSeq(logID: LogID) throws -> UInt64 {
        pipeline.quiesce()
        return try cursorPosition(logID: logID, try connected())
    }

    /// Moves this shipper's cursor for `logID` forward to `seq` (never back): `walctl replay --advance-cursor`.
    /// Returns the cursor after the call.
    public func advanceCursor(logID: LogID, to seq: UInt64) throws -> UInt64 {
        pipeline.quiesce()
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

    /// Connects and applies migrations; returns the schema version. With `grantTo`, also grants that role what
    /// shipping needs (`PostgresSchema.grants(to:)`) and returns the statements run.
    public static func initialize(
        conninfo: String,
        grantTo role: String? = nil
    ) throws(PGError) -> (version: Int, grants: [String]) {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-pg-init")
        try connection.execute("SET client_min_messages = warning")
        try migrate(connection)
        guard let role else { return (PostgresSchema.version, []) }
        return (PostgresSchema.version, try runGrants(PostgresSchema.grants(to: role), connection))
    }

    /// Runs grant statements (their schema placeholder replaced by the current schema) in one transaction;
    /// returns them as run.
    static func runGrants(_ grants: [String], _ connection: PGConnection) throws(PGError) -> [String] {
        let schema = try connection.execute("SELECT quote_ident(current_schema())").value(0, 0) ?? "public"
        let statements = grants.map {
            $0.replacingOccurrences(of: PostgresSchema.currentSchemaPlaceholder, with: schema)
        }
        try connection.execute("BEGIN")
        do throws(PGError) {
            for statement in statements { try connection.execute(statement) }
            try connection.execute("COMMIT")
        } catch {
            _ = try? connection.execute("ROLLBACK")
            throw error
        }
        return statements
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
        var buffer: [UInt8] = []
        var start = 0
        while start < records.count {
            let end = min(start + batchSize, records.count)
            try connection.execute("BEGIN")
            let copy = BinaryCopy(records[start..<end], logID: logID)
            for (table, category, _) in copy.tables {
                try copy.copy(category, into: table, connection: connection, buffer: &buffer)
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

    /// What `walctl_dead_letters` holds for `logID`: records PostgreSQL refused, and ranges the log could not
    /// deliver (gaps, damage, undecodable records) with the sequence numbers they cover.
    public static func deadLetters(
        conninfo: String,
        logID: String
    ) throws(PGError) -> (records: UInt64, ranges: UInt64, rangeSeqs: UInt64) {
        let connection = try PGConnection.connect(conninfo, applicationName: "walctl-inspect")
        let exists = try connection.execute("SELECT to_regclass('walctl_dead_letters') IS NOT NULL").value(0, 0)
        guard exists == "t" else { return (0, 0, 0) }
        let result = try connection.execute(
            """
            SELECT count(*) FILTER (WHERE record IS NOT NULL), count(*) FILTER (WHERE record IS NULL),
                   coalesce(sum(wal_seq_to - wal_seq_from + 1) FILTER (WHERE record IS NULL), 0)
            FROM walctl_dead_letters WHERE log_id = $1::uuid
            """,
            [logID]
        )
        return (
            UInt64(result.value(0, 0) ?? "0") ?? 0, UInt64(result.value(0, 1) ?? "0") ?? 0,
            UInt64(result.value(0, 2) ?? "0") ?? 0
        )
    }

    // MARK: - Partitions

    /// Partition DDL needs the tables' owner: a shipping role without it leaves partitions to `walctl pg
    /// maintain` (rows land in the default partition meanwhile), said once.
    private func maintainIfDue(_ connection: PGConnection) throws(PGError) {
        let now = monotonicSeconds()
        guard maintenanceAllowed,
            lastMaintenance == 0 || now - lastMaintenance >= UInt64(configuration.maintenanceIntervalSeconds)
        else {
            return
        }
        let report: PartitionMaintenance.Report
        do {
            report = try PartitionMaintenance.run(
                connection,
                daysAhead: configuration.partitionDaysAhead,
                retentionDays: configuration.retentionDays
            )
        } catch  where error.sqlState == "42501" {
            maintenanceAllowed = false
            logger.notice(
                "this role may not maintain partitions; run walctl pg maintain with the tables' owner (daily)",
                metadata: ["error": "\(error)"]
            )
            return
        }
        lastMaintenance = max(now, 1)
        RollupMaintenance.runForShipper(connection, retentionDays: configuration.retentionDays, logger: logger)
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
