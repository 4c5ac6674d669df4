import WALCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Settings of a `MetricsCollector`, in code or from the environment of an agent.
public struct MetricsConfiguration: Sendable {
    /// When false every emit is a no-op returning `.disabled` (nothing is opened or written).
    public var enabled = true
    /// The log directory.
    public var directory: String
    /// The agent id stored with every record unless a call gives another.
    public var agentID: String?
    /// `source_service` of the envelope: a property of the log, recorded in `metrics.symbols` when the log is
    /// created (1 to 27 bytes of UTF-8); opening an existing log with another value is refused.
    public var sourceService = Envelope.defaultSourceService
    /// The log's settings: durability, size limit, whenFull policy, retention.
    public var log = WALConfiguration()
    /// Records per shipping batch (used by the shippers). Default 100, as in the design.
    public var batchSize = 100
    /// Longest wait before a partial batch is shipped, in milliseconds. Default 1000, as in the design.
    public var flushIntervalMilliseconds = 1000

    public init(directory: String, agentID: String? = nil) {
        self.directory = directory
        self.agentID = agentID
    }

    /// Reads `METRICS_ENABLED`, `METRICS_DIR`, `METRICS_AGENT_ID`, `METRICS_DURABILITY`, `METRICS_MAX_BYTES`,
    /// `METRICS_WHEN_FULL`, `METRICS_BATCH_SIZE`, `METRICS_FLUSH_INTERVAL_MS` (and `METRICS_SOURCE_SERVICE`).
    /// An invalid value is an error naming the variable and the values it accepts.
    public static func fromEnvironment(
        _ environment: [String: String] = currentEnvironment()
    ) throws(MetricsError)
        -> MetricsConfiguration
    {
        func value(_ name: String) -> String? {
            guard let text = environment[name]?.trimmingWhitespace(), !text.isEmpty else { return nil }
            return text
        }
        func invalid(_ name: String, _ text: String, _ accepted: String) -> MetricsError {
            MetricsError(.invalidConfiguration, "\(name)=\(text) is invalid; accepted: \(accepted)")
        }
        var enabled = true
        if let text = value("METRICS_ENABLED") {
            switch text.lowercased() {
            case "true", "1", "yes", "on": enabled = true
            case "false", "0", "no", "off": enabled = false
            default: throw invalid("METRICS_ENABLED", text, "true, false, 1, 0, yes, no, on, off")
            }
        }
        let directory = value("METRICS_DIR")
        if enabled && directory == nil {
            throw MetricsError(
                .invalidConfiguration,
                "METRICS_DIR is required (the log directory) when metrics are enabled"
            )
        }
        var configuration = MetricsConfiguration(directory: directory ?? "", agentID: value("METRICS_AGENT_ID"))
        configuration.enabled = enabled
        if let agent = configuration.agentID, Validation.checkID(agent, reason: .invalidAgentID) != nil {
            throw invalid("METRICS_AGENT_ID", agent, "1 to 100 bytes without NUL")
        }
        if let service = value("METRICS_SOURCE_SERVICE") {
            guard Validation.isValidSourceService(service) else {
                throw invalid("METRICS_SOURCE_SERVICE", service, "1 to 27 bytes of UTF-8 without control characters")
            }
            configuration.sourceService = service
        }
        if let text = value("METRICS_DURABILITY") {
            let longest = WALConfiguration.maxPeriodicMilliseconds
            let accepted = "process, periodic:MS (MS from 1 to \(longest)), sync"
            guard let durability = Durability(parsing: text) else {
                throw invalid("METRICS_DURABILITY", text, accepted)
            }
            if case .periodic(let ms) = durability, ms > longest { throw invalid("METRICS_DURABILITY", text, accepted) }
            configuration.log.durability = durability
        }
        if let text = value("METRICS_MAX_BYTES") {
            guard let bytes = parseByteSize(text), bytes > 0 else {
                throw invalid(
                    "METRICS_MAX_BYTES",
                    text,
                    "a positive byte count, optionally with K, M or G (1024-based)"
                )
            }
            configuration.log.maxTotalBytes = bytes
        }
        if let text = value("METRICS_WHEN_FULL") {
            switch text.lowercased() {
            case "drop", "drop-newest", "dropnewest", "drop_newest": configuration.log.whenFull = .dropNewest
            default:
                let longest = WALConfiguration.maxBlockMilliseconds
                guard text.lowercased().hasPrefix("block:"), let ms = Int(text.dropFirst(6)), ms >= 0, ms <= longest
                else {
                    throw invalid("METRICS_WHEN_FULL", text, "drop-newest, block:MS (MS from 0 to \(longest))")
                }
                configuration.log.whenFull = .block(timeoutMilliseconds: ms)
            }
        }
        if let text = value("METRICS_BATCH_SIZE") {
            guard let size = Int(text), size >= 1, size <= 100_000 else {
                throw invalid("METRICS_BATCH_SIZE", text, "an integer from 1 to 100000")
            }
            configuration.batchSize = size
        }
        if let text = value("METRICS_FLUSH_INTERVAL_MS") {
            guard let ms = Int(text), ms >= 1, ms <= 3_600_000 else {
                throw invalid("METRICS_FLUSH_INTERVAL_MS", text, "an integer from 1 to 3600000")
            }
            configuration.flushIntervalMilliseconds = ms
        }
        do throws(WALError) { try configuration.log.validate() } catch {
            throw MetricsError(.invalidConfiguration, "log settings: \(error.message)")
        }
        return configuration
    }

    /// `1048576`, `512K`, `64M`, `2G` (1024-based; a trailing `B` or `iB` is accepted).
    static func parseByteSize(_ text: String) -> Int64? {
        var digits = Substring(text.uppercased())
        for suffix in ["IB", "B"] where digits.hasSuffix(suffix) { digits = digits.dropLast(suffix.count) }
        var multiplier: Int64 = 1
        switch digits.last {
        case "K": multiplier = 1 << 10
        case "M": multiplier = 1 << 20
        case "G": multiplier = 1 << 30
        case "T": multiplier = 1 << 40
        default: break
        }
        if multiplier > 1 { digits = digits.dropLast() }
        guard let number = Int64(digits), number >= 0 else { return nil }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}

/// The process environment, as a dictionary.
public func currentEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return result
}
