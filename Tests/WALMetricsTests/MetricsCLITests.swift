import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit
import WALTraffic

@Suite struct MetricsCLITests {
    @Test func emitOneRecordFromAScript() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let ok = try walctl([
            "emit", "--dir", path, "--metric", "routing_decision_time_ms", "--value", "12.5", "--tag",
            "agent_type=router",
            "--tag", "note=a=b", "--agent", "sh-agent", "--correlation-id", "job-1",
        ])
        #expect(ok.status == 0, "\(ok.err)")
        #expect(ok.out == "recorded 1")
        let custom = try walctl([
            "emit", "--dir", path, "--metric", "custom_queue_depth_count", "--type", "gauge", "--unit", "items",
            "--value", "4",
        ])
        #expect(custom.status == 0, "\(custom.err)")
        let rejected = try walctl([
            "emit", "--dir", path, "--metric", "Not A Name", "--type", "gauge", "--unit", "x", "--value", "1",
        ])
        #expect(rejected.status == 1)
        #expect(rejected.err.contains("invalid_name"))
        let nan = try walctl(["emit", "--dir", path, "--metric", "routing_decision_time_ms", "--value", "nan"])
        #expect(nan.status == 1)
        #expect(nan.err.contains("non_finite_value"))
        let noType = try walctl(["emit", "--dir", path, "--metric", "custom_x_count", "--value", "1"])
        #expect(noType.status == 2)
        #expect(noType.err.contains("--type"))
        let records = try readMetrics(path)
        #expect(records.count == 2)
        #expect(records[0].tags == ["agent_type": "router", "note": "a=b"])
        #expect(records[0].agentID == "sh-agent" && records[0].correlationID == "job-1")
        #expect(records[1].unit == "items" && records[1].type == .gauge)
    }

    @Test func inspectRecordsPrintsEnvelopesAsJSONLines() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        #expect(try walctl(["emit", "--dir", path, "--count", "1000"]).status == 0)
        let result = try walctl(["inspect", path, "--records", "--json", "--limit", "100", "--from-seq", "11"])
        #expect(result.status == 0)
        let lines = result.out.split(separator: "\n")
        #expect(lines.count == 100)
        let logID = try LogDirectory(path: path).readMeta().logID
        for (index, line) in lines.enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["event_id"] as? String == Envelope.eventID(logID: logID, seq: UInt64(11 + index)))
            let payload = try #require(object["payload"] as? [String: Any])
            let event = AgentTraffic(thread: 0).event(UInt64(10 + index))
            #expect(payload["metric_name"] as? String == event.definition.name)
            #expect(payload["value"] as? Double == event.value)
        }
        let table = try walctl(["inspect", path, "--records", "--limit", "3"])
        #expect(table.out.split(separator: "\n").count == 4)
        #expect(table.out.hasPrefix("SEQ"))
    }

    @Test func demoEmitsEveryCatalogMetric() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        let result = try walctl(["demo", "--dir", path, "--seconds", "3", "--rate", "5000"])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.contains("emitted"))
        #expect(result.out.contains("sample envelopes:"))
        let names = Set(try readMetrics(path).map(\.name))
        #expect(names == Set(MetricCatalog.all.map(\.name)))
    }
}
