import Foundation
import WALCore
import WALMetrics

/// Realistic, deterministic agent traffic over the 25 catalog metrics: what `walctl emit` and `walctl demo` write,
/// and what tests regenerate to check every decoded field.
///
/// Emitter `thread` plays four agents (`agent-T-0` ... `agent-T-3`) running workflows of 16 metric calls each; event
/// `counter` of a thread is a pure function of (thread, counter): metric, value, the design's tags for its category,
/// agent id, and the workflow's correlation id (a UUID).
public struct AgentTraffic: Sendable {
    public let thread: Int

    public init(thread: Int) { self.thread = thread }

    public struct Event: Sendable, Equatable {
        public var definition: MetricDefinition
        public var value: Double
        public var tags: [String: String]
        public var agentID: String
        public var correlationID: String
    }

    static let tagValues: [MetricCategory: [[String]]] = [
        .routing: [
            ["code_generator", "reviewer", "planner", "tester"], ["smart", "round_robin", "capability", "fallback"],
            ["hit", "miss"], ["high", "medium", "low"],
        ],
        .state: [
            ["get", "set", "delete", "snapshot"], ["session", "workflow", "agent", "cache"],
            ["lt_1ms", "1_5ms", "gt_5ms"],
            ["none", "low", "high"],
        ],
        .coordination: [
            ["parallel", "sequential", "barrier"], ["2", "3", "4", "6", "8"], ["start", "checkpoint", "merge", "end"],
            ["data", "control", "resource"],
        ],
        .workflow: [
            ["codegen", "review", "test", "deploy"], ["4", "8", "12", "20"], ["serial", "parallel"],
            ["none", "timeout", "validation", "model"],
        ],
        .quorum: [
            ["majority", "unanimous", "weighted"], ["3", "5", "7"], ["strong", "weak", "none"],
            ["pass", "fail", "retry"],
        ],
    ]

    /// Four workflow types, each a fixed sequence of 16 metric calls (a code path); together they use all 25.
    static let workflows: [[Int]] = [
        [0, 3, 5, 6, 8, 10, 11, 12, 13, 15, 16, 17, 0, 5, 6, 8],
        [0, 1, 2, 4, 5, 9, 14, 15, 16, 18, 19, 0, 2, 5, 6, 17],
        [0, 3, 5, 20, 21, 22, 23, 24, 22, 21, 5, 6, 7, 15, 16, 17],
        [1, 2, 5, 6, 7, 8, 10, 12, 13, 14, 15, 18, 19, 20, 22, 17],
    ]

    /// Event `counter` of this thread: event `counter % 16` of workflow `counter / 16`.
    ///
    /// A workflow has one agent, one correlation id and one set of tag values per category; its metric calls follow
    /// its type's fixed sequence; values are drawn per event.
    public func event(_ counter: UInt64) -> Event {
        let draw = draw(counter)
        let shape = Self.shapes[draw.metric]
        var tags: [String: String] = [:]
        var combination = draw.tagCombination
        for index in shape.keys.indices.reversed() {
            let choices = shape.values[index]
            tags[shape.keys[index]] = choices[combination % choices.count]
            combination /= choices.count
        }
        return Event(
            definition: shape.definition,
            value: draw.value,
            tags: tags,
            agentID: "agent-\(thread)-\(draw.agent)",
            correlationID: uuidText(draw.correlation.high, draw.correlation.low)
        )
    }

    /// What decides event `counter`, as indices and numbers (no allocation): `event(_:)` spells it out in strings,
    /// `TrafficEmitter` records it through handles made once.
    struct Draw {
        /// Index into `MetricCatalog.all` (and `shapes`).
        var metric: Int
        /// The tag values, as a mixed-radix number over the metric's tag keys (first key most significant).
        var tagCombination: Int
        /// The agent `agent-T-k`: k, 0 to 3.
        var agent: Int
        /// The correlation id, a version 4 UUID, as its two big-endian halves.
        var correlation: (high: UInt64, low: UInt64)
        var value: Double
    }

    /// A catalog metric as the generator sees it, resolved once: its category's tag keys and value lists.
    struct Shape: Sendable {
        var definition: MetricDefinition
        var keys: [String]
        var values: [[String]]
        /// Mixed `shared.next()` into the seed of the tag draw.
        var salt: UInt64
        var valueKind: ValueKind
        /// How many tag combinations the metric has.
        var combinations: Int
    }

    enum ValueKind: Sendable { case timing, counter, rate, fraction, kilobytes, ratio, count }

    static let shapes: [Shape] = MetricCatalog.all.map { definition in
        let category = definition.category
        let keys = MetricCatalog.tags[category] ?? []
        let values = tagValues[category] ?? []
        let used = min(keys.count, values.count)
        let kind: ValueKind
        switch (definition.type, definition.unit) {
        case (.timing, _): kind = .timing
        case (.counter, _): kind = .counter
        case (.rate, _): kind = .rate
        case (.gauge, "0-1"): kind = .fraction
        case (.gauge, "KB"): kind = .kilobytes
        case (.gauge, "ratio"): kind = .ratio
        case (.gauge, _): kind = .count
        }
        return Shape(
            definition: definition,
            keys: Array(keys.prefix(used)),
            values: Array(values.prefix(used)),
            salt: UInt64(category.rawValue.utf8.count),
            valueKind: kind,
            combinations: values.prefix(used).reduce(1) { $0 * $1.count }
        )
    }

    /// The numbers `draw` needs, flat (no reference counting on the hot path): per metric, its salt, value kind
    /// and the number of choices of each tag key (0 past the last key).
    struct DrawTable: Sendable {
        static let maxKeys = 4
        var salts: [UInt64] = []
        var kinds: [ValueKind] = []
        var choiceCounts: [Int] = []
        /// `workflows`, flat: 16 metric indices per workflow type.
        var steps: [Int] = []

        /// A copy with buffers of its own.
        func copied() -> DrawTable {
            DrawTable(
                salts: salts.map { $0 },
                kinds: kinds.map { $0 },
                choiceCounts: choiceCounts.map { $0 },
                steps: steps.map { $0 }
            )
        }
    }

    static let table: DrawTable = {
        var table = DrawTable()
        for shape in shapes {
            precondition(shape.values.count <= DrawTable.maxKeys)
            table.salts.append(shape.salt)
            table.kinds.append(shape.valueKind)
            for index in 0..<DrawTable.maxKeys {
                table.choiceCounts.append(index < shape.values.count ? shape.values[index].count : 0)
            }
        }
        table.steps = workflows.flatMap { $0 }
        return table
    }()

    /// Draws event `counter` using `table` (a copy of `Self.table` private to the caller's thread avoids sharing its
    /// reference counts between threads).
    @inline(__always)
    func draw(_ counter: UInt64, table: borrowing DrawTable = Self.table) -> Draw {
        let workflow = counter / 16
        let step = Int(counter % 16)
        var shared = SplitMix(seed: UInt64(thread) &* 0x9E37_79B9_7F4A_7C15 ^ workflow &* 0xD1B5_4A32_D192_ED03)
        let type = Int(shared.next() % UInt64(table.steps.count / 16))
        let metric = table.steps[type * 16 + step]
        var tagRandom = SplitMix(seed: shared.next() ^ table.salts[metric])
        var combination = 0
        for index in 0..<DrawTable.maxKeys {
            let count = table.choiceCounts[metric * DrawTable.maxKeys + index]
            guard count > 0 else { break }
            combination = combination * count + Int(tagRandom.next() % UInt64(count))
        }
        let agent = Int(shared.next() % 4)
        let high = (shared.next() & ~0xF000) | 0x4000
        let low = (shared.next() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        var random = SplitMix(seed: UInt64(thread) &* 0x94D0_49BB_1331_11EB ^ counter)
        let unit = random.unit()
        let value: Double
        switch table.kinds[metric] {
        case .timing:
            // Mostly fast, with a long tail: about 0.5 to 200 ms, three decimals.
            value = (0.5 + 40 * unit * unit * unit * 5 * random.unit()).roundedTo(places: 3)
        case .counter:
            value = Double(1 + random.next() % 8)
        case .rate:
            value = (60 + 40 * unit).roundedTo(places: 2)
        case .fraction:
            value = (0.5 + 0.5 * unit).roundedTo(places: 4)
        case .kilobytes:
            value = (10 + 900 * unit).roundedTo(places: 1)
        case .ratio:
            value = (1 + 3 * unit).roundedTo(places: 2)
        case .count:
            value = Double(1 + random.next() % 12)
        }
        return Draw(metric: metric, tagCombination: combination, agent: agent, correlation: (high, low), value: value)
    }

    /// The harshest catalog traffic: every event drawn independently (metric, tag values, agent; a correlation id
    /// per 16 events), for the worst case of bytes per record.
    public func independentEvent(_ counter: UInt64) -> Event {
        var random = SplitMix(seed: UInt64(thread) &* 0x9E37_79B9_7F4A_7C15 ^ counter &* 0xA24B_AED4_963E_E407)
        var event = self.event(counter)
        event.definition = MetricCatalog.all[Int(random.next() % UInt64(MetricCatalog.all.count))]
        let keys = MetricCatalog.tags[event.definition.category] ?? []
        let values = Self.tagValues[event.definition.category] ?? []
        event.tags = [:]
        for (index, key) in keys.enumerated() where index < values.count {
            event.tags[key] = values[index][Int(random.next() % UInt64(values[index].count))]
        }
        event.agentID = "agent-\(thread)-\(random.next() % 4)"
        return event
    }

    /// Records event `counter` through `collector`.
    @discardableResult
    public func emit(_ counter: UInt64, into collector: MetricsCollector) -> EmitResult {
        let event = event(counter)
        return collector.record(
            event.definition,
            value: event.value,
            tags: event.tags,
            correlationID: event.correlationID,
            agentID: event.agentID
        )
    }

    /// The emitting thread of a decoded record, from its agent id (`agent-T-k`).
    public static func thread(ofAgent agent: String?) -> Int? {
        guard let agent, agent.hasPrefix("agent-") else { return nil }
        let parts = agent.split(separator: "-")
        guard parts.count == 3 else { return nil }
        return Int(parts[1])
    }
}

/// SplitMix64: a small, fast, deterministic generator.
package struct SplitMix: Sendable {
    package var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    package mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

func uuidText(_ high: UInt64, _ low: UInt64) -> String {
    var high = high
    var low = low
    high = (high & ~0xF000) | 0x4000
    low = (low & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
    func hex(_ value: UInt64, _ digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
    return hex(high >> 32, 8) + "-" + hex(high >> 16 & 0xFFFF, 4) + "-" + hex(high & 0xFFFF, 4) + "-"
        + hex(low >> 48, 4) + "-" + hex(low & 0xFFFF_FFFF_FFFF, 12)
}

extension Double {
    @inline(__always)
    func roundedTo(places: Int) -> Double {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        return (self * scale).rounded() / scale
    }
}
