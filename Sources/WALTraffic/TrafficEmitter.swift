import WALMetrics

/// One thread's `AgentTraffic`, recorded cheaply: the same records as `AgentTraffic.emit` (metric, tags, agent,
/// correlation id, value: a test that regenerates `event(_:)` finds every field), but through handles made once per
/// metric, agent and tag combination, with the correlation id passed as numbers. What is left per record is a few
/// SplitMix draws (`prepare`) and one handle emit (`record`), so a run measures the collector, not the generator.
///
/// Not thread-safe: one emitter per emitting thread.
public final class TrafficEmitter {
    public let traffic: AgentTraffic
    public let collector: MetricsCollector
    /// Per (metric, agent, tag combination): index into `handles` (their symbol ids: no reference to count per record); `unmade` until first used, `failed` when the
    /// collector would not make a handle (then the record goes by name, and is rejected or counted as it would be).
    private var slots: [Int32]
    private var handles: [MetricHandle.IDs] = []
    private let table = AgentTraffic.table.copied()
    private let slotBase = TrafficEmitter.sharedSlotBase.map { $0 }
    private let combinations = AgentTraffic.shapes.map(\.combinations)
    private static let unmade: Int32 = -1
    private static let failed: Int32 = -2

    /// Where each metric's slots start: metric `m`, agent `a`, combination `c` is slot
    /// `slotBase[m] + a * combinations(m) + c`.
    private static let sharedSlotBase: [Int] = {
        var bases: [Int] = []
        var next = 0
        for shape in AgentTraffic.shapes {
            bases.append(next)
            next += 4 * shape.combinations
        }
        bases.append(next)
        return bases
    }()

    public init(traffic: AgentTraffic, collector: MetricsCollector) {
        self.traffic = traffic
        self.collector = collector
        slots = [Int32](repeating: Self.unmade, count: Self.sharedSlotBase.last ?? 0)
    }

    /// Event `counter`, ready to record: the generator's share of the work.
    public struct Prepared {
        let counter: UInt64
        let slot: Int
        let value: Double
        let correlation: (high: UInt64, low: UInt64)
    }

    /// Draws event `counter` (no allocation, no lock).
    @inline(__always)
    public func prepare(_ counter: UInt64) -> Prepared {
        let draw = traffic.draw(counter, table: table)
        let slot = slotBase[draw.metric] + draw.agent * combinations[draw.metric] + draw.tagCombination
        return Prepared(counter: counter, slot: slot, value: draw.value, correlation: draw.correlation)
    }

    /// Records a prepared event: the collector's share (the first record of a combination also makes its handle).
    @inline(__always)
    @discardableResult
    public func record(_ event: Prepared) -> EmitResult {
        let index = slots[event.slot]
        if _fastPath(index >= 0) {
            return collector.record(handles[Int(index)], value: event.value, correlationUUID: event.correlation)
        }
        return recordSlowly(event)
    }

    /// Prepares and records event `counter`.
    @discardableResult
    public func emit(_ counter: UInt64) -> EmitResult { record(prepare(counter)) }

    @inline(never)
    private func recordSlowly(_ event: Prepared) -> EmitResult {
        if slots[event.slot] == Self.unmade {
            let full = traffic.event(event.counter)
            do {
                let handle = try collector.handle(full.definition, tags: full.tags, agentID: full.agentID)
                slots[event.slot] = Int32(handles.count)
                handles.append(handle.ids)
                return handle.record(event.value, correlationUUID: event.correlation)
            } catch {
                // Counted once, as a record by name would be; later records of the combination go by name.
                slots[event.slot] = Self.failed
                return .rejected(error.rejection ?? .logUnavailable)
            }
        }
        return traffic.emit(event.counter, into: collector)
    }
}
