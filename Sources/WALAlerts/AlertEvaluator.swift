import Foundation
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
/// Its whole memory is `state` (each window's values and each rule's last alert times): an evaluator restored
/// from the `state` it had after record N fires, on the records after N, exactly the alerts an uninterrupted one
/// fires. `AlertService` journals that state with its position (`alerts/state.json`) so that a restart, even after
/// `kill -9`, continues the same chain of alerts.
///
/// Non-finite record values (NaN, ±inf) are not evaluated and never enter a window, so every aggregate is finite.
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

    /// An evaluator that continues from `state` (taken from an evaluator of the same rules).
    public init(rules: [ThresholdRule], logID: LogID, state: AlertEvaluatorState) {
        self.init(rules: rules, logID: logID)
        for window in state.windows where rules.indices.contains(window.rule) {
            var restored = WindowState()
            for (time, value) in zip(window.times, window.values) { restored.append(value, at: time) }
            windows[window.rule] = restored
        }
        for fired in state.lastFired where rules.indices.contains(fired.rule) {
            lastFired[fired.rule, default: [:]][fired.severity] = fired.timestampNanos
        }
    }

    /// Everything the evaluator remembers of the records it has seen, in a canonical order (rules ascending).
    public var state: AlertEvaluatorState {
        AlertEvaluatorState(
            windows: windows.keys.sorted().map { rule in
                let live = windows[rule]!.live
                return AlertEvaluatorState.WindowValues(rule: rule, times: live.map(\.time), values: live.map(\.value))
            },
            lastFired: lastFired.keys.sorted().flatMap { rule in
                lastFired[rule]!.sorted { $0.key < $1.key }.map {
                    AlertEvaluatorState.Fired(rule: rule, severity: $0.key, timestampNanos: $0.value)
                }
            }
        )
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

/// What an `AlertEvaluator` remembers: the values in each window (emit time and value, oldest first) and the
/// emit time of each rule's last alert per severity. Encodes to JSON with times and values as little-endian
/// bytes (base64), so every double and nanosecond survives bit for bit.
public struct AlertEvaluatorState: Sendable, Equatable, Codable {
    public struct WindowValues: Sendable, Equatable, Codable {
        public var rule: Int
        public var times: [Int64]
        public var values: [Double]

        enum CodingKeys: String, CodingKey { case rule, times, values }

        public init(rule: Int, times: [Int64], values: [Double]) {
            self.rule = rule
            self.times = times
            self.values = values
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            rule = try container.decode(Int.self, forKey: .rule)
            let timeBytes = [UInt8](try container.decode(Data.self, forKey: .times))
            let valueBytes = [UInt8](try container.decode(Data.self, forKey: .values))
            guard timeBytes.count % 8 == 0, timeBytes.count == valueBytes.count else {
                throw DecodingError.dataCorruptedError(
                    forKey: .values,
                    in: container,
                    debugDescription: "times and values differ in length"
                )
            }
            times = Self.words(timeBytes).map { Int64(bitPattern: $0) }
            values = Self.words(valueBytes).map { Double(bitPattern: $0) }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(rule, forKey: .rule)
            try container.encode(Data(Self.bytes(times.map { UInt64(bitPattern: $0) })), forKey: .times)
            try container.encode(Data(Self.bytes(values.map(\.bitPattern))), forKey: .values)
        }

        static func bytes(_ words: [UInt64]) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(words.count * 8)
            for word in words {
                for shift in stride(from: 0, to: 64, by: 8) {
                    out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
                }
            }
            return out
        }

        static func words(_ bytes: [UInt8]) -> [UInt64] {
            stride(from: 0, to: bytes.count, by: 8).map { start in
                (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[start + $1]) << UInt64($1 * 8) }
            }
        }
    }

    public struct Fired: Sendable, Equatable, Codable {
        public var rule: Int
        public var severity: Severity
        public var timestampNanos: Int64

        enum CodingKeys: String, CodingKey {
            case rule, severity
            case timestampNanos = "timestamp_nanos"
        }
    }

    public var windows: [WindowValues]
    public var lastFired: [Fired]

    enum CodingKeys: String, CodingKey {
        case windows
        case lastFired = "last_fired"
    }
}

/// The values of one rule's window: in arrival order (to expire them), sorted (for percentiles), and their exact
/// sum (for averages: each value is added once and subtracted once, exactly, so nothing drifts).
struct WindowState: Sendable {
    private var arrivals: [(time: Int64, value: Double)] = []
    private var head = 0
    private var sorted: [Double] = []
    private var sum = ExactSum()

    var count: Int { sorted.count }

    /// The values in the window, oldest first.
    var live: ArraySlice<(time: Int64, value: Double)> { arrivals[head...] }

    /// Adds a value restored from a snapshot (already inside its window).
    mutating func append(_ value: Double, at time: Int64) {
        arrivals.append((time, value))
        sorted.insert(value, at: insertionIndex(value))
        sum.add(value)
    }

    mutating func add(_ value: Double, at time: Int64, keeping duration: Int64, limit: Int) {
        append(value, at: time)
        while head < arrivals.count && (arrivals[head].time <= time - duration || arrivals.count - head > limit) {
            let expired = arrivals[head].value
            sorted.remove(at: min(insertionIndex(expired), sorted.count - 1))
            sum.add(-expired)
            head += 1
        }
        // A sum beyond the range of doubles (values near 1e308) cannot be kept in partials: recount the window,
        // which is exact again once the large values have left it.
        if sum.overflowed { sum = ExactSum(sorted) }
        if head > 4096 && head * 2 > arrivals.count {
            arrivals.removeFirst(head)
            head = 0
        }
    }

    /// avg: the exact sum correctly rounded, divided by the count (`ExactSum.mean`); pNN: nearest rank.
    func value(_ kind: Window.Aggregate) -> Double {
        switch kind {
        case .avg: return ExactSum.mean(sum: sum, values: sorted)
        case .p95: return ExactSum.nearestRank(95, sorted: sorted)
        case .p99: return ExactSum.nearestRank(99, sorted: sorted)
        }
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
