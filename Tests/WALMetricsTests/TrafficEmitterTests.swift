import Foundation
import Testing
import WALMetrics
import WALTestKit
@testable import WALTraffic

/// The cheap traffic path of `walctl emit`: the same events as before, recorded through handles.
@Suite struct TrafficEmitterTests {
    /// Events drawn by numbers (`draw`) and spelled out (`event`) are what the generator gave before it drew by
    /// numbers: the reference below is the earlier code, kept verbatim. Logs written before still check out.
    @Test func eventsAreThoseOfTheEarlierGenerator() {
        for thread in 0..<3 {
            let traffic = AgentTraffic(thread: thread)
            for counter in UInt64(0)..<5000 {
                #expect(traffic.event(counter) == Self.reference(thread: thread, counter: counter))
            }
        }
    }

    /// Every record the emitter writes decodes to the event of its counter, field for field, and the log's
    /// symbols are the same as by name (a handle interns what a record by name would).
    @Test func emitterRecordsDecodeToTheirEvents() throws {
        try withTemporaryDirectory { directory in
            let byHandle = directory.file("handles")
            let byName = directory.file("names")
            let count: UInt64 = 3000
            for (path, viaHandles) in [(byHandle, true), (byName, false)] {
                let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
                let emitters = (0..<2).map { TrafficEmitter(traffic: AgentTraffic(thread: $0), collector: collector) }
                for counter in 0..<count {
                    for thread in 0..<2 {
                        let result =
                            viaHandles
                            ? emitters[thread].emit(counter)
                            : AgentTraffic(thread: thread).emit(counter, into: collector)
                        guard case .recorded = result else {
                            Issue.record("\(result)")
                            return
                        }
                    }
                }
                #expect(collector.statistics.rejectedTotal == 0)
                try collector.close()
            }
            let records = try readMetrics(byHandle)
            #expect(records.count == Int(count) * 2)
            for (index, record) in records.enumerated() {
                let event = AgentTraffic(thread: index % 2).event(UInt64(index / 2))
                #expect(record.name == event.definition.name)
                #expect(record.value == event.value)
                #expect(record.tags == event.tags)
                #expect(record.agentID == event.agentID)
                #expect(record.correlationID == event.correlationID)
            }
            let symbols = { (path: String) in try Data(contentsOf: URL(fileURLWithPath: path + "/metrics.symbols")) }
            // Same symbols in the same order; the headers differ only by the log id.
            #expect(try symbols(byHandle).count == symbols(byName).count)
        }
    }

    /// The prepare / record split that `walctl emit` times gives the same records as `emit`.
    @Test func preparedEventsRecordInOrder() throws {
        try withTemporaryDirectory { directory in
            let path = directory.file("log")
            let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
            let emitter = TrafficEmitter(traffic: AgentTraffic(thread: 5), collector: collector)
            for counter in UInt64(0)..<100 {
                let prepared = emitter.prepare(counter)
                guard case .recorded(let seq) = emitter.record(prepared) else {
                    Issue.record("not recorded")
                    return
                }
                #expect(seq == counter + 1)
            }
            try collector.close()
            let records = try readMetrics(path)
            #expect(records.map(\.agentID) == (0..<100).map { AgentTraffic(thread: 5).event(UInt64($0)).agentID })
        }
    }

    /// The generator as it was before it drew by numbers (commit 8fc0a4a), for the comparison above.
    static func reference(thread: Int, counter: UInt64) -> AgentTraffic.Event {
        let workflow = counter / 16
        let step = Int(counter % 16)
        var shared = SplitMix(seed: UInt64(thread) &* 0x9E37_79B9_7F4A_7C15 ^ workflow &* 0xD1B5_4A32_D192_ED03)
        let type = Int(shared.next() % UInt64(AgentTraffic.workflows.count))
        let definition = MetricCatalog.all[AgentTraffic.workflows[type][step]]
        let category = definition.category
        var tags: [String: String] = [:]
        let keys = MetricCatalog.tags[category] ?? []
        let values = AgentTraffic.tagValues[category] ?? []
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
        case (.timing, _): value = (0.5 + 40 * unit * unit * unit * 5 * random.unit()).roundedTo(places: 3)
        case (.counter, _): value = Double(1 + random.next() % 8)
        case (.rate, _): value = (60 + 40 * unit).roundedTo(places: 2)
        case (.gauge, "0-1"): value = (0.5 + 0.5 * unit).roundedTo(places: 4)
        case (.gauge, "KB"): value = (10 + 900 * unit).roundedTo(places: 1)
        case (.gauge, "ratio"): value = (1 + 3 * unit).roundedTo(places: 2)
        case (.gauge, _): value = Double(1 + random.next() % 12)
        }
        return AgentTraffic.Event(
            definition: definition,
            value: value,
            tags: tags,
            agentID: agent,
            correlationID: correlationID
        )
    }
}
