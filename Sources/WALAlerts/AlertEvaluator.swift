import WALCore
import WALMetrics

/// One alert: a record (or the window it closed) breached a threshold.
public struct Alert: Sendable, Equatable {
    /// Deterministic: the UUID version 5 of `alert/{seq}/{rule index}/{severity}` in the log id's namespace, so
    /// evaluating the same records again (after a crash) yields the same id, which receivers can deduplicate on
    /// (PagerDuty's `dedup_key`, a Kafka consumer).
    public var id: String
    public var severity: Severity
    public var metric: String
    /// The value compared: the record's value, or the window's aggregate.
    public var value: Double
    public var threshold: Double
    public var direction: Direction
    public var window: Window
    public var tags: [String: String]
    public var agentID: String?
    public var correlationID: String?
    /// The emit time of the record that fired it, nanoseconds since the Unix epoch.
    public var timestampNanos: Int64
    /// The record that fired it.
    public var seq: UInt64
    /// The index of the rule in its thresholds file.
    public var rule: Int

    /// The alert as one JSON object: the payload every channel carries.
    public func json() -> String {
        var out: [UInt8] = []
        func key(_ name: String) {
            if out.count > 1 { out.append(0x2C) }
            Envelope.appendJSONString(name, into: &out)
            out.append(0x3A)
        }
        func text(_ name: String, _ value: String?) {
            key(name)
            if let value { Envelope.appendJSONString(value, into: &out) } else { out.append(contentsOf: "null".utf8) }
        }
        out.append(0x7B)
        text("alert_id", id)
        text("severity", severity.rawValue)
        text("metric_name", metric)
        key("value")
        out.append(contentsOf: Envelope.numberText(value).utf8)
        key("threshold")
        out.append(contentsOf: Envelope.numberText(threshold).utf8)
        text("direction", direction.rawValue)
        text("window", window.description)
        key("tags")
        out.append(0x7B)
        for (index, pair) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { out.append(0x2C) }
            Envelope.appendJSONString(pair.key, into: &out)
            out.append(0x3A)
            Envelope.appendJSONString(pair.value, into: &out)
        }
        out.append(0x7D)
        text("agent_id", agentID)
        text("correlation_id", correlationID)
        var time: [UInt8] = []
        Envelope.appendTimestamp(timestampNanos, into: &time)
        text("timestamp", String(decoding: time, as: UTF8.self))
        key("wal_seq")
        out.append(contentsOf: String(seq).utf8)
        key("rule")
        out.append(contentsOf: String(rule).utf8)
        out.append(0x7D)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Checks metric records against threshold rules, in log order. A plain value: `evaluate` does no I/O, so the
/// same records always give the same alerts (windows and cool-downs run on emit time, not the wall clock).
///
/// Windows keep their values sorted; a window's cost grows with the number of values it holds (at most
/// `maxWindowSamples`, oldest dropped first).
public struct AlertEvaluator: Sendable {
    public let rules: [ThresholdRule]
    public let logID: LogID
    public var maxWindowSamples = 100_000
    private var rulesByMetric: [String: [Int]] = [:]
    private var windows: [Int: WindowState] = [:]
    /// Per rule and severity: the emit time of the last alert.
    private var lastFired: [Int: [Severity: Int64]] = [:]

    public init(rules: [ThresholdRule], logID: LogID) {
        self.rules = rules
        self.logID = logID
        for (index, rule) in rules.enumerated() { rulesByMetric[rule.metric, default: []].append(index) }
    }

    /// The alerts this record fires (at most one per rule: its highest breached severity, unless cooling down).
    public mutating func evaluate(_ record: MetricRecord) -> [Alert] {
        guard let indices = rulesByMetric[record.name], record.value.isFinite else { return [] }
        var alerts: [Alert] = []
        for index in indices {
            let rule = rules[index]
            guard rule.tags.allSatisfy({ record.tags[$0.key] == $0.value }) else { continue }
            let observed: Double
            switch rule.window {
            case .last:
                observed = record.value
            case .aggregate(let kind, let duration, let minSamples):
                var state = windows[index] ?? WindowState()
                state.add(record.value, at: record.timestampNanos, keeping: duration, limit: maxWindowSamples)
                windows[index] = state
                guard state.count >= minSamples else { continue }
                observed = state.value(kind)
            }
            guard let (severity, threshold) = rule.severity(of: observed) else { continue }
            if let previous = lastFired[index]?[severity], record.timestampNanos - previous < rule.cooldownNanos,
                record.timestampNanos >= previous
            {
                continue
            }
            lastFired[index, default: [:]][severity] = record.timestampNanos
            alerts.append(
                Alert(
                    id: Envelope.uuid5(logID: logID, name: "alert/\(record.seq)/\(index)/\(severity.rawValue)"),
                    severity: severity,
                    metric: record.name,
                    value: observed,
                    threshold: threshold,
                    direction: rule.direction,
                    window: rule.window,
                    tags: record.tags,
                    agentID: record.agentID,
                    correlationID: record.correlationID,
                    timestampNanos: record.timestampNanos,
                    seq: record.seq,
                    rule: index
                )
            )
        }
        return alerts
    }
}

/// The values of one rule's window: in arrival order (to expire them) and sorted (for percentiles).
struct WindowState: Sendable {
    private var arrivals: [(time: Int64, value: Double)] = []
    private var head = 0
    private var sorted: [Double] = []
    private var sum = 0.0

    var count: Int { sorted.count }

    mutating func add(_ value: Double, at time: Int64, keeping duration: Int64, limit: Int) {
        arrivals.append((time, value))
        sorted.insert(value, at: insertionIndex(value))
        sum += value
        while head < arrivals.count && (arrivals[head].time <= time - duration || arrivals.count - head > limit) {
            let expired = arrivals[head].value
            sorted.remove(at: min(insertionIndex(expired), sorted.count - 1))
            sum -= expired
            head += 1
        }
        if head > 4096 && head * 2 > arrivals.count {
            arrivals.removeFirst(head)
            head = 0
        }
    }

    func value(_ kind: Window.Aggregate) -> Double {
        switch kind {
        case .avg: return sum / Double(max(count, 1))
        case .p95: return percentile(95)
        case .p99: return percentile(99)
        }
    }

    /// Nearest-rank percentile.
    private func percentile(_ p: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    /// The first index whose value is not less than `value`.
    private func insertionIndex(_ value: Double) -> Int {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
