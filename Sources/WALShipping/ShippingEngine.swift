import Logging
import ServiceLifecycle
import Synchronization
import WALCore
import WALMetrics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where one log stands with one sink.
public struct LogShippingStatus: Sendable, Equatable {
    public var directory: String
    public var logID: String
    public var statistics = ShipperStatistics()
    /// The drain target of this log (what it had sealed when a draining shipper found it), if draining.
    public var drainTarget: UInt64?
    /// True while another shipper holds this log in the sink (PostgreSQL's advisory lock): it waits.
    public var heldElsewhere = false
    /// When the log last had a record to ship or delivered one (monotonic nanoseconds).
    public var lastActivityNanos: UInt64 = 0
}

/// Ships every log of a `LogSelection` to one sink, on one thread, through one connection (one PostgreSQL session,
/// one Kafka producer): `walctl ship --root` for every agent of a host, and `walctl ship --dir` for one log.
///
/// - **Exactly once per log where the sink is:** a batch carries records of many logs, and the sink commits every
///   log's position with them (PostgreSQL: the rows and every cursor row in one transaction). After any failure the
///   positions are read back from the sink before anything is read again.
/// - **Fairness:** each batch is shared among the logs with records waiting by `BatchPlanner` (max-min fair), so a
///   backlog of millions in one log delays a fresh record of another by one batch at most, and a partial batch
///   ships when its oldest record has waited `flushIntervalMilliseconds`.
/// - **Bounded resources:** a log holds a segment open (one descriptor, one mapping) only while it is active; a log
///   idle for `suspendAfterIdleMilliseconds`, or beyond the `maxOpenLogs` most recently active, is suspended and
///   probed with a backoff up to `idleProbeMaxMilliseconds`. At most `batchSize` records wait in memory per log
///   once more than one log is busy (up to `catchUpBatchSize` for one).
/// - **New logs** are found by a rescan every `rescanMilliseconds` (roots and patterns; a fixed selection is not
///   rescanned); a log whose directory disappeared (retired, removed) is forgotten.
/// - Transient failures are retried with backoff forever; a `FatalSinkError` stops the engine.
public final class ShippingEngine: Service, @unchecked Sendable {
    public let selection: LogSelection
    public let sink: any MetricSink
    public let configuration: ShipperConfiguration
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let status = Mutex<[String: LogShippingStatus]>([:])
    private let totals = Mutex(ShipperStatistics())
    private let forgetRequests = Mutex<Set<String>>([])
    private let firstScanDone = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)
    /// When the call into the sink now running began (monotonic nanoseconds), 0 when none runs. Read by monitors
    /// from other threads: a call that never returns (a lock wait in PostgreSQL, a network black hole) freezes
    /// everything this engine publishes from its own thread, but not this.
    private let sinkCallSince = Atomic<UInt64>(0)

    public init(
        selection: LogSelection,
        sink: any MetricSink,
        configuration: ShipperConfiguration,
        logger: Logger
    ) {
        self.selection = selection
        self.sink = sink
        self.configuration = configuration
        self.logger = logger
    }

    /// Every log's standing with this sink, by directory.
    public var logs: [String: LogShippingStatus] { status.withLock { $0 } }

    /// The sum over logs (committedSeq: the lowest committed position of a log; recordsBehind, retries and errors
    /// summed; lastError: the latest).
    public var statistics: ShipperStatistics {
        var statistics = totals.withLock { $0 }
        // The earliest of the engine's own call and the sink's transaction running on its thread (read-ahead).
        let since = sinkCallSince.load(ordering: .relaxed)
        statistics.sinkCallSinceNanos = [since == 0 ? nil : since, sink.callRunningSinceNanos].compactMap { $0 }.min()
        return statistics
    }

    /// Runs a call into the sink, marked as running for `statistics.sinkCallSinceNanos`.
    private func callingSink<T>(_ body: () throws -> T) rethrows -> T {
        sinkCallSince.store(max(monotonicNow(), 1), ordering: .relaxed)
        defer { sinkCallSince.store(0, ordering: .relaxed) }
        return try body()
    }

    /// True once the loop returned (drained, stopped or failed).
    public var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// True once the first scan found its logs and read where the sink stands for each (or was stopped).
    public var isStarted: Bool { firstScanDone.load(ordering: .acquiring) }

    /// The position committed in the sink for the log at `directory`, when the engine knows it.
    public func committedSeq(directory: String) -> UInt64? {
        status.withLock { $0[LogSelection.normalized(directory)].map(\.statistics.committedSeq) }
    }

    /// Asks the loop to stop after the batch in flight.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        sink.interruptDelivery()
    }

    /// Stops shipping the log at `directory` (it was retired); a later scan that finds it again adds it back.
    public func forget(directory: String) {
        _ = forgetRequests.withLock { $0.insert(LogSelection.normalized(directory)) }
    }

    public func run() async throws {
        try await runOnDedicatedThread(name: "ship-\(sink.name)", stop: { self.stop() }) { try self.loop() }
    }

    /// Runs the loop on the calling thread until stopped or drained (for tools and tests).
    public func runBlocking() throws { try loop() }

    // MARK: - Per-log state (owned by the loop's thread)

    final class Source: SuspendableLog {
        let directory: String
        let logID: LogID
        var decoder: MetricsDecoder?
        var reader: TailReader?
        /// The sink's committed position; nil until read from the sink (and after any failure).
        var committed: UInt64?
        /// The last position read from or committed to the sink, kept across `resetToSink` (for lag and health while
        /// the position is being read again).
        var knownCommitted: UInt64 = 0
        /// How far batches were handed to the sink (`send`): `committed` or beyond, while batches are in flight.
        var sentThrough: UInt64 = 0
        var positionRetryAt: UInt64 = 0
        var pending: [MetricRecord] = []
        /// The records waiting, undecoded, for a sink that takes them so (`MetricSink.takesEncodedRecords`); then
        /// `pending` stays empty and `pendingHead` counts into this.
        var pendingEncoded = EncodedRecords()
        /// The encoded size of each record in `pending` (for the bytes-shipped counter).
        var pendingSizes: [UInt32] = []
        var pendingHead = 0
        var pendingSkipped: [SkippedEntry] = []
        /// The last damage read whose lost sequence numbers were not known, and where it was met (see
        /// `readAvailable`).
        var unplacedDamage: (reason: String, through: UInt64)?
        var pendingThrough: UInt64 = 0
        var firstPendingAt: UInt64?
        var nextPollAt: UInt64 = 0
        var probeInterval: UInt64
        var lastActivity: UInt64
        var readErrorLogged = false
        var drainTarget: UInt64?
        var cursorStoredAt: UInt64 = 0
        var cursorStoredSeq: UInt64 = 0
        var lastSealedSeq: UInt64 = 0
        var lastSealedCheckedAt: UInt64 = 0
        /// While the position is unknown: the first record after it, when its frame was sealed, and when that was
        /// looked up.
        var unreadAge: (seq: UInt64, sealedAtNanos: Int64?, at: UInt64)?
        /// The local copy of the position (`cursors/{sink}`), read once: it only follows the sink's, so it is a floor
        /// for the position while the sink cannot be reached.
        var localCursor: UInt64?
        var waitingAnnounced = false

        /// When `wal.meta` was last seen with this log id (its modification time), so a scan reads it only when it
        /// changed.
        var metaStamp: UInt64?

        init(directory: String, logID: LogID, now: UInt64, probe: UInt64) {
            self.directory = directory
            self.logID = logID
            self.lastActivity = now
            self.probeInterval = probe
        }

        var pendingCount: Int { pending.count + pendingEncoded.count - pendingHead }
        /// The emit time of the oldest record waiting (`pendingCount > 0`).
        var oldestPendingNanos: Int64 {
            pending.isEmpty ? pendingEncoded.timestamps[pendingHead] : pending[pendingHead].timestampNanos
        }
        var hasWaiting: Bool { committed != nil && pendingThrough > sentThrough }

        func resetToSink() {
            committed = nil
            reader = nil
            decoder = nil
            pending.removeAll()
            pendingEncoded = EncodedRecords()
            pendingSizes.removeAll()
            pendingHead = 0
            pendingSkipped.removeAll()
            unplacedDamage = nil
            firstPendingAt = nil
        }
    }

    private var sources: [String: Source] = [:]
    /// Batches handed to the sink and not yet committed, oldest first (a pipelining sink's; see `MetricSink.send`).
    private var inFlight: [Planned] = []
    /// Logs whose committed position moved past their local cursor file.
    private var unstoredCursors: Set<String> = []
    private var order: [String] = []
    private var rotation = 0
    private var lastScan: UInt64 = 0

    // MARK: - The loop

    private func loop() throws {
        defer {
            storeLocalCursors(force: true)
            publishStatus(force: true)
            firstScanDone.store(true, ordering: .releasing)
            finished.store(true, ordering: .releasing)
        }
        var attempt = 0
        let batchCap = max(1, configuration.catchUpBatchSize, configuration.batchSize)
        while !stopRequested.load(ordering: .relaxed) {
            let now = monotonicNow()
            applyForgetRequests()
            if lastScan == 0 || (!selection.isFixed && now - lastScan >= millis(configuration.rescanMilliseconds)) {
                try scan(now: now)
                lastScan = max(now, 1)
            }
            do {
                try readPositions(now: now)
                firstScanDone.store(true, ordering: .releasing)
                if drained() {
                    try callingSink { try sink.commitDeferred() }
                    return
                }
                readAvailable(now: monotonicNow(), batchCap: batchCap)
                let batch = plan(now: monotonicNow(), batchCap: batchCap)
                publishStatus()
                guard !batch.isEmpty else {
                    if sink.hasBatchesInFlight {
                        let idleFor = idleMilliseconds()
                        acknowledged(try callingSink { try sink.awaitBatchesInFlight(milliseconds: idleFor) })
                    } else {
                        idle()
                    }
                    continue
                }
                let positions = try callingSink { try sink.send(batch.map(\.batch)) }
                attempt = 0
                sent(batch)
                acknowledged(positions)
            } catch let error as FatalSinkError {
                totals.withLock {
                    $0.lastError = error.message
                    $0.lastErrorAtNanos = UInt64(wallClockNow())
                    $0.connected = false
                    $0.errorsByKind["fatal", default: 0] += 1
                    $0.stoppedByError = true
                }
                logger.critical("shipper stopped", metadata: ["error": "\(error.message)"])
                sink.disconnect()
                throw error
            } catch {
                attempt += 1
                let text = "\(error)"
                let failedAt = monotonicNow()
                totals.withLock {
                    $0.retries += 1
                    $0.lastError = text
                    $0.lastErrorAtNanos = UInt64(wallClockNow())
                    $0.connected = false
                    $0.errorsByKind[(error as? any SinkErrorKind)?.kind ?? "other", default: 0] += 1
                    if $0.failingSinceNanos == nil { $0.failingSinceNanos = failedAt }
                }
                logger.warning("delivery failed; retrying", metadata: ["error": "\(text)", "attempt": "\(attempt)"])
                sink.disconnect()
                // The commit may or may not have happened, and a reconnected sink holds no per-log locks: every
                // log's position is read from the sink again.
                inFlight.removeAll()
                for source in sources.values { source.resetToSink() }
                publishStatus()
                sleepMilliseconds(configuration.retry.delayMilliseconds(attempt: attempt))
            }
        }
        do {
            try callingSink { try sink.commitDeferred() }
        } catch {
            logger.warning(
                "stopping with cursors not committed; what follows them is sent again",
                metadata: ["error": "\(error)"]
            )
        }
    }

    private func millis(_ value: Int) -> UInt64 { UInt64(max(0, value)) * 1_000_000 }

    /// Adds logs that appeared, forgets logs whose directory is gone.
    private func scan(now: UInt64) throws {
        let found = selection.discover()
        let present = Set(found)
        // A log replaced by another at the same path (its directory removed and made again by a restarted agent):
        // the one there now is shipped from its own position, under its own id. (It was never shipped, and the
        // retirer deleted it as the old log, finished.)
        for directory in found {
            // wal.meta is read again only when it changed (a stat per log and scan, not a read).
            guard let source = sources[directory] else { continue }
            let log = LogDirectory(path: directory)
            let stamp = FileSystem.modificationNanos(log.metaPath)
            guard stamp != source.metaStamp, let meta = try? log.readMeta() else { continue }
            guard meta.logID != source.logID else {
                source.metaStamp = stamp
                continue
            }
            logger.warning(
                "another log is now at this directory; shipping it from its own position",
                metadata: ["dir": "\(directory)", "log_id": "\(meta.logID)", "was": "\(source.logID)"]
            )
            drop(directory)
        }
        for directory in found where sources[directory] == nil {
            let meta: LogMeta
            do {
                meta = try LogDirectory(path: directory).readMeta()
            } catch {
                // A log named on the command line that cannot be read is an error; one found by a scan may be
                // half-created (its writer is starting): the next scan looks again.
                if selection.isFixed { throw error }
                continue
            }
            if let twin = sources.values.first(where: { $0.logID == meta.logID }) {
                logger.error(
                    "two directories hold the same log id (a copied log?); shipping only the first",
                    metadata: ["log_id": "\(meta.logID)", "shipping": "\(twin.directory)", "ignored": "\(directory)"]
                )
                continue
            }
            let source = Source(
                directory: directory,
                logID: meta.logID,
                now: now,
                probe: millis(configuration.pollMilliseconds)
            )
            if lastScan == 0 {
                if let target = configuration.drainThroughSeq, selection.isFixed, found.count == 1 {
                    source.drainTarget = target
                } else if configuration.drainsAtStart {
                    source.drainTarget = (try? LogInspector.lastSealedSeqAcrossDamage(path: directory)) ?? 0
                }
            }
            sources[directory] = source
            status.withLock {
                $0[directory] = LogShippingStatus(
                    directory: directory,
                    logID: meta.logID.description,
                    drainTarget: source.drainTarget,
                    lastActivityNanos: now
                )
            }
            if lastScan != 0 { logger.info("found a new log", metadata: ["dir": "\(directory)"]) }
        }
        if !selection.isFixed {
            for directory in sources.keys where !present.contains(directory) {
                logger.info("log directory gone; no longer shipped", metadata: ["dir": "\(directory)"])
                drop(directory)
            }
        }
        order = sources.keys.sorted()
    }

    private func applyForgetRequests() {
        let requests = forgetRequests.withLock { requests -> Set<String> in
            defer { requests.removeAll() }
            return requests
        }
        guard !requests.isEmpty else { return }
        for directory in requests { drop(directory) }
        order = sources.keys.sorted()
    }

    private func drop(_ directory: String) {
        sources[directory] = nil
        _ = status.withLock { $0.removeValue(forKey: directory) }
    }

    /// Asks the sink where the logs without a known position stand (in one call where the sink can).
    private func readPositions(now: UInt64) throws {
        let unknown = order.compactMap { sources[$0] }.filter { $0.committed == nil && $0.positionRetryAt <= now }
        guard !unknown.isEmpty else { return }
        for chunk in stride(from: 0, to: unknown.count, by: 500).map({ unknown[$0..<min($0 + 500, unknown.count)] }) {
            let positions = try callingSink { try sink.committedSeqs(logIDs: chunk.map(\.logID)) }
            totals.withLock {
                $0.connected = true
                $0.failingSinceNanos = nil
            }
            for source in chunk {
                guard let position = positions[source.logID] else {
                    // Another shipper holds this log in the sink: try again in a while, ship the others meanwhile.
                    source.positionRetryAt = now + 1_000_000_000
                    if !source.waitingAnnounced {
                        logger.warning(
                            "another shipper is shipping this log into the same sink; waiting until it stops",
                            metadata: ["dir": "\(source.directory)", "log_id": "\(source.logID)"]
                        )
                        source.waitingAnnounced = true
                    }
                    status.withLock { $0[source.directory]?.heldElsewhere = true }
                    continue
                }
                if source.waitingAnnounced {
                    logger.info("took over shipping of the log", metadata: ["dir": "\(source.directory)"])
                    source.waitingAnnounced = false
                }
                source.committed = position
                source.knownCommitted = position
                source.sentThrough = position
                source.pendingThrough = position
                source.nextPollAt = now
                status.withLock {
                    $0[source.directory]?.heldElsewhere = false
                    $0[source.directory]?.statistics.committedSeq = position
                    $0[source.directory]?.statistics.connected = true
                }
                // The local cursor: stored durably when it does not exist yet or is ahead of the sink (a start on a
                // thousand logs whose cursors exist syncs nothing); one that lags is moved by storeLocalCursors.
                if source.cursorStoredAt == 0 {
                    let cursors = CursorStore(path: source.directory)
                    if let stored = (try? cursors.load(sink.name)) ?? nil, stored.seq <= position {
                        source.cursorStoredSeq = stored.seq
                        if position > stored.seq { unstoredCursors.insert(source.directory) }
                    } else {
                        // Missing, or ahead of the sink (a database restored from a backup): retention must not
                        // pass what the sink lacks.
                        try? cursors.store(sink.name, seq: position)
                        source.cursorStoredSeq = position
                    }
                    source.cursorStoredAt = max(now, 1)
                }
                if unknown.count <= 8 {
                    logger.info(
                        "shipping from the sink's committed position",
                        metadata: ["dir": "\(source.directory)", "seq": "\(position)"]
                    )
                }
            }
        }
        if unknown.count > 8 {
            logger.info("shipping from the sink's committed positions", metadata: ["logs": "\(unknown.count)"])
        }
    }

    /// True when draining and every log with a target has committed through it.
    private func drained() -> Bool {
        guard configuration.drainsAtStart || configuration.drainThroughSeq != nil else { return false }
        return sources.values.allSatisfy { source in
            guard let target = source.drainTarget else { return true }
            return (source.committed ?? 0) >= target
        }
    }

    /// Polls the logs that are due (recently active ones at once, idle ones with a backoff), up to each one's share
    /// of memory.
    private func readAvailable(now: UInt64, batchCap: Int) {
        let busy = max(1, sources.values.count(where: { $0.pendingCount > 0 }))
        let perLog = busy == 1 ? batchCap : max(configuration.batchSize, batchCap / busy)
        let maxProbe = millis(configuration.idleProbeMaxMilliseconds)
        let basePoll = millis(configuration.pollMilliseconds)
        var open = sources.values.count(where: { $0.reader.map { !$0.isSuspended } ?? false })
        let encoded = sink.takesEncodedRecords
        for directory in order {
            guard let source = sources[directory], source.committed != nil else { continue }
            guard source.nextPollAt <= now else { continue }
            let room = perLog - source.pendingCount
            guard room > 0 else { continue }
            if let suspended = source.reader, suspended.isSuspended, !suspended.mayHaveMore {
                source.nextPollAt = now + source.probeInterval
                continue
            }
            let reader = source.reader ?? TailReader(path: directory, after: source.pendingThrough)
            source.reader = reader
            let wasSuspended = reader.isSuspended
            let decoder = source.decoder ?? MetricsDecoder(directory: directory)
            source.decoder = decoder
            var through = source.pendingThrough
            let delivered: Int
            do {
                delivered = try reader.poll(maxEntries: room) { entry in
                    switch entry {
                    case .record(let seq, let bytes) where encoded:
                        let timestamp = MetricsDecoder.timestampNanos(encoded: bytes) ?? 0
                        source.pendingEncoded.append(seq: seq, timestampNanos: timestamp, bytes: bytes)
                        source.pendingSizes.append(UInt32(truncatingIfNeeded: bytes.count))
                        through = seq
                    case .record(let seq, let bytes):
                        switch decoder.decode(seq: seq, bytes: bytes) {
                        case .success(let record):
                            source.pending.append(record)
                            source.pendingSizes.append(UInt32(truncatingIfNeeded: bytes.count))
                        case .failure(let failure):
                            source.pendingSkipped.append(
                                SkippedEntry(fromSeq: seq, toSeq: seq, reason: failure.description)
                            )
                        }
                        through = seq
                    case .gap(let gap):
                        source.pendingSkipped.append(gap)
                        through = max(through, gap.toSeq)
                    case .damage(let damage):
                        logger.error(
                            "damaged log region passed over",
                            metadata: ["dir": "\(directory)", "damage": "\(damage)"]
                        )
                        // Damage whose sequence numbers are not known yet (unreadable bytes) is followed by one with
                        // the range the frames after it show lost, or by the next record when it hid none: claiming
                        // through + 1 for it counted that number twice (2646...2646 and 2646...6682). Its reason goes
                        // with the range; ranges never reach back over what was passed already, so they are disjoint.
                        guard let lostFrom = damage.lostFromSeq, let to = damage.lostToSeq else {
                            source.unplacedDamage = (damage.description, through)
                            break
                        }
                        var reason = damage.description
                        if let unplaced = source.unplacedDamage, unplaced.through == through {
                            reason = unplaced.reason + "; " + reason
                        }
                        source.unplacedDamage = nil
                        let from = max(lostFrom, through + 1)
                        guard from <= to else { break }
                        source.pendingSkipped.append(SkippedEntry(fromSeq: from, toSeq: to, reason: reason))
                        through = to
                    }
                }
                source.readErrorLogged = false
            } catch {
                // One unreadable log (removed under us, a permission changed) never stops the others.
                if !source.readErrorLogged {
                    logger.error("cannot read the log", metadata: ["dir": "\(directory)", "error": "\(error)"])
                    source.readErrorLogged = true
                }
                status.withLock { $0[directory]?.statistics.lastError = "\(error)" }
                source.reader = nil
                source.decoder = nil
                source.nextPollAt = now + 5_000_000_000
                continue
            }
            // At most maxOpenLogs segments open at any moment: a reader opened by this poll beyond that closes at
            // once (it read what was there; the next poll opens it again).
            if wasSuspended && !reader.isSuspended {
                if open >= configuration.maxOpenLogs {
                    reader.suspend()
                } else {
                    open += 1
                }
            }
            source.pendingThrough = through
            if through > source.sentThrough && source.firstPendingAt == nil { source.firstPendingAt = now }
            if delivered > 0 {
                source.lastActivity = now
                source.probeInterval = basePoll
                source.nextPollAt = now
            } else {
                source.probeInterval = min(maxProbe, max(basePoll, source.probeInterval * 2))
                source.nextPollAt = now + source.probeInterval
                if !reader.isSuspended, source.pendingCount == 0, source.pendingSkipped.isEmpty,
                    now - source.lastActivity >= millis(configuration.suspendAfterIdleMilliseconds)
                {
                    reader.suspend()
                    source.decoder = nil
                    open -= 1
                }
            }
        }
        limitOpenReaders()
    }

    /// Keeps at most `maxOpenLogs` segments open: the least recently active logs are suspended.
    private func limitOpenReaders() {
        suspendLeastRecentlyActive(sources.values, keepingOpen: configuration.maxOpenLogs)
    }

    struct Planned {
        var source: Source
        var batch: ShipBatch
        var recordCount: Int
        /// The records' encoded size in the log.
        var bytes: UInt64
    }

    /// The next batch, when one is due: when the records waiting fill a batch, the oldest has waited the flush
    /// interval, a draining log has something left, or only gaps wait.
    private func plan(now: UInt64, batchCap: Int) -> [Planned] {
        var ready: [Int] = []
        var candidates: [Source] = []
        var due = false
        var waiting = 0
        let flush = millis(configuration.flushIntervalMilliseconds)
        for directory in order {
            guard let source = sources[directory], source.hasWaiting else { continue }
            candidates.append(source)
            ready.append(source.pendingCount)
            waiting += source.pendingCount
            if let since = source.firstPendingAt, now - since >= flush { due = true }
            if source.drainTarget.map({ source.pendingThrough >= $0 }) ?? false { due = true }
            if source.pendingCount == 0 && !source.pendingSkipped.isEmpty { due = true }
        }
        if waiting >= configuration.batchSize { due = true }
        guard due, !candidates.isEmpty else { return [] }
        rotation &+= 1
        let takes = BatchPlanner.plan(ready: ready, capacity: batchCap, rotation: rotation)
        var planned: [Planned] = []
        for (index, source) in candidates.enumerated() {
            let take = takes[index]
            guard take > 0 || (source.pendingCount == 0 && !source.pendingSkipped.isEmpty) else { continue }
            let taken = source.pendingHead..<source.pendingHead + take
            let records = source.pending.isEmpty ? [] : Array(source.pending[taken])
            let encoded = source.pendingEncoded.isEmpty ? EncodedRecords() : source.pendingEncoded[taken]
            let through: UInt64
            let skipped: [SkippedEntry]
            if take < source.pendingCount {
                // Cut after the last record taken: the skipped entries before it go along.
                through = records.last?.seq ?? encoded.seqs.last ?? source.pendingThrough
                skipped = source.pendingSkipped.filter { $0.toSeq <= through }
            } else {
                through = source.pendingThrough
                skipped = source.pendingSkipped
            }
            var batch = ShipBatch(
                logID: source.logID,
                records: records,
                throughSeq: through,
                skipped: skipped,
                sourceService: source.decoder?.sourceService,
                directory: source.directory
            )
            batch.encoded = encoded
            batch.afterSeq = source.sentThrough
            planned.append(
                Planned(
                    source: source,
                    batch: batch,
                    recordCount: take,
                    bytes: source.pendingSizes[source.pendingHead..<source.pendingHead + take].reduce(0) {
                        $0 + UInt64($1)
                    }
                )
            )
        }
        return planned
    }

    /// After `send`: the records sent out of memory (a failure reads them from the log again), the batches in flight.
    private func sent(_ planned: [Planned]) {
        let now = monotonicNow()
        for item in planned {
            let source = item.source
            source.sentThrough = item.batch.throughSeq
            source.pendingHead += item.recordCount
            if source.pendingCount == 0 || source.pendingHead >= 4096 {
                if source.pending.isEmpty {
                    source.pendingEncoded.removeFirst(source.pendingHead)
                } else {
                    source.pending.removeFirst(source.pendingHead)
                }
                source.pendingSizes.removeFirst(source.pendingHead)
                source.pendingHead = 0
            }
            source.pendingSkipped.removeAll { $0.toSeq <= item.batch.throughSeq }
            if source.pendingCount == 0 && source.pendingSkipped.isEmpty {
                source.firstPendingAt = nil
            } else {
                source.firstPendingAt = now
            }
            source.lastActivity = now
        }
        inFlight += planned
    }

    /// The batches in flight that `positions` (from the sink) say are committed.
    private func acknowledged(_ positions: [LogID: UInt64]) {
        guard !positions.isEmpty else { return }
        var done: [Planned] = []
        inFlight.removeAll { item in
            guard let position = positions[item.source.logID], position >= item.batch.throughSeq else { return false }
            done.append(item)
            return true
        }
        if !done.isEmpty { committed(done) }
    }

    /// After a commit: positions forward, counters.
    private func committed(_ planned: [Planned]) {
        let now = monotonicNow()
        for item in planned {
            let source = item.source
            source.committed = max(source.committed ?? 0, item.batch.throughSeq)
            source.knownCommitted = max(source.knownCommitted, item.batch.throughSeq)
            source.lastActivity = now
            // A log dropped meanwhile (gone, or replaced by another at its path) has no status or cursor here.
            guard sources[source.directory] === source else { continue }
            unstoredCursors.insert(source.directory)
            status.withLock {
                $0[source.directory]?.statistics.committedSeq = item.batch.throughSeq
                $0[source.directory]?.statistics.recordsShipped += UInt64(item.recordCount)
                $0[source.directory]?.statistics.bytesShipped += item.bytes
                $0[source.directory]?.statistics.batchesShipped += 1
                $0[source.directory]?.statistics.entriesSkipped += UInt64(item.batch.skipped.count)
                $0[source.directory]?.lastActivityNanos = now
            }
        }
        totals.withLock {
            $0.batchesShipped += 1
            $0.connected = true
            $0.lastProgressNanos = now
            $0.failingSinceNanos = nil
        }
        storeLocalCursors(force: false)
    }

    /// The local cursor (named after the sink) follows the sink's position, at most once a second per log (it may
    /// lag, never lead): it holds back retention. Registered durably when the log's position is first read; moved
    /// without fsyncs (after a power loss it may be earlier, which holds back more, never less).
    private func storeLocalCursors(force: Bool) {
        let now = monotonicNow()
        for directory in unstoredCursors {
            guard let source = sources[directory], let position = source.committed,
                position > source.cursorStoredSeq
            else {
                unstoredCursors.remove(directory)
                continue
            }
            guard force || now - source.cursorStoredAt >= 1_000_000_000 else { continue }
            try? CursorStore(path: source.directory).store(sink.name, seq: position, durable: false)
            source.cursorStoredSeq = position
            source.cursorStoredAt = now
            unstoredCursors.remove(directory)
        }
    }

    private var publishedAt: UInt64 = 0

    /// Lag and totals for readers of `logs` and `statistics` (at most ten times a second).
    private func publishStatus(force: Bool = false) {
        let now = monotonicNow()
        guard force || now - publishedAt >= 100_000_000 else { return }
        publishedAt = now
        var sum = ShipperStatistics()
        var lowest: UInt64?
        var updates: [(String, UInt64, Double)] = []
        var waiting = false
        for source in sources.values {
            var position = source.committed ?? source.knownCommitted
            if source.committed == nil {
                // Unknown while the sink cannot be reached: at least where the local copy says (a log shipped
                // before the outage is not counted as waiting).
                if source.localCursor == nil {
                    source.localCursor = ((try? CursorStore(path: source.directory).load(sink.name)) ?? nil)?.seq ?? 0
                }
                position = max(position, source.localCursor ?? 0)
            }
            // Only a log read no further than its share, or not read at all while its position is unknown (the sink
            // cannot be reached), may have more sealed than read.
            if source.pendingCount >= configuration.batchSize || source.committed == nil,
                now - source.lastSealedCheckedAt >= 1_000_000_000
            {
                source.lastSealedSeq = (try? LogInspector.lastSealedSeqCheap(path: source.directory)) ?? 0
                source.lastSealedCheckedAt = now
            }
            let sealed = max(source.lastSealedSeq, source.pendingThrough)
            let behind = sealed > position ? sealed - position : 0
            var oldest = 0.0
            if source.pendingCount > 0 {
                oldest = max(0, Double(wallClockNow() - source.oldestPendingNanos) / 1e9)
            } else if behind > 0 && source.committed == nil {
                // Records wait unread while the sink cannot be reached (nothing is read before the position is
                // known): their age is that of the frame holding the first of them, looked up once per position
                // (again after 10 s when not found). Before, it showed as 0 s however long they had waited.
                let fresh = source.unreadAge.map {
                    $0.seq == position + 1 && ($0.sealedAtNanos != nil || now - $0.at < 10_000_000_000)
                }
                if fresh != true {
                    let sealedAt = try? LogInspector.sealedAtNanos(
                        ofFirstRecordFrom: position + 1,
                        path: source.directory
                    )
                    source.unreadAge = (position + 1, (sealedAt ?? nil).map { Int64(bitPattern: $0) }, now)
                }
                if let sealedAt = source.unreadAge?.sealedAtNanos {
                    oldest = max(0, Double(wallClockNow() - sealedAt) / 1e9)
                }
            }
            updates.append((source.directory, behind, oldest))
            // Records wait for this shipper (not for another one holding the log in the sink).
            if (source.committed != nil || source.knownCommitted > 0) && behind > 0 { waiting = true }
            sum.recordsBehind += behind
            sum.oldestUnshippedAgeSeconds = max(sum.oldestUnshippedAgeSeconds, oldest)
            if source.committed != nil { lowest = min(lowest ?? position, position) }
        }
        let perLog = status.withLock { logs -> [LogShippingStatus] in
            for (directory, behind, oldest) in updates {
                logs[directory]?.statistics.recordsBehind = behind
                logs[directory]?.statistics.oldestUnshippedAgeSeconds = oldest
            }
            return Array(logs.values)
        }
        totals.withLock {
            $0.recordsBehind = sum.recordsBehind
            $0.oldestUnshippedAgeSeconds = sum.oldestUnshippedAgeSeconds
            $0.committedSeq = lowest ?? 0
            $0.recordsShipped = perLog.reduce(0) { $0 + $1.statistics.recordsShipped }
            $0.entriesSkipped = perLog.reduce(0) { $0 + $1.statistics.entriesSkipped }
            $0.bytesShipped = perLog.reduce(0) { $0 + $1.statistics.bytesShipped }
            $0.logs = perLog.count
            $0.deadLettered = sink.deadLetteredRecords
            if !waiting {
                $0.waitingSinceNanos = nil
            } else if $0.waitingSinceNanos == nil {
                $0.waitingSinceNanos = now
            }
        }
    }

    /// Nothing to send: sleep until the next log is due for a poll, a batch may become due, or a rescan.
    private func idle() {
        storeLocalCursors(force: false)
        sleepMilliseconds(idleMilliseconds())
    }

    /// How long nothing is due: until the next log is due for a poll, a batch may become due, or a rescan.
    private func idleMilliseconds() -> Int {
        let now = monotonicNow()
        var wake = now + millis(configuration.idleProbeMaxMilliseconds)
        for source in sources.values where source.committed != nil {
            wake = min(wake, max(now, source.nextPollAt))
            if let since = source.firstPendingAt {
                wake = min(wake, since + millis(configuration.flushIntervalMilliseconds))
            }
        }
        let waitNanos = max(wake, now + 1_000_000) - now
        return max(1, min(configuration.pollMilliseconds, Int(waitNanos / 1_000_000)))
    }

    private func sleepMilliseconds(_ milliseconds: Int) {
        WALShipping.sleepMilliseconds(milliseconds) { stopRequested.load(ordering: .relaxed) }
    }
}

/// A log followed through a `TailReader` that may be suspended to give its descriptor back: the shipping engine's
/// logs and the live view's.
package protocol SuspendableLog: AnyObject {
    var reader: TailReader? { get }
    /// When the log last had something to read (monotonic nanoseconds).
    var lastActivity: UInt64 { get }
    /// Suspends the reader and drops what a suspended log need not keep.
    func suspend()
}

extension SuspendableLog {
    package func suspend() { reader?.suspend() }
}

/// Keeps at most `limit` of `logs` with an open (not suspended) reader: the least recently active are suspended.
package func suspendLeastRecentlyActive(_ logs: some Collection<some SuspendableLog>, keepingOpen limit: Int) {
    let open = logs.filter { $0.reader.map { !$0.isSuspended } ?? false }
    guard open.count > limit else { return }
    for log in open.sorted(by: { $0.lastActivity < $1.lastActivity }).prefix(open.count - limit) { log.suspend() }
}
