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
        let workflow = counter / 16
        let step = Int(counter % 16)
        var shared = SplitMix(seed: UInt64(thread) &* 0x9E37_79B9_7F4A_7C15 ^ workflow &* 0xD1B5_4A32_D192_ED03)
        let type = Int(shared.next() % UInt64(Self.workflows.count))
        let definition = MetricCatalog.all[Self.workflows[type][step]]
        let category = definition.category
        var tags: [String: String] = [:]
        let keys = MetricCatalog.tags[category] ?? []
        let values = Self.tagValues[category] ?? []
        var tagRandom = SplitMix(seed: shared.next() ^ UInt64(category.rawValue.utf8.count))
        for (index, key) in keys.enumerated() where index < values.count {
            let choices = values[index]
            tags[key] = choices[Int(tagRandom.next() % UInt64(choices.count))]
        }
        let agent = "agent-\(thread)-\(shared.next() % 4)"
        let correlationID = uuidText(shared.next(), shared.next())
        var random = SplitMix(seed: UInt64(thread) &* 0x94D0_49BB_1331_11EB ^ counter)
        let unit = random.unit()
        let value: Double
        switch (definition.type, definition.unit) {
        case (.timing, _):
            // Mostly fast, with a long tail: about 0.5 to 200 ms, three decimals.
            value = (0.5 + 40 * unit * unit * unit * 5 * random.unit()).roundedTo(places: 3)
        case (.counter, _):
            value = Double(1 + random.next() % 8)
        case (.rate, _):
            value = (60 + 40 * unit).roundedTo(places: 2)
        case (.gauge, "0-1"):
            value = (0.5 + 0.5 * unit).roundedTo(places: 4)
        case (.gauge, "KB"):
            value = (10 + 900 * unit).roundedTo(places: 1)
        case (.gauge, "ratio"):
            value = (1 + 3 * unit).roundedTo(places: 2)
        case (.gauge, _):
            value = Double(1 + random.next() % 12)
        }
        return Event(definition: definition, value: value, tags: tags, agentID: agent, correlationID: correlationID)
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
    func roundedTo(places: Int) -> Double {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        return (self * scale).rounded() / scale
    }
}
