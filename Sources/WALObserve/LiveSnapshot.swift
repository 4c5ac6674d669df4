import WALMetrics

/// What the live page shows at one moment: the design's five real-time panels, the logs being read and the recent
/// alerts. `json()` is the body of `GET /api/live` (snake_case keys; a value without data is `null`).
public struct LiveSnapshot: Sendable {
    public struct Percentiles: Sendable, Equatable {
        public var count: UInt64 = 0
        public var p50: Double?
        public var p95: Double?
        public var p99: Double?

        public init() {}

        init(_ histogram: LiveHistogram) {
            count = histogram.count
            p50 = histogram.percentile(0.50)
            p95 = histogram.percentile(0.95)
            p99 = histogram.percentile(0.99)
        }
    }

    /// Routing performance, last 60 seconds.
    public struct Routing: Sendable {
        public var decisions: UInt64 = 0
        public var decisionTimeMs: Double?
        public var cacheHitRatePercent: Double?
        public var confidenceMean: Double?
        /// Decisions per confidence bucket of 0.1, from 0.0-0.1 to 0.9-1.0.
        public var confidenceBuckets = [UInt64](repeating: 0, count: 10)
        public var decisionTimeSeries: [Double?] = []
        public var cacheHitRateSeries: [Double?] = []
    }

    /// State operations, last 60 seconds (percentiles from per-second log histograms, within 1 %).
    public struct State: Sendable {
        public var get = Percentiles()
        public var set = Percentiles()
        /// Contended lock acquisitions per second, and their mean wait.
        public var lockContentionPerSecond: Double = 0
        public var lockWaitMs: Double?
        /// State gets and sets per second.
        public var operationsPerSecond: Double = 0
        public var operationsSeries: [Double?] = []
        public var getP99Series: [Double?] = []
        public var setP99Series: [Double?] = []
    }

    /// Coordination overhead, last 300 seconds.
    public struct Coordination: Sendable {
        public var overheadMs: Double?
        public var syncTimeMs: Double?
        /// Distinct agent ids that sent a coordination metric.
        public var activeAgents = 0
        public var activeAgentsIsLowerBound = false
        public var dependencyWaitMs: Double?
        public var dependencyWaitMaxMs: Double?
        public var overheadSeries: [Double?] = []
        public var dependencyWaitSeries: [Double?] = []
    }

    /// Workflow execution, last 300 seconds.
    public struct Workflow: Sendable {
        public var executions: UInt64 = 0
        public var successRatePercent: Double?
        public var executionTimeMs: Double?
        public var parallelSpeedup: Double?
        public var successRateSeries: [Double?] = []
        public var executionTimeSeries: [Double?] = []
        public var speedupSeries: [Double?] = []
    }

    /// One log the view reads.
    public struct LogState: Sendable, Equatable {
        public var directory: String
        /// `reading`, `idle` (nothing new for a while; its descriptor released) or `unreachable`.
        public var state: String
        public var error: String?
        /// The last sequence number read.
        public var lastSeq: UInt64
        /// Records skipped to keep up (the view jumps ahead rather than fall minutes behind a fast writer).
        public var skipped: UInt64
        /// Records the log itself does not hold (its gap markers, and damaged regions met while reading), and the
        /// damaged regions met: shown on the page, not passed over in silence.
        public var lost: UInt64 = 0
        public var damaged = 0
    }

    /// One alert of a journal.
    public struct AlertRow: Sendable, Equatable {
        public var timestampNanos: Int64
        public var severity: String
        public var metric: String
        public var value: Double?
        public var threshold: Double?
        public var agentID: String?
        public var alertID: String
        public var directory: String
    }

    public var nowNanos: Int64
    public var recordsPerSecond: Double = 0
    public var recordsInWindow: UInt64 = 0
    public var routing = Routing()
    public var state = State()
    public var coordination = Coordination()
    public var workflow = Workflow()
    public var logs: [LogState] = []
    public var logCount = 0
    /// Recent critical and warning alerts, newest first.
    public var alerts: [AlertRow] = []
    /// Alerts fired per minute over the last `alertMinutes` minutes, oldest first, by severity.
    public var alertFrequency: [String: [UInt64]] = [:]
    public static let alertMinutes = 30

    public init(nowNanos: Int64) { self.nowNanos = nowNanos }
}

// MARK: - JSON

extension LiveSnapshot {
    /// The snapshot as one JSON object (the `/api/live` body). At most `maxLogs` logs are listed (the unreachable
    /// first); `log_count` says how many there are.
    public func json(maxLogs: Int = 50) -> [UInt8] {
        let out = JSONWriter()
        out.object {
            out.field("generated_at") { out.timestamp(nowNanos) }
            out.field("generated_at_ms", Double(nowNanos / 1_000_000))
            out.field("records_per_second", recordsPerSecond)
            out.field("records_in_window", Double(recordsInWindow))
            out.field("routing") {
                out.object {
                    out.field("window_seconds", 60)
                    out.field("decisions", Double(routing.decisions))
                    out.field("decision_time_ms_avg", routing.decisionTimeMs)
                    out.field("cache_hit_rate_pct", routing.cacheHitRatePercent)
                    out.field("confidence_avg", routing.confidenceMean)
                    out.field("confidence_buckets") { out.array(routing.confidenceBuckets.map { Double($0) }) }
                    out.field("decision_time_ms_series") { out.array(routing.decisionTimeSeries) }
                    out.field("cache_hit_rate_pct_series") { out.array(routing.cacheHitRateSeries) }
                }
            }
            out.field("state") {
                out.object {
                    out.field("window_seconds", 60)
                    for (name, value) in [("get_ms", state.get), ("set_ms", state.set)] {
                        out.field(name) {
                            out.object {
                                out.field("count", Double(value.count))
                                out.field("p50", value.p50)
                                out.field("p95", value.p95)
                                out.field("p99", value.p99)
                            }
                        }
                    }
                    out.field("lock_contention_per_s", state.lockContentionPerSecond)
                    out.field("lock_wait_ms_avg", state.lockWaitMs)
                    out.field("ops_per_s", state.operationsPerSecond)
                    out.field("ops_series") { out.array(state.operationsSeries) }
                    out.field("get_p99_ms_series") { out.array(state.getP99Series) }
                    out.field("set_p99_ms_series") { out.array(state.setP99Series) }
                }
            }
            out.field("coordination") {
                out.object {
                    out.field("window_seconds", 300)
                    out.field("overhead_ms_avg", coordination.overheadMs)
                    out.field("sync_time_ms_avg", coordination.syncTimeMs)
                    out.field("active_agents", Double(coordination.activeAgents))
                    out.field("active_agents_lower_bound") { out.bool(coordination.activeAgentsIsLowerBound) }
                    out.field("dependency_wait_ms_avg", coordination.dependencyWaitMs)
                    out.field("dependency_wait_ms_max", coordination.dependencyWaitMaxMs)
                    out.field("series_step_seconds", 10)
                    out.field("overhead_ms_series") { out.array(coordination.overheadSeries) }
                    out.field("dependency_wait_ms_series") { out.array(coordination.dependencyWaitSeries) }
                }
            }
            out.field("workflow") {
                out.object {
                    out.field("window_seconds", 300)
                    out.field("executions", Double(workflow.executions))
                    out.field("success_rate_pct", workflow.successRatePercent)
                    out.field("execution_time_ms_avg", workflow.executionTimeMs)
                    out.field("parallel_speedup_avg", workflow.parallelSpeedup)
                    out.field("series_step_seconds", 10)
                    out.field("success_rate_pct_series") { out.array(workflow.successRateSeries) }
                    out.field("execution_time_ms_series") { out.array(workflow.executionTimeSeries) }
                    out.field("parallel_speedup_series") { out.array(workflow.speedupSeries) }
                }
            }
            out.field("alerts") {
                out.object {
                    out.field("recent") {
                        out.list(alerts) { alert in
                            out.object {
                                out.field("time") { out.timestamp(alert.timestampNanos) }
                                out.field("severity", alert.severity)
                                out.field("metric_name", alert.metric)
                                out.field("value", alert.value)
                                out.field("threshold", alert.threshold)
                                out.field("agent_id", alert.agentID)
                                out.field("alert_id", alert.alertID)
                                out.field("log", alert.directory)
                            }
                        }
                    }
                    out.field("frequency_bucket_seconds", 60)
                    out.field("frequency") {
                        out.object {
                            for severity in ["critical", "warning", "info"] {
                                out.field(severity) {
                                    out.array(
                                        (alertFrequency[severity]
                                            ?? [UInt64](repeating: 0, count: Self.alertMinutes)).map { Double($0) }
                                    )
                                }
                            }
                        }
                    }
                }
            }
            out.field("log_count", Double(logCount))
            out.field("logs") {
                let listed = logs.sorted { ($0.state == "unreachable" ? 0 : 1) < ($1.state == "unreachable" ? 0 : 1) }
                out.list(Array(listed.prefix(maxLogs))) { log in
                    out.object {
                        out.field("dir", log.directory)
                        out.field("state", log.state)
                        out.field("error", log.error)
                        out.field("last_seq", Double(log.lastSeq))
                        out.field("skipped", Double(log.skipped))
                        out.field("lost", Double(log.lost))
                        out.field("damaged", Double(log.damaged))
                    }
                }
            }
        }
        return out.bytes
    }
}

/// A small JSON builder over bytes (a class: the nested closures write to the one buffer) (keys written as given; numbers as `Envelope` writes them; NaN and infinities
/// become null).
final class JSONWriter {
    var bytes: [UInt8] = []
    private var needsComma = false

    init() { bytes.reserveCapacity(8192) }

    func object(_ body: () -> Void) {
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
        body()
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    func list<T>(_ items: [T], _ body: (T) -> Void) {
        bytes.append(UInt8(ascii: "["))
        needsComma = false
        for item in items {
            if needsComma { bytes.append(UInt8(ascii: ",")) }
            body(item)
            needsComma = true
        }
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    func array(_ values: [Double?]) {
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            number(value)
        }
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    func field(_ name: String, _ body: () -> Void) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        Envelope.appendJSONString(name, into: &bytes)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
        body()
        needsComma = true
    }

    func field(_ name: String, _ value: Double?) {
        field(name) { number(value) }
    }

    func field(_ name: String, _ value: String?) {
        field(name) {
            if let value {
                Envelope.appendJSONString(value, into: &bytes)
            } else {
                bytes.append(contentsOf: "null".utf8)
            }
        }
    }

    func number(_ value: Double?) {
        guard let value, value.isFinite else {
            bytes.append(contentsOf: "null".utf8)
            return
        }
        bytes.append(contentsOf: Envelope.numberText(value).utf8)
    }

    func bool(_ value: Bool) {
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    func timestamp(_ nanos: Int64) {
        bytes.append(UInt8(ascii: "\""))
        Envelope.appendTimestamp(nanos, into: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }
}
