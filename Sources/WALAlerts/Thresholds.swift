import WALMetrics
import Yams

/// How bad a threshold breach is. Ordered: `info < warning < critical`.
public enum Severity: String, Sendable, CaseIterable, Comparable, Codable {
    case info, warning, critical

    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }

    var rank: Int {
        switch self {
        case .info: return 0
        case .warning: return 1
        case .critical: return 2
        }
    }
}

/// Which side of a threshold is a breach: `above` (value > threshold) or `below` (value < threshold).
public enum Direction: String, Sendable, Codable {
    case above, below

    func breaches(_ value: Double, _ threshold: Double) -> Bool {
        self == .above ? value > threshold : value < threshold
    }
}

/// What a rule compares with its thresholds.
public enum Window: Sendable, Equatable, CustomStringConvertible {
    /// Each value as it arrives.
    case last
    /// An aggregate of the values emitted in the last `durationNanos` (by emit time), once there are at least
    /// `minSamples` of them.
    case aggregate(Aggregate, durationNanos: Int64, minSamples: Int)

    public enum Aggregate: String, Sendable, CaseIterable {
        case avg, p95, p99
    }

    public var description: String {
        switch self {
        case .last: return "last"
        case .aggregate(let kind, let duration, let minSamples):
            return "\(kind.rawValue) over \(DurationText.format(duration)) (at least \(minSamples) samples)"
        }
    }
}

/// One metric's thresholds.
public struct ThresholdRule: Sendable, Equatable {
    public var metric: String
    public var direction: Direction
    /// The threshold of each severity the rule has (at least one).
    public var levels: [Severity: Double]
    public var window: Window
    /// Only records carrying every one of these tags, with these values.
    public var tags: [String: String]
    /// After an alert of a severity, the same rule does not fire that severity again for this long (emit time);
    /// a higher severity still fires.
    public var cooldownNanos: Int64
    /// Where the rule is defined (1-based), for messages.
    public var line: Int

    public static let defaultCooldownNanos: Int64 = 60_000_000_000

    public init(
        metric: String,
        direction: Direction = .above,
        levels: [Severity: Double],
        window: Window = .last,
        tags: [String: String] = [:],
        cooldownNanos: Int64 = ThresholdRule.defaultCooldownNanos,
        line: Int = 0
    ) {
        self.metric = metric
        self.direction = direction
        self.levels = levels
        self.window = window
        self.tags = tags
        self.cooldownNanos = cooldownNanos
        self.line = line
    }

    /// The highest severity whose threshold `value` breaches, with that threshold.
    public func severity(of value: Double) -> (Severity, Double)? {
        for severity in Severity.allCases.reversed() {
            if let threshold = levels[severity], direction.breaches(value, threshold) { return (severity, threshold) }
        }
        return nil
    }
}

/// A thresholds file that cannot be used: the file, the line and column, and why.
public struct ThresholdError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var column: Int
    public var reason: String

    public var description: String { "\(path):\(line):\(column): \(reason)" }
}

/// A thresholds file (YAML), the design's `performance_thresholds.yaml` extended:
///
/// ```yaml
/// version: 1
/// metrics:
///   routing_decision_time_ms:
///     info: 20
///     warning: 50
///     critical: 100
///   routing_cache_hit_rate:
///     direction: below
///     warning: 60
///   state_get_time_ms:
///     warning: 10
///     window: {aggregate: p95, duration: 60s, min_samples: 20}
///     tags: {operation_type: get}
///     cooldown: 5m
/// ```
///
/// A metric may also take a list of such rules. Metric names of the design's five categories must be catalog names
/// (a typo is an error, not a rule that never fires); other names must be valid metric names.
public struct ThresholdFile: Sendable, Equatable {
    public var rules: [ThresholdRule]

    public init(rules: [ThresholdRule]) { self.rules = rules }

    /// Parses and validates `yaml`; `path` names the file in errors.
    public static func parse(yaml: String, path: String) throws(ThresholdError) -> ThresholdFile {
        if let (line, column) = YAMLDepth.firstExcess(in: yaml) {
            throw ThresholdError(
                path: path,
                line: line,
                column: column,
                reason: "nested deeper than \(YAMLDepth.limit) levels (a thresholds file needs four)"
            )
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ThresholdError(path: path, line: error.line, column: error.column, reason: error.reason)
        } catch {
            throw ThresholdError(path: path, line: 1, column: 1, reason: "not YAML: \(error)")
        }
        var parser = Parser(path: path)
        return ThresholdFile(rules: try parser.file(root))
    }

    /// Reads and parses a file.
    public static func load(path: String) throws(ThresholdError) -> ThresholdFile {
        guard let text = readText(path) else {
            throw ThresholdError(path: path, line: 0, column: 0, reason: "cannot read the file")
        }
        return try parse(yaml: text, path: path)
    }

    /// The design's defaults (see `DefaultThresholds.yaml`).
    public static var defaults: ThresholdFile {
        // The built-in text is checked by the tests; a failure here is a bug in this file, not in user input.
        (try? parse(yaml: DefaultThresholds.yaml, path: "built-in defaults")) ?? ThresholdFile(rules: [])
    }
}

// MARK: - Parsing

private struct Parser {
    let path: String

    func error(_ node: Node?, _ reason: String) -> ThresholdError {
        ThresholdError(path: path, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, reason: reason)
    }

    mutating func file(_ root: Node?) throws(ThresholdError) -> [ThresholdRule] {
        guard let root, let top = root.mapping else { throw error(root, "expected a mapping with `metrics:`") }
        try unique(top, in: nil)
        for (key, value) in top {
            switch key.string {
            case "version":
                guard value.int == 1 else { throw error(value, "unsupported version (this walctl reads version 1)") }
            case "metrics":
                break
            default:
                throw error(key, "unknown key \"\(key.string ?? "?")\" (expected version, metrics)")
            }
        }
        guard let metrics = top["metrics"] else { throw error(root, "missing `metrics:`") }
        guard let mapping = metrics.mapping else { throw error(metrics, "`metrics` must map metric names to rules") }
        try unique(mapping, in: "metrics")
        var rules: [ThresholdRule] = []
        for (key, value) in mapping {
            guard let name = key.string else { throw error(key, "a metric name must be a string") }
            try checkName(name, key)
            if let list = value.sequence {
                guard !list.isEmpty else { throw error(value, "\(name): an empty list of rules") }
                for item in list { rules.append(try rule(name, item)) }
            } else {
                rules.append(try rule(name, value))
            }
        }
        return rules
    }

    /// Refuses a key given twice in one mapping. YAML requires unique keys, but Yams keeps every pair and each field
    /// was read in turn, so the last one won silently: `direction: below` then `direction: above` flipped a rule.
    /// Only the mappings the parser reads are checked (an alias repeated many times is not walked again).
    func unique(_ mapping: Node.Mapping, in context: String?) throws(ThresholdError) {
        var seen: [String: Node] = [:]
        for key in mapping.keys {
            guard let text = key.string else { continue }  // a non-string key is refused where it is read
            if let earlier = seen[text] {
                let place = context.map { " in \($0)" } ?? ""
                throw error(
                    key,
                    "duplicate key \"\(text)\"\(place) (first at line \(earlier.mark?.line ?? 0)): "
                        + "a key may appear once in a mapping"
                )
            }
            seen[text] = key
        }
    }

    func checkName(_ name: String, _ node: Node) throws(ThresholdError) {
        guard MetricCatalog.isValidName(name) else {
            throw error(node, "\"\(name)\" is not a valid metric name ([a-z][a-z0-9]*(_[a-z0-9]+)+)")
        }
        if MetricCategory(metricName: name) != .custom && MetricCatalog.byName[name] == nil {
            throw error(node, "unknown metric \"\(name)\": not in the catalog of its category")
        }
    }

    func rule(_ name: String, _ node: Node) throws(ThresholdError) -> ThresholdRule {
        guard let fields = node.mapping else { throw error(node, "\(name): expected a mapping of thresholds") }
        try unique(fields, in: name)
        var rule = ThresholdRule(metric: name, levels: [:], line: node.mark?.line ?? 0)
        for (key, value) in fields {
            guard let field = key.string else { throw error(key, "\(name): keys must be strings") }
            switch field {
            case "info", "warning", "critical":
                guard let number = value.float, number.isFinite, value.scalar != nil else {
                    throw error(value, "\(name).\(field): expected a number")
                }
                rule.levels[Severity(rawValue: field) ?? .info] = number
            case "direction":
                guard let text = value.string, let direction = Direction(rawValue: text) else {
                    throw error(value, "\(name).direction: expected above or below")
                }
                rule.direction = direction
            case "window":
                rule.window = try window(name, value)
            case "tags":
                guard let tags = value.mapping else { throw error(value, "\(name).tags: expected key: value pairs") }
                try unique(tags, in: "\(name).tags")
                for (tagKey, tagValue) in tags {
                    guard let k = tagKey.string, let v = tagValue.string else {
                        throw error(tagKey, "\(name).tags: keys and values must be strings")
                    }
                    rule.tags[k] = v
                }
            case "cooldown":
                guard let text = value.string, let nanos = DurationText.parse(text) else {
                    throw error(value, "\(name).cooldown: expected a duration like 30s, 5m or 1h")
                }
                rule.cooldownNanos = nanos
            default:
                throw error(
                    key,
                    "\(name): unknown key \"\(field)\" (expected info, warning, critical, direction, window, tags, cooldown)"
                )
            }
        }
        guard !rule.levels.isEmpty else { throw error(node, "\(name): give at least one of info, warning, critical") }
        // Levels must grow worse in the rule's direction: for `above`, info <= warning <= critical.
        let ordered = Severity.allCases.compactMap { severity in rule.levels[severity].map { (severity, $0) } }
        for (lower, higher) in zip(ordered, ordered.dropFirst()) {
            let consistent = rule.direction == .above ? lower.1 <= higher.1 : lower.1 >= higher.1
            guard consistent else {
                throw error(
                    node,
                    "\(name): \(higher.0.rawValue) (\(higher.1)) must be \(rule.direction == .above ? "at least" : "at most") "
                        + "\(lower.0.rawValue) (\(lower.1)) when direction is \(rule.direction.rawValue)"
                )
            }
        }
        return rule
    }

    func window(_ name: String, _ node: Node) throws(ThresholdError) -> Window {
        if node.string == "last" { return .last }
        guard let fields = node.mapping else {
            throw error(
                node,
                "\(name).window: expected last, or {aggregate: avg|p95|p99, duration: 60s, min_samples: N}"
            )
        }
        try unique(fields, in: "\(name).window")
        var aggregate: Window.Aggregate?
        var duration: Int64?
        var minSamples = 1
        for (key, value) in fields {
            switch key.string {
            case "aggregate":
                guard let text = value.string, let kind = Window.Aggregate(rawValue: text) else {
                    throw error(value, "\(name).window.aggregate: expected avg, p95 or p99")
                }
                aggregate = kind
            case "duration":
                guard let text = value.string, let nanos = DurationText.parse(text), nanos > 0 else {
                    throw error(value, "\(name).window.duration: expected a duration like 30s, 5m or 1h")
                }
                duration = nanos
            case "min_samples":
                guard let count = value.int, count >= 1 else {
                    throw error(value, "\(name).window.min_samples: expected a positive integer")
                }
                minSamples = count
            default:
                throw error(key, "\(name).window: unknown key \"\(key.string ?? "?")\"")
            }
        }
        guard let aggregate, let duration else {
            throw error(node, "\(name).window: give both aggregate and duration")
        }
        return .aggregate(aggregate, durationNanos: duration, minSamples: minSamples)
    }
}

/// Durations in configuration and on the command line: `500ms`, `30s`, `5m`, `1h`, `1d`.
package enum DurationText {
    static let units: [(String, Int64)] = [
        ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ]

    /// Nanoseconds; nil for anything else than a whole number and one of the units.
    package static func parse(_ text: String) -> Int64? {
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard let amount = Int64(number), amount >= 0, amount <= Int64.max / scale else { return nil }
            return amount * scale
        }
        return nil
    }

    package static func format(_ nanos: Int64) -> String {
        for (suffix, scale) in units.reversed() where nanos >= scale && nanos % scale == 0 {
            return "\(nanos / scale)\(suffix)"
        }
        return "\(nanos / 1_000_000)ms"
    }
}

extension YamlError {
    var line: Int {
        switch self {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _): return mark.line
        default: return 1
        }
    }

    var column: Int {
        switch self {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _): return mark.column
        default: return 1
        }
    }

    var reason: String {
        switch self {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _): return "not valid YAML: \(problem)"
        default: return "not valid YAML: \(self)"
        }
    }
}

private func readText(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = fread(&buffer, 1, buffer.count, file)
        if n == 0 { break }
        bytes += buffer[0..<n]
        if bytes.count > 16 << 20 { return nil }
    }
    return String(decoding: bytes, as: UTF8.self)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
