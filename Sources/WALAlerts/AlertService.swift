import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import WALCore
import WALMetrics
import WALShipping

/// Settings of the alert evaluator.
public struct AlertServiceConfiguration: Sendable {
    public var thresholds: ThresholdFile
    public var routes = AlertRoutes()
    /// The evaluator's cursor in the log's `cursors/` folder.
    public var cursorName = "alerts"
    /// How long to wait when the log has nothing new, in milliseconds.
    public var pollIntervalMilliseconds = 20
    /// Delivery attempts per alert and channel before it is dead-lettered.
    public var maxAttempts = 8
    /// Time per alert and channel, from its first attempt, before it is dead-lettered (each attempt gets at most
    /// what is left of it).
    public var budgetSeconds = ChannelWorker.defaultBudgetSeconds
    public var retry = RetryPolicy(initialMilliseconds: 100, maximumMilliseconds: 10_000)
    /// Stop once everything up to this sequence number is evaluated and every channel is idle (`ship --drain`).
    public var drainThroughSeq: UInt64?

    public init(thresholds: ThresholdFile) { self.thresholds = thresholds }
}

/// The counters of an alert evaluator.
public struct AlertServiceStatistics: Sendable, Equatable {
    public var evaluatedThrough: UInt64 = 0
    public var alertsFired: UInt64 = 0
    public var alertsResent: UInt64 = 0
    /// Per channel: alerts delivered, failed attempts (retried), alerts dead-lettered, since the start.
    public var delivered: [String: UInt64] = [:]
    public var deliveryFailures: [String: UInt64] = [:]
    public var deadLettered: [String: UInt64] = [:]

    public init() {}
}

/// Evaluates a log's metric records against thresholds and routes the alerts to their channels, as a `Service`
/// beside the shippers: it tails the log with a cursor of its own (`cursors/alerts.cursor`), journals every alert
/// (`alerts/journal.jsonl`, fsynced) before its state passes the record that fired it, and hands it to each
/// channel's worker thread.
///
/// Restarts continue exactly: the evaluator's whole state (window values, cool-downs) is journaled with the
/// sequence number it covers in `alerts/state.json` (written atomically: temporary file, fsync, rename, fsync of
/// the folder) when it has caught up with the log (at most five times a second), at most once a second while it is
/// behind, and when stopping; the cursor follows it. A restart, even after `kill -9`,
/// restores that state and re-evaluates the records after it, so it fires exactly the alerts of an uninterrupted
/// run, with the same ids; alerts the journal already holds are not journaled or sent again. Then it re-sends
/// what the journal shows undelivered: every alert reaches every channel at least once. Without a usable state
/// (a log evaluated by an older walctl, or a thresholds file that changed) it replays the log from its first
/// record up to the cursor without firing, which is exact as long as retention has deleted nothing.
public final class AlertService: Service, @unchecked Sendable {
    public let directory: String
    public let configuration: AlertServiceConfiguration
    private let channels: [any AlertChannel]
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)
    private let counters = Mutex(AlertServiceStatistics())

    public init(
        directory: String,
        configuration: AlertServiceConfiguration,
        channels: [any AlertChannel],
        logger: Logger
    ) {
        self.directory = directory
        self.configuration = configuration
        self.channels = channels
        self.logger = logger
    }

    public var statistics: AlertServiceStatistics { counters.withLock { $0 } }

    public func stop() { stopRequested.store(true, ordering: .relaxed) }

    /// True once the loop returned (drained, stopped or failed).
    public var isFinished: Bool { finished.load(ordering: .acquiring) }

    public func run() async throws {
        try await runOnDedicatedThread(name: "alerts", stop: { self.stop() }) { try self.loop() }
    }

    /// Runs on the calling thread until stopped or drained (tools and tests).
    public func runBlocking() throws { try loop() }

    // MARK: - The loop

    private func loop() throws {
        defer { finished.store(true, ordering: .releasing) }
        let meta = try LogDirectory(path: directory).readMeta()
        let journal = AlertJournal(logDirectory: directory)
        let rules = configuration.thresholds.rules
        var evaluator = AlertEvaluator(rules: rules, logID: meta.logID)
        let workers = Dictionary(
            channels.map {
                (
                    $0.name,
                    ChannelWorker(
                        channel: $0,
                        journal: journal,
                        retry: configuration.retry,
                        maxAttempts: configuration.maxAttempts,
                        logger: logger,
                        budgetSeconds: configuration.budgetSeconds,
                        onOutcome: { [weak self, name = $0.name] outcome in
                            self?.counters.withLock {
                                switch outcome {
                                case .delivered: $0.delivered[name, default: 0] += 1
                                case .failed: $0.deliveryFailures[name, default: 0] += 1
                                case .deadLettered: $0.deadLettered[name, default: 0] += 1
                                }
                            }
                        }
                    )
                )
            },
            uniquingKeysWith: { first, _ in first }
        )
        for worker in workers.values { worker.start() }
        defer { for worker in workers.values { worker.stop() } }

        /// Each alert to the channels of its severity, in the order fired.
        func route(_ alerts: [Alert]) {
            for alert in alerts {
                for name in configuration.routes.channels(for: alert.severity) { workers[name]?.enqueue([alert]) }
            }
        }

        // 1. What the journal shows fired but not yet delivered by some channel (a crash while in flight).
        var resent: UInt64 = 0
        var journaled = Set<String>()
        for entry in AlertJournal.read(logDirectory: directory).entries {
            journaled.insert(entry.id)
            guard let alert = Alert(journal: entry.alert, rules: rules) else { continue }
            for name in configuration.routes.channels(for: alert.severity)
            where entry.delivered[name] == nil && entry.deadLettered[name] == nil {
                guard let worker = workers[name] else { continue }  // A channel not configured in this run.
                worker.enqueue([alert])
                resent += 1
            }
        }
        counters.withLock { $0.alertsResent = resent }

        // 2. Where the evaluation stands: the journaled state, or a silent replay up to the cursor.
        let stateFile = AlertStateFile(logDirectory: directory)
        let fingerprint = AlertStateFile.fingerprint(rules)
        let cursors = CursorStore(path: directory)
        var position: UInt64 = 0
        var restored = false
        if let snapshot = stateFile.load(), snapshot.logID == meta.logID.description,
            snapshot.rules == fingerprint
        {
            evaluator = AlertEvaluator(rules: rules, logID: meta.logID, state: snapshot.state)
            position = snapshot.throughSeq
            restored = true
        } else if let cursor = (try? cursors.load(configuration.cursorName))??.seq, cursor > 0 {
            logger.warning(
                "no evaluator state for these thresholds; replaying the log up to the cursor",
                metadata: ["cursor": "\(cursor)"]
            )
            try replay(&evaluator, through: cursor)
            position = cursor
        }

        /// Journals the evaluator's state with its position, then moves the cursor to it; nothing when the state
        /// file already holds this position, or when the last write is more recent than `interval`.
        var unsaved = !restored
        var savedAt: UInt64 = 0
        func save(unlessWithin interval: UInt64 = 0) throws {
            guard unsaved, monotonicNanos() - savedAt >= interval else { return }
            try stateFile.store(
                AlertSnapshot(
                    logID: meta.logID.description,
                    rules: fingerprint,
                    throughSeq: position,
                    state: evaluator.state
                )
            )
            try cursors.store(configuration.cursorName, seq: position)
            unsaved = false
            savedAt = monotonicNanos()
        }

        // 3. Evaluate what follows, journal, route; journal the state now and then.
        let tail = TailReader(path: directory, after: position)
        let decoder = MetricsDecoder(directory: directory)
        let through = configuration.drainThroughSeq ?? .max
        counters.withLock { $0.evaluatedThrough = position }
        while !stopRequested.load(ordering: .relaxed) {
            var fired: [Alert] = []
            var last = position
            let delivered = try tail.poll(maxEntries: 10_000) { entry in
                switch entry {
                case .record(let seq, let bytes):
                    guard seq <= through else { return }
                    last = seq
                    if case .success(let record) = decoder.decode(seq: seq, bytes: bytes) {
                        fired += evaluator.evaluate(record)
                    }
                case .gap(let gap):
                    last = min(max(last, gap.toSeq), max(through, last))
                case .damage(let damage):
                    if let to = damage.lostToSeq { last = min(max(last, to), max(through, last)) }
                }
            }
            if delivered > 0 && last > position {
                // Alerts of records evaluated before a crash are in the journal already (same ids).
                let fresh = fired.filter { !journaled.contains($0.id) }
                try journal.fired(fresh)
                route(fresh)
                position = last
                unsaved = true
                try save(unlessWithin: 1_000_000_000)
                counters.withLock {
                    $0.evaluatedThrough = position
                    $0.alertsFired += UInt64(fresh.count)
                }
                continue
            }
            // Caught up: journal the state soon (at most five times a second; while busy, once a second).
            if let drain = configuration.drainThroughSeq, position >= drain {
                try save()
                if workers.values.allSatisfy(\.isIdle) { return }
            } else {
                try save(unlessWithin: 200_000_000)
            }
            usleep(UInt32(configuration.pollIntervalMilliseconds) * 1000)
        }
        try save()
    }

    /// Feeds the evaluator every record of the log up to `cursor`, discarding its alerts (they were journaled
    /// when first fired): the state an uninterrupted run had there, when the log still starts at its first record.
    private func replay(_ evaluator: inout AlertEvaluator, through cursor: UInt64) throws {
        try MetricsReader(path: directory, from: 1).read { entry in
            guard case .metric(let record) = entry else { return true }
            if record.seq > cursor { return false }
            _ = evaluator.evaluate(record)
            return true
        }
    }
}

extension Alert {
    /// An alert read back from the journal (`rules` gives the window of its rule).
    init?(journal object: [String: Any], rules: [ThresholdRule]) {
        guard let id = object["alert_id"] as? String,
            let severity = (object["severity"] as? String).flatMap(Severity.init(rawValue:)),
            let metric = object["metric_name"] as? String,
            let value = (object["value"] as? NSNumber)?.doubleValue,
            let threshold = (object["threshold"] as? NSNumber)?.doubleValue,
            let direction = (object["direction"] as? String).flatMap(Direction.init(rawValue:)),
            let seq = (object["wal_seq"] as? NSNumber)?.uint64Value,
            let timestamp = object["timestamp"] as? String
        else { return nil }
        let rule = (object["rule"] as? NSNumber)?.intValue ?? -1
        self.init(
            id: id,
            severity: severity,
            metric: metric,
            value: value,
            threshold: threshold,
            direction: direction,
            window: rules.indices.contains(rule) ? rules[rule].window : .last,
            tags: object["tags"] as? [String: String] ?? [:],
            agentID: object["agent_id"] as? String,
            correlationID: object["correlation_id"] as? String,
            timestampNanos: Envelope.parseTimestamp(timestamp) ?? 0,
            seq: seq,
            rule: rules.indices.contains(rule) ? rule : 0
        )
    }
}
