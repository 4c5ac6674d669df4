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
}

/// Evaluates a log's metric records against thresholds and routes the alerts to their channels, as a `Service`
/// beside the shippers: it tails the log with a cursor of its own (`cursors/alerts.cursor`), journals every alert
/// (`alerts/journal.jsonl`, fsynced) before the cursor passes the record that fired it, and hands it to each
/// channel's worker thread. After a crash it re-sends what the journal shows undelivered, and re-evaluates the
/// records after its cursor with the same windows and cool-downs (rebuilt by reading back the longest window or
/// cool-down before the cursor): every alert reaches every channel at least once, with the same id.
public final class AlertService: Service, @unchecked Sendable {
    public let directory: String
    public let configuration: AlertServiceConfiguration
    private let channels: [any AlertChannel]
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
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

    public func run() async throws {
        try await runOnDedicatedThread(name: "alerts", stop: { self.stop() }) { try self.loop() }
    }

    /// Runs on the calling thread until stopped or drained (tools and tests).
    public func runBlocking() throws { try loop() }

    // MARK: - The loop

    private func loop() throws {
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
                        logger: logger
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
        for entry in AlertJournal.read(logDirectory: directory).entries {
            guard let alert = Alert(journal: entry.alert, rules: rules) else { continue }
            for name in configuration.routes.channels(for: alert.severity)
            where entry.delivered[name] == nil && entry.deadLettered[name] == nil {
                guard let worker = workers[name] else { continue }  // A channel not configured in this run.
                worker.enqueue([alert])
                resent += 1
            }
        }
        counters.withLock { $0.alertsResent = resent }

        // 2. Rebuild windows and cool-downs from the records before the cursor, discarding their alerts.
        let cursors = CursorStore(path: directory)
        let cursor = (try? cursors.load(configuration.cursorName))??.seq ?? 0
        try warmUp(&evaluator, before: cursor)

        // 3. Evaluate what follows, journal, route, then move the cursor.
        let tail = TailReader(path: directory, after: cursor)
        let decoder = MetricsDecoder(directory: directory)
        var position = cursor
        counters.withLock { $0.evaluatedThrough = position }
        while !stopRequested.load(ordering: .relaxed) {
            var fired: [Alert] = []
            var last = position
            let delivered = try tail.poll(maxEntries: 10_000) { entry in
                switch entry {
                case .record(let seq, let bytes):
                    last = seq
                    if case .success(let record) = decoder.decode(seq: seq, bytes: bytes) {
                        fired += evaluator.evaluate(record)
                    }
                case .gap(let gap):
                    last = max(last, gap.toSeq)
                case .damage(let damage):
                    if let to = damage.lostToSeq { last = max(last, to) }
                }
            }
            if delivered > 0 {
                try journal.fired(fired)
                route(fired)
                position = max(position, last)
                try cursors.store(configuration.cursorName, seq: position)
                counters.withLock {
                    $0.evaluatedThrough = position
                    $0.alertsFired += UInt64(fired.count)
                }
                continue
            }
            if let drain = configuration.drainThroughSeq, position >= drain,
                workers.values.allSatisfy(\.isIdle)
            {
                return
            }
            usleep(UInt32(configuration.pollIntervalMilliseconds) * 1000)
        }
    }

    /// Feeds the evaluator the records emitted within the longest window or cool-down before the cursor, so that
    /// a restart evaluates what follows as an uninterrupted run would.
    private func warmUp(_ evaluator: inout AlertEvaluator, before cursor: UInt64) throws {
        guard cursor > 0 else { return }
        var lookback: Int64 = 0
        for rule in configuration.thresholds.rules {
            lookback = max(lookback, rule.cooldownNanos)
            if case .aggregate(_, let duration, _) = rule.window { lookback = max(lookback, duration) }
        }
        var cursorTime: Int64?
        try MetricsReader(path: directory, from: cursor).read { entry in
            if case .metric(let record) = entry {
                cursorTime = record.timestampNanos
                return false
            }
            return true
        }
        guard let cursorTime, lookback > 0 else { return }
        // Emit times of concurrent agents interleave by a few milliseconds; ten seconds of slack covers them.
        let from = UInt64(clamping: max(cursorTime - lookback - 10_000_000_000, 0))
        let start = try LogInspector.firstSeq(sealedAtOrAfter: from, path: directory)
        guard start > 0, start <= cursor else { return }
        try MetricsReader(path: directory, from: start).read { entry in
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
