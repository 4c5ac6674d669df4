import Foundation
import Testing
import WALMetrics
import WALTestKit

@Suite struct ValidationTests {
    @Test(arguments: [
        ("custom_decision_time_ms", true), ("a_b", true), ("x1_y2_z3", true), ("custom_queue_depth", true),
        ("routing", false), ("Routing_time_ms", false), ("routing__time", false), ("_routing_time", false),
        ("routing_time_", false), ("routing-time-ms", false), ("routing time", false), ("1routing_time", false),
        ("routing_tíme_ms", false), ("", false), (String(repeating: "a_", count: 50) + "b", false),
    ])
    func metricNames(name: String, valid: Bool) throws {
        try withCollector { collector, _ in
            let result = collector.recordGauge(name, value: 1, unit: "count")
            #expect(result.isRecorded == valid, "\(name)")
            if !valid { #expect(result == .rejected(.invalidName)) }
        }
    }

    /// Defect (found by a hostile tester): a catalog metric recorded first with another type or unit was accepted
    /// (from Python: `record_gauge("routing_decision_time_ms", 7, "s")`), and from then on the log refused the
    /// design's own calls under that name as conflicting, even after reopening. A catalog name now has its catalog
    /// type and unit from the first call.
    @Test func aCatalogMetricKeepsItsCatalogTypeAndUnitFromTheFirstCall() throws {
        try withCollector { collector, path in
            #expect(
                collector.recordGauge("routing_decision_time_ms", value: 7, unit: "s")
                    == .rejected(.conflictingDefinition)
            )
            #expect(collector.recordCounter("routing_decision_time_ms") == .rejected(.conflictingDefinition))
            #expect(collector.recordTiming("routing_decision_time_ms", milliseconds: 12.5).isRecorded)
            collector.flush()
            let names = try readMetrics(path).map(\.name)
            #expect(names == ["routing_decision_time_ms"])
        }
    }

    @Test func everyRejectionIsCountedByReasonAndNothingReachesTheLog() throws {
        try withCollector { collector, path in
            let cases: [(EmitResult, RejectionReason)] = [
                (collector.recordTiming("routing_decision_time_ms", milliseconds: .nan), .nonFiniteValue),
                (collector.recordTiming("routing_decision_time_ms", milliseconds: .infinity), .nonFiniteValue),
                (collector.recordGauge("state_snapshot_size_kb", value: -.infinity, unit: "KB"), .nonFiniteValue),
                (
                    collector.recordCounter(
                        "state_operation_count",
                        tags: Dictionary(uniqueKeysWithValues: (0..<17).map { ("k\($0)", "v") })
                    ), .tooManyTags
                ),
                (collector.recordCounter("state_operation_count", tags: ["Bad-Key": "v"]), .invalidTagKey),
                (collector.recordCounter("state_operation_count", tags: ["": "v"]), .invalidTagKey),
                (
                    collector.recordCounter("state_operation_count", tags: ["k": String(repeating: "v", count: 257)]),
                    .tagValueTooLong
                ),
                (collector.recordCounter("state_operation_count", tags: ["k": "a\u{0}b"]), .nulCharacter),
                (collector.recordGauge("custom_thing_count", value: 1, unit: ""), .invalidUnit),
                (
                    collector.recordGauge("custom_thing_count", value: 1, unit: String(repeating: "u", count: 21)),
                    .invalidUnit
                ),
                (collector.recordCounter("state_operation_count", correlationID: ""), .invalidCorrelationID),
                (
                    collector.recordCounter("state_operation_count", correlationID: String(repeating: "c", count: 101)),
                    .invalidCorrelationID
                ),
                (
                    collector.recordCounter("state_operation_count", agentID: String(repeating: "a", count: 101)),
                    .invalidAgentID
                ),
                (collector.recordCounter("state_operation_count", agentID: "a\u{0}"), .nulCharacter),
            ]
            for (result, reason) in cases {
                #expect(result == .rejected(reason))
            }
            // A name has one type and unit for the life of the log.
            #expect(collector.recordGauge("custom_depth_count", value: 1, unit: "count").isRecorded)
            #expect(
                collector.recordGauge("custom_depth_count", value: 1, unit: "items")
                    == .rejected(.conflictingDefinition)
            )
            #expect(collector.recordCounter("custom_depth_count") == .rejected(.conflictingDefinition))

            let statistics = collector.statistics
            #expect(statistics.rejected[.nonFiniteValue] == 3)
            #expect(statistics.rejected[.invalidTagKey] == 2)
            #expect(statistics.rejected[.invalidUnit] == 2)
            #expect(statistics.rejected[.invalidCorrelationID] == 2)
            #expect(statistics.rejected[.nulCharacter] == 2)
            #expect(statistics.rejected[.conflictingDefinition] == 2)
            #expect(statistics.rejectedTotal == UInt64(cases.count) + 2)
            #expect(statistics.emitted == 1)
            collector.flush()
            let names = try readMetrics(path).map(\.name)
            #expect(names == ["custom_depth_count"])
        }
    }

    @Test func hostileButValidStringsArriveIntact() throws {
        try withCollector { collector, path in
            let nasty = "quote\" back\\slash\ttab\nnewline {\"json\": [1,2]} ünïcødé 🚀 \u{1} '; DROP TABLE x; --"
            #expect(
                collector.recordCounter(
                    "state_operation_count",
                    tags: ["key_prefix": nasty, "empty": ""],
                    correlationID: nasty,
                    agentID: "agent ✓ \"x\""
                ).isRecorded
            )
            collector.flush()
            let record = try #require(try readMetrics(path).first)
            #expect(record.tags == ["key_prefix": nasty, "empty": ""])
            #expect(record.correlationID == nasty)
            #expect(record.agentID == "agent ✓ \"x\"")
            let json = Envelope.json(record, logID: try #require(collector.logID))
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            let payload = object?["payload"] as? [String: Any]
            #expect((payload?["tags"] as? [String: String])?["key_prefix"] == nasty)
            #expect(object?["correlation_id"] as? String == nasty)
        }
    }
}
