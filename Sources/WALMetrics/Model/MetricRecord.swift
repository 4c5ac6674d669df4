import WALCore

/// One metric as read back from the log.
public struct MetricRecord: Sendable, Equatable {
    /// The record's sequence number in its log.
    public var seq: UInt64
    public var name: String
    public var type: MetricType
    public var value: Double
    public var unit: String
    public var tags: [String: String]
    /// Wall-clock time of the emit, nanoseconds since the Unix epoch (UTC).
    public var timestampNanos: Int64
    public var correlationID: String?
    public var agentID: String?

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

    public var category: MetricCategory { MetricCategory(metricName: name) }

    /// The design's `metric_id`: the catalog id (`route_001`), or `custom_` and a hash of the name.
    public var metricID: String { MetricCatalog.metricID(for: name) }
}
