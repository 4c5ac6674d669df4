/// Which metric records a reader keeps: the filters of `walctl inspect --records`, `replay`, `tail` and `stats`.
/// Every condition given must hold; an empty filter keeps everything.
public struct RecordFilter: Sendable, Equatable {
    /// Inclusive sequence range.
    public var fromSeq: UInt64 = 1
    public var toSeq: UInt64 = .max
    /// Inclusive emit-time range, nanoseconds since the Unix epoch.
    public var sinceNanos: Int64 = .min
    public var untilNanos: Int64 = .max
    /// Metric names; a name ending in `*` matches by prefix (`routing_*`). Empty: any metric.
    public var metrics: [String] = []
    /// Tags every kept record carries, with these values.
    public var tags: [String: String] = [:]
    public var agentID: String?
    public var correlationID: String?

    public init() {}

    /// True when the record passes every condition.
    public func matches(_ record: MetricRecord) -> Bool {
        guard record.seq >= fromSeq, record.seq <= toSeq,
            record.timestampNanos >= sinceNanos, record.timestampNanos <= untilNanos
        else { return false }
        if let agentID, record.agentID != agentID { return false }
        if let correlationID, record.correlationID != correlationID { return false }
        if !metrics.isEmpty && !metrics.contains(where: { Self.nameMatches(record.name, pattern: $0) }) {
            return false
        }
        for (key, value) in tags where record.tags[key] != value { return false }
        return true
    }

    /// True when nothing after `seq` can match (reading may stop).
    public func isPast(_ seq: UInt64) -> Bool { seq > toSeq }

    static func nameMatches(_ name: String, pattern: String) -> Bool {
        if pattern.hasSuffix("*") { return name.hasPrefix(pattern.dropLast()) }
        return name == pattern
    }

    /// Parses `key=value`; nil when there is no `=` or the key is empty.
    public static func tag(_ assignment: String) -> (key: String, value: String)? {
        guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else { return nil }
        return (String(assignment[..<equals]), String(assignment[assignment.index(after: equals)...]))
    }
}
