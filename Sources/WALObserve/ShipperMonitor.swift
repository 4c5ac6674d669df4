import Prometheus
import Synchronization
import WALAlerts
import WALCore
import WALShipping

/// What the listener tells about running shippers: `/metrics` in the Prometheus text format, `/healthz` and
/// `/readyz`. It reads the engines' and evaluators' published counters (they publish at most ten times a second, off
/// their own threads) and the logs' overviews (frame headers and file sizes, at most once per `overviewSeconds`);
/// it never calls into a sink and never takes a lock a shipper waits on for longer than a copy.
///
/// Series (every one labelled `sink` where it is about a sink, `log_id` and `dir` where it is about a log):
///
/// | name | type | what |
/// |---|---|---|
/// | `walctl_ship_committed_seq` | gauge | the last seq the sink committed, per log |
/// | `walctl_ship_lag_records` | gauge | records sealed in the log and not yet committed, per log |
/// | `walctl_ship_lag_seconds` | gauge | age of the oldest record read and not yet committed (0 when caught up) |
/// | `walctl_ship_records_total`, `walctl_ship_bytes_total` | counter | records and their encoded bytes committed |
/// | `walctl_ship_skipped_total` | counter | gaps, damage and undecodable records passed over (each reported) |
/// | `walctl_ship_batches_total`, `walctl_ship_retries_total` | counter | per sink |
/// | `walctl_ship_errors_total` | counter | failed attempts per sink and `kind` (`SinkErrorKind`) |
/// | `walctl_ship_dead_letters_total` | counter | records the sink refused for good |
/// | `walctl_ship_logs`, `walctl_ship_connected`, `walctl_ship_healthy` | gauge | per sink |
/// | `walctl_ship_seconds_since_progress` | gauge | since the last commit (or the start), per sink |
/// | `walctl_log_bytes_on_disk`, `walctl_log_staged_records`, `walctl_log_last_seq` | gauge | per log |
/// | `walctl_alerts_fired_total` | counter | alerts fired, per log |
/// | `walctl_alerts_delivered_total`, `walctl_alerts_delivery_failures_total`, `walctl_alerts_dead_letters_total` | counter | per log and `channel` |
public final class ShipperMonitor: Sendable {
    public let engines: [ShippingEngine]
    /// The alert evaluators' counters by log directory (empty without `--alerts`).
    private let alertStatistics: @Sendable () -> [String: AlertServiceStatistics]
    /// Logs to report on besides the shipped ones (`walctl serve`: logs without a shipper).
    private let logDirectories: @Sendable () -> [String]
    /// A sink that has committed nothing for this long while records wait for it is unhealthy.
    public let stalledAfterSeconds: Double
    /// The logs' overviews (disk use, staged records) are read at most this often.
    public let overviewSeconds: Double
    private let startedAt = monotonicNanos()
    private let state = Mutex(ExportState())

    public init(
        engines: [ShippingEngine],
        stalledAfterSeconds: Double = 60,
        overviewSeconds: Double = 10,
        alertStatistics: @escaping @Sendable () -> [String: AlertServiceStatistics] = { [:] },
        logDirectories: @escaping @Sendable () -> [String] = { [] }
    ) {
        self.logDirectories = logDirectories
        self.engines = engines
        self.stalledAfterSeconds = stalledAfterSeconds
        self.overviewSeconds = overviewSeconds
        self.alertStatistics = alertStatistics
    }

    /// The routes of the listener: `/metrics`, `/healthz`, `/readyz`.
    public var routes: [String: HTTPRoute] {
        [
            "/metrics": { [self] in
                HTTPResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: metricsText())
            },
            "/healthz": { [self] in
                let health = health()
                return .text(health.report, status: health.healthy ? 200 : 503)
            },
            "/readyz": { [self] in
                let readiness = readiness()
                return .text(readiness.report, status: readiness.ready ? 200 : 503)
            },
        ]
    }

    // MARK: - Health

    /// Unhealthy when a shipper stopped on a fatal error, when a call into a sink has not returned for
    /// `stalledAfterSeconds`, when records have waited for a sink that committed nothing for that long, or when
    /// every attempt to reach a sink failed for that long. The report
    /// says which sink and why, one line each (errors are the shippers' redacted texts: no secrets).
    public func health() -> (healthy: Bool, report: String) {
        let now = monotonicNanos()
        var problems: [String] = []
        var lines: [String] = []
        for engine in engines {
            let name = engine.sink.name
            let statistics = engine.statistics
            if let problem = Self.problem(statistics, now: now, startedAt: startedAt, stalledAfter: stalledAfterSeconds)
            {
                problems.append("\(name): \(problem)")
            } else {
                lines.append(
                    "\(name): ok, \(statistics.logs) logs, \(statistics.recordsBehind) records waiting"
                        + (statistics.recordsBehind > 0
                            ? ", oldest \(Self.seconds(statistics.oldestUnshippedAgeSeconds))" : "")
                )
            }
        }
        if problems.isEmpty { return (true, (["healthy"] + lines).joined(separator: "\n") + "\n") }
        return (false, (["unhealthy"] + problems + lines).joined(separator: "\n") + "\n")
    }

    /// Why a sink is unhealthy, or nil.
    static func problem(
        _ statistics: ShipperStatistics,
        now: UInt64,
        startedAt: UInt64,
        stalledAfter: Double
    ) -> String? {
        let limit = UInt64(max(0, stalledAfter) * 1e9)
        let lastError = statistics.lastError.map { "; last error: \($0)" } ?? ""
        if statistics.stoppedByError { return "stopped\(lastError)" }
        // A call that does not return freezes what the shipper publishes (its lag stays where it was): it is told
        // by itself.
        if let since = statistics.sinkCallSinceNanos, now > since, now - since >= limit {
            return "a call to the sink has not returned for \(seconds(Double(now - since) / 1e9))\(lastError)"
        }
        if let since = statistics.waitingSinceNanos {
            let reference = max(since, statistics.lastProgressNanos ?? startedAt)
            if now > reference, now - reference >= limit {
                return "no commit for \(seconds(Double(now - reference) / 1e9)) while \(statistics.recordsBehind) "
                    + "records wait\(lastError)"
            }
        }
        if let since = statistics.failingSinceNanos, now > since, now - since >= limit {
            return "every attempt failed for \(seconds(Double(now - since) / 1e9))\(lastError)"
        }
        return nil
    }

    /// Ready once every shipper has found its logs and read where its sink stands (so it reached the sink), and
    /// none has finished (a drained shipper is no longer serving).
    public func readiness() -> (ready: Bool, report: String) {
        var waiting: [String] = []
        for engine in engines {
            if engine.isFinished {
                waiting.append("\(engine.sink.name): finished")
            } else if !engine.isStarted {
                waiting.append(
                    "\(engine.sink.name): starting"
                        + (engine.statistics.lastError.map { "; last error: \($0)" } ?? "")
                )
            }
        }
        return waiting.isEmpty ? (true, "ready\n") : (false, (["not ready"] + waiting).joined(separator: "\n") + "\n")
    }

    static func seconds(_ value: Double) -> String {
        value < 10 ? "\((value * 10).rounded() / 10) s" : "\(Int(value.rounded())) s"
    }

    // MARK: - Prometheus

    /// The exposition of every series, built from a fresh read of the counters.
    public func metricsText() -> [UInt8] {
        let now = monotonicNanos()
        let engineViews = engines.map { (name: $0.sink.name, totals: $0.statistics, logs: Array($0.logs.values)) }
        let alerts = alertStatistics()
        let others = logDirectories()
        return state.withLock { state in
            state.refreshOverviews(
                directories: Set(engineViews.flatMap { $0.logs.map(\.directory) }).union(alerts.keys).union(others),
                now: now,
                interval: UInt64(overviewSeconds * 1e9)
            )
            var seen = Set<String>()
            for view in engineViews {
                let sink = [("sink", view.name)]
                for log in view.logs {
                    let labels = sink + [("log_id", log.logID), ("dir", log.directory)]
                    let statistics = log.statistics
                    state.set(.committedSeq, labels, Double(statistics.committedSeq), &seen)
                    state.set(.lagRecords, labels, Double(statistics.recordsBehind), &seen)
                    state.set(.lagSeconds, labels, statistics.oldestUnshippedAgeSeconds, &seen)
                    state.count(.records, labels, statistics.recordsShipped, &seen)
                    state.count(.bytes, labels, statistics.bytesShipped, &seen)
                    state.count(.skipped, labels, statistics.entriesSkipped, &seen)
                }
                let totals = view.totals
                state.count(.batches, sink, totals.batchesShipped, &seen)
                state.count(.retries, sink, totals.retries, &seen)
                for (kind, count) in totals.errorsByKind {
                    state.count(.errors, sink + [("kind", kind)], count, &seen)
                }
                state.count(.deadLetters, sink, totals.deadLettered, &seen)
                state.set(.logs, sink, Double(totals.logs), &seen)
                state.set(.connected, sink, totals.connected ? 1 : 0, &seen)
                let problem = Self.problem(totals, now: now, startedAt: startedAt, stalledAfter: stalledAfterSeconds)
                state.set(.healthy, sink, problem == nil ? 1 : 0, &seen)
                let progress = totals.lastProgressNanos ?? startedAt
                state.set(.sinceProgress, sink, Double(now > progress ? now - progress : 0) / 1e9, &seen)
            }
            for (directory, overview) in state.overviews {
                let labels = [("log_id", overview.logID), ("dir", directory)]
                state.set(.bytesOnDisk, labels, Double(overview.bytesAllocated), &seen)
                state.set(.stagedRecords, labels, Double(overview.stagedRecords), &seen)
                state.set(.lastSeq, labels, Double(overview.lastSeq ?? 0), &seen)
            }
            for (directory, statistics) in alerts {
                let labels = [("log_id", state.overviews[directory]?.logID ?? ""), ("dir", directory)]
                state.count(.alertsFired, labels, statistics.alertsFired, &seen)
                for (channel, count) in statistics.delivered {
                    state.count(.alertsDelivered, labels + [("channel", channel)], count, &seen)
                }
                for (channel, count) in statistics.deliveryFailures {
                    state.count(.alertFailures, labels + [("channel", channel)], count, &seen)
                }
                for (channel, count) in statistics.deadLettered {
                    state.count(.alertDeadLetters, labels + [("channel", channel)], count, &seen)
                }
            }
            state.forget(keeping: seen)
            return state.registry.emitToBuffer()
        }
    }
}

/// A series' name and help text.
struct Series: Sendable {
    var name: String
    var help: String

    static let committedSeq = Series(
        name: "walctl_ship_committed_seq",
        help: "The last sequence number the sink committed."
    )
    static let lagRecords = Series(
        name: "walctl_ship_lag_records",
        help: "Records sealed in the log and not yet committed in the sink."
    )
    static let lagSeconds = Series(
        name: "walctl_ship_lag_seconds",
        help: "Age of the oldest record read and not yet committed (0 when caught up)."
    )
    static let records = Series(name: "walctl_ship_records_total", help: "Records committed in the sink.")
    static let bytes = Series(
        name: "walctl_ship_bytes_total",
        help: "Bytes of the committed records, encoded as the log holds them."
    )
    static let skipped = Series(
        name: "walctl_ship_skipped_total",
        help: "Gaps, damaged regions and undecodable records passed over (each reported)."
    )
    static let batches = Series(name: "walctl_ship_batches_total", help: "Batches committed.")
    static let retries = Series(
        name: "walctl_ship_retries_total",
        help: "Failed attempts, each retried after a backoff."
    )
    static let errors = Series(name: "walctl_ship_errors_total", help: "Failed attempts by kind of error.")
    static let deadLetters = Series(
        name: "walctl_ship_dead_letters_total",
        help: "Records the sink refused for good and dead-lettered."
    )
    static let logs = Series(name: "walctl_ship_logs", help: "Logs this shipper ships.")
    static let connected = Series(
        name: "walctl_ship_connected",
        help: "1 when the last attempt to reach the sink succeeded."
    )
    static let healthy = Series(name: "walctl_ship_healthy", help: "0 when /healthz reports this sink unhealthy.")
    static let sinceProgress = Series(
        name: "walctl_ship_seconds_since_progress",
        help: "Seconds since the sink last committed a batch (or since the start)."
    )
    static let bytesOnDisk = Series(
        name: "walctl_log_bytes_on_disk",
        help: "Bytes the filesystem allocated to the log's segments and staging file."
    )
    static let stagedRecords = Series(
        name: "walctl_log_staged_records",
        help: "Records appended (durable in staging) and not sealed yet."
    )
    static let lastSeq = Series(name: "walctl_log_last_seq", help: "The last sequence number sealed in the log.")
    static let alertsFired = Series(name: "walctl_alerts_fired_total", help: "Alerts fired.")
    static let alertsDelivered = Series(name: "walctl_alerts_delivered_total", help: "Alerts delivered, per channel.")
    static let alertFailures = Series(
        name: "walctl_alerts_delivery_failures_total",
        help: "Failed delivery attempts (retried), per channel."
    )
    static let alertDeadLetters = Series(
        name: "walctl_alerts_dead_letters_total",
        help: "Alerts given up on and dead-lettered in the journal, per channel."
    )
}

/// The registry and what was exported into it: counters move by the difference since the last scrape (a counter
/// that went down, a log forgotten and found again, starts over from its new value), series of logs gone are
/// unregistered.
struct ExportState {
    let registry = PrometheusCollectorRegistry()
    var gauges: [String: Gauge] = [:]
    var counters: [String: (counter: Counter, value: UInt64)] = [:]
    var overviews: [String: LogOverview] = [:]
    var overviewsReadAt: UInt64 = 0
    /// The logs whose overview was read (or attempted) since they were last dropped.
    var overviewsRead: Set<String> = []

    /// The whole name as the metric name (the unit, `_total` or `_seconds`, is already part of it).
    static func descriptor(_ series: Series) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: series.name, unitName: "", helpText: series.help)
    }

    static func key(_ name: String, _ labels: [(String, String)]) -> String {
        ([name] + labels.map { "\($0.0)=\($0.1)" }).joined(separator: "\u{1F}")
    }

    mutating func set(_ series: Series, _ labels: [(String, String)], _ value: Double, _ seen: inout Set<String>) {
        let key = Self.key(series.name, labels)
        seen.insert(key)
        let gauge =
            gauges[key]
            ?? {
                let made = registry.makeGauge(descriptor: Self.descriptor(series), labels: labels)
                gauges[key] = made
                return made
            }()
        gauge.set(value.isFinite ? value : 0)
    }

    mutating func count(_ series: Series, _ labels: [(String, String)], _ value: UInt64, _ seen: inout Set<String>) {
        let key = Self.key(series.name, labels)
        seen.insert(key)
        if let (counter, exported) = counters[key] {
            if value > exported { counter.increment(by: Int64(clamping: value - exported)) }
            counters[key] = (counter, value)
        } else {
            let counter = registry.makeCounter(descriptor: Self.descriptor(series), labels: labels)
            counter.increment(by: Int64(clamping: value))
            counters[key] = (counter, value)
        }
    }

    /// Unregisters every series not exported this time (its log was retired or forgotten).
    mutating func forget(keeping seen: Set<String>) {
        for (key, gauge) in gauges where !seen.contains(key) {
            registry.unregisterGauge(gauge)
            gauges[key] = nil
        }
        for (key, entry) in counters where !seen.contains(key) {
            registry.unregisterCounter(entry.counter)
            counters[key] = nil
        }
    }

    /// Every log's overview once per `interval`; between, only logs not looked at yet (a log that appeared) are read,
    /// and logs no longer shipped are dropped.
    mutating func refreshOverviews(directories: Set<String>, now: UInt64, interval: UInt64) {
        let due = now - overviewsReadAt >= interval
        if due { overviewsReadAt = now }
        overviewsRead.formIntersection(directories)
        overviews = overviews.filter { directories.contains($0.key) }
        for directory in due ? directories : directories.subtracting(overviewsRead) {
            overviewsRead.insert(directory)
            // A log removed meanwhile (retired) has nothing left to report.
            overviews[directory] = try? LogInspector.overview(path: directory)
        }
    }
}
