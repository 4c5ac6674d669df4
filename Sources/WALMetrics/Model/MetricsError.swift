/// Errors of the metrics layer (opening, configuration, decoding). Rejected emits are not errors: they return
/// `EmitResult.rejected` and are counted.
public struct MetricsError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case io, corrupt, invalidConfiguration, invalidMetric, symbolTableFull, closed
    }

    public var code: Code
    public var message: String
    /// For `.invalidMetric` from `MetricsCollector.handle`: the reason the metric was refused.
    public var rejection: RejectionReason?

    public init(_ code: Code, _ message: String, rejection: RejectionReason? = nil) {
        self.code = code
        self.message = message
        self.rejection = rejection
    }

    public var description: String { message }
}

/// Why an emit was refused. Every refusal is counted in `MetricsCollector.statistics`.
public enum RejectionReason: String, Error, Sendable, CaseIterable, Codable {
    /// Not `{category}_{metric}_{unit}` in lower snake case (2 or more words, 3 to 100 bytes).
    case invalidName = "invalid_name"
    /// NaN or infinite.
    case nonFiniteValue = "non_finite_value"
    /// More than 16 tags.
    case tooManyTags = "too_many_tags"
    /// A tag key not in lower snake case (1 to 64 bytes).
    case invalidTagKey = "invalid_tag_key"
    /// A tag value over 256 bytes.
    case tagValueTooLong = "tag_value_too_long"
    /// A unit empty or over 20 bytes.
    case invalidUnit = "invalid_unit"
    /// A correlation id empty or over 100 bytes.
    case invalidCorrelationID = "invalid_correlation_id"
    /// An agent id empty or over 100 bytes.
    case invalidAgentID = "invalid_agent_id"
    /// A NUL character in a string (PostgreSQL text cannot hold it).
    case nulCharacter = "nul_character"
    /// The same name already recorded with another type or unit.
    case conflictingDefinition = "conflicting_definition"
    /// The symbol table is full (more than a million distinct strings: tag values should not be unique ids).
    case symbolTableFull = "symbol_table_full"
    /// The log could not take the record (closed, I/O error).
    case logUnavailable = "log_unavailable"
}

/// What an emit did.
public enum EmitResult: Sendable, Equatable {
    /// Durable in the log under this sequence number (see `Durability`).
    case recorded(seq: UInt64)
    /// Refused before reaching the log, for this reason; counted.
    case rejected(RejectionReason)
    /// Dropped by the log's `whenFull` policy: counted, and recorded in the log as a gap marker.
    case dropped(seq: UInt64)
    /// `METRICS_ENABLED=false`: nothing was done.
    case disabled

    public var isRecorded: Bool {
        if case .recorded = self { return true }
        return false
    }
}

/// The validation rules applied at emit. Cheap checks only; they run once per distinct name, unit or tag set
/// (interned values are known valid), and per call for the value and ids.
enum Validation {
    static let maxNameBytes = 100
    static let maxTags = 16
    static let maxTagKeyBytes = 64
    static let maxTagValueBytes = 256
    static let maxUnitBytes = 20
    static let maxIDBytes = 100

    /// `[a-z][a-z0-9]*(_[a-z0-9]+)+`, 3 to 100 bytes.
    static func isValidName(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard utf8.count >= 3, utf8.count <= maxNameBytes else { return false }
        var previous: UInt8 = 0x5F
        var underscores = 0
        for (index, byte) in utf8.enumerated() {
            let lower = byte >= 0x61 && byte <= 0x7A
            let digit = byte >= 0x30 && byte <= 0x39
            if byte == 0x5F {
                guard previous != 0x5F else { return false }
                underscores += 1
            } else if index == 0 {
                guard lower else { return false }
            } else {
                guard lower || digit else { return false }
            }
            previous = byte
        }
        return underscores >= 1 && previous != 0x5F
    }

    /// `[a-z][a-z0-9_]*`, 1 to 64 bytes.
    static func isValidTagKey(_ key: String) -> Bool {
        let utf8 = key.utf8
        guard let first = utf8.first, utf8.count <= maxTagKeyBytes, first >= 0x61, first <= 0x7A else { return false }
        return utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    static func hasNul(_ text: String) -> Bool { text.utf8.contains(0) }

    static func checkID(_ id: String, reason: RejectionReason) -> RejectionReason? {
        let count = id.utf8.count
        if count == 0 || count > maxIDBytes { return reason }
        if hasNul(id) { return .nulCharacter }
        return nil
    }

    /// A source service a log can record (wal-format.md 13.4): 1 to 27 bytes of UTF-8 without control characters.
    static func isValidSourceService(_ service: String) -> Bool {
        !service.isEmpty && service.utf8.count <= SymbolFileFormat.maxSourceServiceBytes
            && !service.unicodeScalars.contains(where: { $0.value < 0x20 })
    }

    static func checkTags(_ tags: [String: String]) -> RejectionReason? {
        guard tags.count <= maxTags else { return .tooManyTags }
        for (key, value) in tags {
            guard isValidTagKey(key) else { return .invalidTagKey }
            guard value.utf8.count <= maxTagValueBytes else { return .tagValueTooLong }
            if hasNul(value) { return .nulCharacter }
        }
        return nil
    }

    static func checkUnit(_ unit: String) -> RejectionReason? {
        let count = unit.utf8.count
        if count == 0 || count > maxUnitBytes { return .invalidUnit }
        return hasNul(unit) ? .nulCharacter : nil
    }
}
