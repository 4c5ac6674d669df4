import CoreMetrics
import Synchronization

/// A swift-metrics backend: `Counter`, `FloatingPointCounter`, `Recorder`/`Gauge`, `Timer` and `Meter` from any
/// Swift code land in the log. Dimensions become tags.
///
/// Labels are mapped to metric names: lower-cased, characters outside `a-z 0-9 _` become `_`, and a label that is
/// still not `{category}_{metric}` gets the prefix `custom_`. A label from the catalog keeps the catalog's type and
/// unit (`Recorder(label: "state_snapshot_size_kb")` is a gauge in KB). Otherwise: Counter and FloatingPointCounter
/// record counters (`count`, the increment), Recorder and Meter record gauges (`value`, the current value for a
/// Meter), Timer records timings in milliseconds. An emit the collector rejects is counted in its statistics.
///
/// ```swift
/// MetricsSystem.bootstrap(WALMetricsFactory(collector: collector))
/// ```
public struct WALMetricsFactory: MetricsFactory {
    public let collector: MetricsCollector

    public init(collector: MetricsCollector) { self.collector = collector }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        WALCounterHandler(handle: handle(label, dimensions, type: .counter, unit: "count"))
    }

    public func makeFloatingPointCounter(
        label: String,
        dimensions: [(String, String)]
    )
        -> any FloatingPointCounterHandler
    {
        WALCounterHandler(handle: handle(label, dimensions, type: .counter, unit: "count"))
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        WALRecorderHandler(handle: handle(label, dimensions, type: .gauge, unit: "value"))
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        WALMeterHandler(handle: handle(label, dimensions, type: .gauge, unit: "value"))
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        WALTimerHandler(handle: handle(label, dimensions, type: .timing, unit: "ms"))
    }

    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyMeter(_ handler: any MeterHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}

    /// A handle for the label, or nil when the collector refuses it (the refusal is counted).
    private func handle(
        _ label: String,
        _ dimensions: [(String, String)],
        type: MetricType,
        unit: String
    )
        -> MetricHandle?
    {
        let name = Self.metricName(label)
        var tags: [String: String] = [:]
        for (key, value) in dimensions { tags[Self.tagKey(key)] = value }
        if let definition = MetricCatalog.byName[name] {
            return try? collector.handle(definition, tags: tags)
        }
        return try? collector.handle(name, type: type, unit: unit, tags: tags)
    }

    /// The metric name for a swift-metrics label.
    public static func metricName(_ label: String) -> String {
        let name = sanitize(label)
        if Validation.isValidName(name) { return name }
        let prefixed = "custom_" + (name.isEmpty ? "metric" : name)
        return Validation.isValidName(prefixed) ? String(prefixed.prefix(Validation.maxNameBytes)) : "custom_metric"
    }

    static func tagKey(_ key: String) -> String {
        let sanitized = sanitize(key)
        guard let first = sanitized.utf8.first, first >= 0x61, first <= 0x7A else { return "t_" + sanitized }
        return String(sanitized.prefix(Validation.maxTagKeyBytes))
    }

    /// Lower case; runs of characters outside `a-z 0-9` become one `_`; no leading or trailing `_`.
    static func sanitize(_ text: String) -> String {
        var bytes: [UInt8] = []
        for byte in text.lowercased().utf8 {
            let keep = (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            if keep {
                bytes.append(byte)
            } else if bytes.last != 0x5F && !bytes.isEmpty {
                bytes.append(0x5F)
            }
        }
        while bytes.last == 0x5F { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

final class WALCounterHandler: CounterHandler, FloatingPointCounterHandler {
    let handle: MetricHandle?
    init(handle: MetricHandle?) { self.handle = handle }
    func increment(by amount: Int64) { handle?.record(Double(amount)) }
    func increment(by amount: Double) { handle?.record(amount) }
    /// Counters in the log are increments; a reset is not a record.
    func reset() {}
}

final class WALRecorderHandler: RecorderHandler {
    let handle: MetricHandle?
    init(handle: MetricHandle?) { self.handle = handle }
    func record(_ value: Int64) { handle?.record(Double(value)) }
    func record(_ value: Double) { handle?.record(value) }
}

final class WALMeterHandler: MeterHandler {
    let handle: MetricHandle?
    private let value = Mutex<Double>(0)
    init(handle: MetricHandle?) { self.handle = handle }
    func set(_ value: Int64) { set(Double(value)) }
    func set(_ newValue: Double) {
        value.withLock { $0 = newValue }
        handle?.record(newValue)
    }
    func increment(by amount: Double) {
        handle?.record(
            value.withLock {
                $0 += amount; return $0
            }
        )
    }
    func decrement(by amount: Double) {
        handle?.record(
            value.withLock {
                $0 -= amount; return $0
            }
        )
    }
}

final class WALTimerHandler: TimerHandler {
    let handle: MetricHandle?
    init(handle: MetricHandle?) { self.handle = handle }
    func recordNanoseconds(_ duration: Int64) { handle?.record(Double(duration) / 1_000_000) }
}
