import Logging
import ServiceLifecycle
import Synchronization
import WALCore
import WALMetrics
import WALShipping

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The data of the live page (`walctl serve`, `walctl ship --http`): the design's real-time panels computed from the
/// logs themselves, no database involved.
///
/// - **Its own thread.** Every log of the selection is tailed on one dedicated thread (never a shipper's, never an
///   event loop's, never the cooperative pool): `run()` starts it, `stop()` ends it. The HTTP side only calls
///   `snapshotJSON()`, which takes one lock for the time it takes to merge 60 seconds of histograms.
/// - **Starts near the end.** Only the last five minutes matter: a log is read from the first frame sealed in the
///   last five minutes, and at most `backfillRecords` before its last sealed record (a 1 GB log is not read from
///   the start). A reader that falls more than `maxLagRecords` behind a fast writer jumps ahead and counts the
///   records it skipped (reported per log), so the panels stay current rather than minutes late.
/// - **Cheap for many logs.** A log idle for `suspendAfterIdleMilliseconds` releases its descriptor (`TailReader`
///   suspended, probed with a `stat` that opens nothing), and at most `maxOpenLogs` segments are open at once. Roots
///   and patterns are rescanned every `rescanMilliseconds`.
/// - **Alerts** come from each log's journal (`alerts/journal.jsonl`), re-read when its size or time changed.
///
/// Thread-safety: `snapshot()`/`snapshotJSON()` may be called from any thread at any time.
public final class LiveView: Service, @unchecked Sendable {
    public struct Configuration: Sendable {
        /// At start, at most this many records before a log's last sealed one are read.
        public var backfillRecords: UInt64 = 200_000
        /// A reader further behind than this jumps ahead to `backfillRecords` before the last sealed record.
        public var maxLagRecords: UInt64 = 2_000_000
        /// Records decoded per log and pass before the next log gets its turn.
        public var recordsPerPass = 20_000
        public var pollMilliseconds = 100
        /// The longest interval between two probes of an idle log.
        public var idleProbeMaxMilliseconds = 1_000
        public var suspendAfterIdleMilliseconds = 2_000
        public var maxOpenLogs = 64
        public var rescanMilliseconds = 5_000
        public var journalCheckMilliseconds = 1_000
        /// Critical and warning alerts listed, newest first.
        public var maxAlerts = 50

        public init() {}
    }

    public let selection: LogSelection
    public let configuration: Configuration
    private let logger: Logger
    let clock: @Sendable () -> Int64
    private let stopRequested = Atomic<Bool>(false)
    private let aggregates = Mutex(LiveAggregates())
    private let published = Mutex(Published())

    struct Published: Sendable {
        var logs: [LiveSnapshot.LogState] = []
        var alerts: [LiveSnapshot.AlertRow] = []
    }

    /// - Parameter clock: the wall clock in nanoseconds since the epoch (default: the system's; tests pass a fixed one).
    public init(
        selection: LogSelection,
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "walctl.live"),
        clock: (@Sendable () -> Int64)? = nil
    ) {
        self.selection = selection
        self.configuration = configuration
        self.logger = logger
        self.clock = clock ?? { Int64(bitPattern: wallClockNanos()) }
    }

    // MARK: - Reading the panels

    /// The panels now, computed under the lock from the per-second aggregates (no record is visited).
    public func snapshot() -> LiveSnapshot {
        let now = clock()
        var snapshot = aggregates.withLock { $0.snapshot(nowNanos: now) }
        let state = published.withLock { $0 }
        snapshot.logs = state.logs
        snapshot.logCount = state.logs.count
        let recent = state.alerts.filter { $0.severity == "critical" || $0.severity == "warning" }
        snapshot.alerts = Array(recent.sorted { $0.timestampNanos > $1.timestampNanos }.prefix(configuration.maxAlerts))
        snapshot.alertFrequency = Self.frequency(of: state.alerts, nowNanos: now)
        return snapshot
    }

    /// The body of `GET /api/live`: `snapshot()` as JSON.
    public func snapshotJSON() -> [UInt8] { snapshot().json() }

    /// The log directories the view found (as of its last pass), for a monitor reporting on them.
    public var directories: [String] { published.withLock { $0.logs.map(\.directory) } }

    static func frequency(of alerts: [LiveSnapshot.AlertRow], nowNanos: Int64) -> [String: [UInt64]] {
        let minutes = LiveSnapshot.alertMinutes
        let currentMinute = LiveAggregates.second(of: nowNanos) / 60
        var result: [String: [UInt64]] = [:]
        for severity in ["critical", "warning", "info"] {
            result[severity] = [UInt64](repeating: 0, count: minutes)
        }
        for alert in alerts {
            let age = currentMinute - LiveAggregates.second(of: alert.timestampNanos) / 60
            guard age >= 0, age < Int64(minutes), result[alert.severity] != nil else { continue }
            result[alert.severity]![minutes - 1 - Int(age)] += 1
        }
        return result
    }

    // MARK: - Service

    /// Tails the logs on a dedicated thread until `stop()` (or graceful shutdown, or cancellation).
    public func run() async throws {
        try await runOnDedicatedThread(name: "live-view", stop: { self.stop() }) { self.loop() }
    }

    /// Asks the loop to return after its current pass.
    public func stop() { stopRequested.store(true, ordering: .relaxed) }

    /// One pass on the calling thread: reads what the logs have new (up to `recordsPerPass` each), returns the number
    /// of entries read. For tools and benchmarks; never call it while `run()` is running.
    @discardableResult
    public func readAvailable() -> Int { pass() }

    // MARK: - The loop (its state is owned by the loop's thread)

    final class Source: SuspendableLog {
        let directory: String
        var reader: TailReader?
        var decoder: MetricsDecoder?
        var lastSeq: UInt64 = 0
        var skipped: UInt64 = 0
        var lost: UInt64 = 0
        var damaged = 0
        var error: String?
        var retryAt: UInt64 = 0
        var nextPollAt: UInt64 = 0
        var probeInterval: UInt64
        var lastActivity: UInt64
        var lagCheckedAt: UInt64 = 0
        var journalCheckedAt: UInt64 = 0
        var journalStamp: (size: Int64, modified: Int64) = (-1, 0)
        var alerts: [LiveSnapshot.AlertRow] = []

        init(directory: String, now: UInt64, probe: UInt64) {
            self.directory = directory
            self.lastActivity = now
            self.probeInterval = probe
        }

        /// Gives the descriptor and the decoder back until the log has more.
        func suspend() {
            reader?.suspend()
            decoder = nil
        }

        var state: String {
            if error != nil { return "unreachable" }
            return reader.map { $0.isSuspended } ?? true ? "idle" : "reading"
        }
    }

    private var sources: [String: Source] = [:]
    private var order: [String] = []
    private var lastScan: UInt64 = 0
    private var lastPublished: UInt64 = 0
    private var batch: [MetricRecord] = []

    private func loop() {
        while !stopRequested.load(ordering: .relaxed) {
            let delivered = pass()
            if delivered == 0 {
                sleepMilliseconds(configuration.pollMilliseconds) { self.stopRequested.load(ordering: .relaxed) }
            }
        }
        for source in sources.values { source.reader?.suspend() }
    }

    private func millis(_ value: Int) -> UInt64 { UInt64(max(0, value)) * 1_000_000 }

    /// One pass over the logs that are due: rescans, reads what is new, re-reads changed journals, publishes the
    /// logs' states. Returns the number of records read.
    @discardableResult
    func pass() -> Int {
        let now = monotonicNanos()
        var alertsChanged = false
        if lastScan == 0 || (!selection.isFixed && now - lastScan >= millis(configuration.rescanMilliseconds)) {
            alertsChanged = scan(now: now)
            lastScan = max(now, 1)
        }
        var delivered = 0
        for directory in order {
            guard let source = sources[directory] else { continue }
            delivered += read(source, now: now)
            if now >= source.journalCheckedAt {
                source.journalCheckedAt = now + millis(configuration.journalCheckMilliseconds)
                alertsChanged = readJournal(source) || alertsChanged
            }
        }
        limitOpenReaders()
        if alertsChanged || now - lastPublished >= 250_000_000 || lastPublished == 0 {
            lastPublished = now
            let logs = order.compactMap { sources[$0] }.map { source in
                LiveSnapshot.LogState(
                    directory: source.directory,
                    state: source.state,
                    error: source.error,
                    lastSeq: source.lastSeq,
                    skipped: source.skipped,
                    lost: source.lost,
                    damaged: source.damaged
                )
            }
            let alerts = alertsChanged ? order.compactMap { sources[$0] }.flatMap(\.alerts) : nil
            published.withLock { state in
                state.logs = logs
                if let alerts { state.alerts = alerts }
            }
        }
        return delivered
    }

    /// Adds the logs that appeared, forgets those whose directory is gone; returns true when one was forgotten.
    private func scan(now: UInt64) -> Bool {
        let found = selection.discover()
        for directory in found where sources[directory] == nil {
            sources[directory] = Source(directory: directory, now: now, probe: millis(configuration.pollMilliseconds))
        }
        var forgot = false
        if !selection.isFixed {
            let present = Set(found)
            for directory in sources.keys where !present.contains(directory) {
                sources[directory] = nil
                forgot = true
            }
        }
        order = sources.keys.sorted()
        return forgot
    }

    /// Where a log is first read from: after the last record sealed more than five minutes ago, and at most
    /// `backfillRecords` before the last sealed one.
    private func startPosition(_ directory: String) throws(WALError) -> (after: UInt64, skipped: UInt64) {
        _ = try LogDirectory(path: directory).readMeta()
        let last = try LogInspector.lastSealedSeqCheap(path: directory)
        let windowStart = UInt64(max(0, clock() - Int64(LiveAggregates.ringSeconds) * 1_000_000_000))
        let first = try LogInspector.firstSeq(sealedAtOrAfter: windowStart, path: directory)
        let recent = first == 0 ? last : first - 1
        let bound = last > configuration.backfillRecords ? last - configuration.backfillRecords : 0
        return (max(recent, bound), bound > recent ? bound - recent : 0)
    }

    /// Reads what a log has new, up to `recordsPerPass`; returns the number of records read.
    private func read(_ source: Source, now: UInt64) -> Int {
        guard source.nextPollAt <= now, source.retryAt <= now else { return 0 }
        if let reader = source.reader, reader.isSuspended, !reader.mayHaveMore {
            source.nextPollAt = now + source.probeInterval
            return 0
        }
        do {
            if source.reader == nil {
                let start = try startPosition(source.directory)
                source.reader = TailReader(path: source.directory, after: start.after)
                source.lastSeq = start.after
                source.skipped += start.skipped
                source.lagCheckedAt = now
            } else if now - source.lagCheckedAt >= 1_000_000_000 {
                source.lagCheckedAt = now
                try jumpAheadIfFarBehind(source)
            }
            let delivered = try drain(source, now: now)
            source.error = nil
            if delivered > 0 {
                source.lastActivity = now
                source.probeInterval = millis(configuration.pollMilliseconds)
                source.nextPollAt = now
            } else {
                let maxProbe = millis(configuration.idleProbeMaxMilliseconds)
                source.probeInterval = min(
                    maxProbe,
                    max(millis(configuration.pollMilliseconds), source.probeInterval * 2)
                )
                source.nextPollAt = now + source.probeInterval
                if let reader = source.reader, !reader.isSuspended,
                    now - source.lastActivity >= millis(configuration.suspendAfterIdleMilliseconds)
                {
                    source.suspend()
                }
            }
            return delivered
        } catch {
            // One unreadable log (not created yet, removed, a permission changed) never stops the others.
            if source.error == nil {
                logger.warning("cannot read the log", metadata: ["dir": "\(source.directory)", "error": "\(error)"])
            }
            source.error = "\(error)"
            source.reader = nil
            source.decoder = nil
            source.retryAt = now + 2_000_000_000
            return 0
        }
    }

    private func jumpAheadIfFarBehind(_ source: Source) throws(WALError) {
        guard let reader = source.reader, !reader.isSuspended else { return }
        let last = try LogInspector.lastSealedSeqCheap(path: source.directory)
        let next = reader.nextSeq
        guard last >= next, last - next + 1 > configuration.maxLagRecords else { return }
        let after = last - min(last, configuration.backfillRecords)
        source.skipped += after - (next - 1)
        source.reader = TailReader(path: source.directory, after: after)
        source.lastSeq = after
        logger.info(
            "the live view fell behind the log; skipped ahead",
            metadata: ["dir": "\(source.directory)", "skipped": "\(after - (next - 1))"]
        )
    }

    /// Decodes up to `recordsPerPass` records, then counts them under the aggregates' lock in one go.
    private func drain(_ source: Source, now: UInt64) throws -> Int {
        guard let reader = source.reader else { return 0 }
        let decoder = source.decoder ?? MetricsDecoder(directory: source.directory)
        source.decoder = decoder
        var delivered = 0
        while delivered < configuration.recordsPerPass {
            batch.removeAll(keepingCapacity: true)
            var last = source.lastSeq
            var lost: UInt64 = 0
            var damaged = 0
            let count = try reader.poll(maxEntries: min(4096, configuration.recordsPerPass - delivered)) { entry in
                switch entry {
                case .record(let seq, let bytes):
                    if case .success(let record) = decoder.decode(seq: seq, bytes: bytes) { batch.append(record) }
                    last = seq
                case .gap(let gap):
                    lost += gap.toSeq >= gap.fromSeq ? gap.toSeq - gap.fromSeq + 1 : 0
                    last = max(last, gap.toSeq)
                case .damage(let damage):
                    damaged += 1
                    if let to = damage.lostToSeq, to > last { lost += to - max(last, (damage.lostFromSeq ?? 1) - 1) }
                    last = max(last, damage.lostToSeq ?? last)
                }
            }
            source.lastSeq = last
            source.lost += lost
            source.damaged += damaged
            lost = 0
            damaged = 0
            if !batch.isEmpty {
                let wallNow = clock()
                aggregates.withLock { aggregates in
                    for record in batch { aggregates.add(record, nowNanos: wallNow) }
                }
            }
            delivered += count
            if count == 0 { break }
        }
        return delivered
    }

    /// At most `maxOpenLogs` segments open: the least recently active readers are suspended.
    private func limitOpenReaders() {
        suspendLeastRecentlyActive(sources.values, keepingOpen: configuration.maxOpenLogs)
    }
}
