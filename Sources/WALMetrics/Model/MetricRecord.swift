import WALCore

/// One metric as read back from the log.
public struct MetricRecord: Sendable, Equatable {
    /// The record's sequence number in its log.
    public var seq: UInt64
    public var name: String { didSet { symbols = nil } }
    public var type: MetricType { didSet { symbols = nil } }
    public var value: Double
    public var unit: String { didSet { symbols = nil } }
    public var tags: [String: String] { didSet { symbols = nil } }
    /// Wall-clock time of the emit, nanoseconds since the Unix epoch (UTC).
    public var timestampNanos: Int64
    public var correlationID: String?
    public var agentID: String? { didSet { symbols = nil } }

    /// The symbol ids of the record's metric, tag set and agent in its log's symbol table.
    package struct Symbols: Sendable, Hashable {
        package var metric: UInt32
        package var tagSet: UInt32
        package var agent: UInt32
    }

    /// The symbols the record was decoded from (`MetricsDecoder`), nil for a record built otherwise or changed
    /// since in any of the fields they stand for: `EnvelopeStream` renders what they share once. Not part of the
    /// record's value (`==` ignores it).
    package var symbols: Symbols?

    public init(
        seq: UInt64,
        name: String,
        type: MetricType,
        value: Double,
        unit: String,
        tags: [String: String],
        timestampNanos: Int64,
        correlationID: String?,
        agentID: String?
    ) {
        self.seq = seq
        self.name = name
        self.type = type
        self.value = value
        self.unit = unit
        self.tags = tags
        self.timestampNanos = timestampNanos
        self.correlationID = correlationID
        self.agentID = agentID
    }

    public static func == (lhs: MetricRecord, rhs: MetricRecord) -> Bool {
        lhs.seq == rhs.seq && lhs.name == rhs.name && lhs.type == rhs.type && lhs.value == rhs.value
            && lhs.unit == rhs.unit && lhs.tags == rhs.tags && lhs.timestampNanos == rhs.timestampNanos
            && lhs.correlationID == rhs.correlationID && lhs.agentID == rhs.agentID
    }

    public var category: MetricCategory { MetricCategory(metricName: name) }

    /// The design's `metric_id`: the catalog id (`route_001`), or `custom_` and a hash of the name.
    public var metricID: String { MetricCatalog.metricID(for: name) }
}
