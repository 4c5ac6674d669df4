import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit
import WALTraffic

/// The metrics path under SIGKILL: every acknowledged record decodes, field for field, after a crash.
@Suite(.serialized) struct MetricsCrashTests {
    @Test func acknowledgedMetricsDecodeExactlyAfterSIGKILL() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        var generator = SeededGenerator()
        var recoveredEnd: UInt64 = 0
        for trial in 0..<6 {
            let child = try ChildProcess(walctlPath, ["emit", "--dir", path, "--count", "100000000", "--threads", "2"])
            let acked = child.killAfterAcks(
                lines: Int.random(in: 1...5, using: &generator),
                extraMicroseconds: UInt32.random(in: 0...20_000, using: &generator)
            )
            // Recovery by opening a collector, as an agent restarting would.
            let collector = try MetricsCollector(configuration: MetricsConfiguration(directory: path))
            let next = collector.log?.statistics.nextSeq ?? 0
            try collector.close()
            #expect(next - 1 >= acked, "trial \(trial)")
            let records = try readMetrics(path, from: recoveredEnd + 1)
            #expect(records.map(\.seq) == Array(recoveredEnd + 1..<next))
            // Each thread's records are its traffic events 0, 1, 2, ... exactly.
            var counters: [Int: UInt64] = [:]
            for record in records {
                guard let thread = AgentTraffic.thread(ofAgent: record.agentID) else {
                    Issue.record("record \(record.seq) has agent \(record.agentID ?? "nil")")
                    continue
                }
                let counter = counters[thread, default: 0]
                let event = AgentTraffic(thread: thread).event(counter)
                #expect(record.name == event.definition.name)
                #expect(record.value == event.value)
                #expect(record.tags == event.tags)
                #expect(record.agentID == event.agentID)
                #expect(record.correlationID == event.correlationID)
                counters[thread] = counter + 1
            }
            recoveredEnd = next - 1
        }
    }
}
