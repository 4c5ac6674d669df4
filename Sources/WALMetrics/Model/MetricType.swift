/// The four kinds of metric of the design.
public enum MetricType: UInt8, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// A duration, in milliseconds.
    case timing = 0
    /// A count of events.
    case counter = 1
    /// A value that goes up and down.
    case gauge = 2
    /// A percentage, 0 to 100.
    case rate = 3

    /// The wire name: `timing`, `counter`, `gauge`, `rate`.
    public var description: String {
        switch self {
        case .timing: return "timing"
        case .counter: return "counter"
        case .gauge: return "gauge"
        case .rate: return "rate"
        }
    }

    public init?(name: String) {
        guard let type = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = type
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let type = MetricType(name: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "metric type"))
        }
        self = type
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The category of a metric, from its name's prefix; it decides the Kafka topic and the PostgreSQL table.
public enum MetricCategory: String, Sendable, CaseIterable, Codable {
    case routing, state, coordination, workflow, quorum
    /// Any name outside the five categories of the design: kept, never lost.
    case custom

    /// The category of a metric name: its first `_`-separated word when that is a known category, else `custom`.
    @_disfavoredOverload
    public init(metricName: some StringProtocol) {
        self.init(metricName: String(metricName))
    }

    /// The category of a metric name, from its UTF-8 bytes: a shipper asks this for every record.
    public init(metricName: String) {
        var name = metricName
        self = name.withUTF8 { Self.category(ofName: $0) }
    }

    private static func category(ofName bytes: UnsafeBufferPointer<UInt8>) -> MetricCategory {
        let end = bytes.firstIndex(of: 0x5F) ?? bytes.count
        for (utf8, category) in named where utf8.count == end {
            var index = 0
            while index < end && utf8[index] == bytes[index] { index += 1 }
            if index == end { return category }
        }
        return .custom
    }

    /// The five categories of the design by name (never `custom`).
    private static let named: [(utf8: [UInt8], category: MetricCategory)] = allCases.filter { $0 != .custom }.map {
        (Array($0.rawValue.utf8), $0)
    }

    /// `agent.metrics.{category}.v1`, with an optional prefix replacing `agent.metrics`.
    public func topic(prefix: String = "agent.metrics") -> String { "\(prefix).\(rawValue).v1" }

    /// `agent_{category}_metrics`.
    public var table: String { "agent_\(rawValue)_metrics" }
}
