import Foundation
import Testing
import WALCore
import WALMetrics
import WALTestKit
import WALTraffic

@Suite struct CollectorTests {
    @Test func everyMetricTypeIsStoredWithAllItsFields() throws {
        try withCollector { collector, path in
            let before = Int64(Date().timeIntervalSince1970 * 1e9)
            #expect(
                collector.recordTiming(
                    "routing_decision_time_ms",
                    milliseconds: 12.5,
                    tags: ["agent_type": "router"],
                    correlationID: "req-1"
                ).isRecorded
            )
            #expect(collector.recordCounter("state_operation_count", tags: ["operation_type": "get"]).isRecorded)
            #expect(collector.recordCounter("coordination_signal_count", count: 3).isRecorded)
            #expect(
                collector.recordGauge("state_snapshot_size_kb", value: 512.25, unit: "KB", agentID: "agent-other")
                    .isRecorded
            )
            #expect(collector.recordRate("workflow_success_rate", percent: 97.5).isRecorded)
            collector.flush()
            let after = Int64(Date().timeIntervalSince1970 * 1e9)
            let records = try readMetrics(path)
            try #require(records.count == 5)
            #expect(records.map(\.seq) == [1, 2, 3, 4, 5])
            #expect(
                records.map(\.name) == [
                    "routing_decision_time_ms", "state_operation_count", "coordination_signal_count",
                    "state_snapshot_size_kb",
                    "workflow_success_rate",
                ]
            )
            #expect(records.map(\.type) == [.timing, .counter, .counter, .gauge, .rate])
            #expect(records.map(\.value) == [12.5, 1, 3, 512.25, 97.5])
            #expect(records.map(\.unit) == ["ms", "count", "count", "KB", "%"])
            #expect(records[0].tags == ["agent_type": "router"])
            #expect(records[2].tags == [:])
            #expect(records[0].correlationID == "req-1")
            #expect(records[1].correlationID == nil)
            #expect(records.map(\.agentID) == ["agent-test", "agent-test", "agent-test", "agent-other", "agent-test"])
            #expect(records.allSatisfy { $0.timestampNanos >= before && $0.timestampNanos <= after })
            #expect(records[0].metricID == "route_001")
            #expect(records[0].category == .routing)
        }
    }

    @Test func namesOutsideTheFiveCategoriesGoToCustom() throws {
        try withCollector { collector, path in
            #expect(collector.recordGauge("billing_queue_depth_count", value: 4, unit: "count").isRecorded)
            collector.flush()
            let record = try #require(try readMetrics(path).first)
            #expect(record.category == .custom)
            #expect(record.metricID.hasPrefix("custom_"))
            #expect(record.metricID == MetricCatalog.metricID(for: "billing_queue_depth_count"))
        }
    }

    @Test func catalogHasTheTwentyFiveMetricsOfTheDesign() {
        #expect(MetricCatalog.all.count == 25)
        #expect(Set(MetricCatalog.all.map(\.name)).count == 25)
        #expect(Set(MetricCatalog.all.map(\.id)).count == 25)
        for category in MetricCategory.allCases where category != .custom {
            #expect(MetricCatalog.all.filter { $0.category == category }.count == 5, "\(category)")
        }
        #expect(MetricCatalog.workflowParallelSpeedup.unit == "ratio")
        #expect(MetricCatalog.quorumConsensusScore.type == .gauge)
        #expect(MetricCatalog.routingCacheHitRate.type == .rate)
        #expect(MetricCategory.quorum.topic() == "agent.metrics.quorum.v1")
        #expect(MetricCategory.custom.table == "agent_custom_metrics")
        #expect(MetricCategory(metricName: "custom_x_ms") == .custom)
        #expect(MetricCategory(metricName: "routingx_ms") == .custom)
    }

    @Test func measureRecordsEvenWhenTheBodyThrows() async throws {
        struct Boom: Error {}
        try await withCollector { collector, path in
            let value = collector.measure("workflow_execution_time_ms", tags: ["workflow_type": "codegen"]) {
                usleep(2000)
                return 42
            }
            #expect(value == 42)
            #expect(throws: Boom.self) {
                try collector.measure("workflow_error_recovery_time_ms") { () throws -> Void in throw Boom() }
            }
            try await collector.measure("quorum_latency_ms") {
                try await Task.sleep(nanoseconds: 1_000_000)
            }
            await #expect(throws: Boom.self) {
                try await collector.measure("quorum_latency_ms") { () async throws -> Void in throw Boom() }
            }
            let timer = collector.startTimer("coordination_sync_time_ms", correlationID: "c-9")
            usleep(1000)
            #expect(timer.stop()?.isRecorded == true)
            #expect(timer.stop() == nil, "a timer records once")
            collector.flush()
            let records = try readMetrics(path)
            #expect(
                records.map(\.name) == [
                    "workflow_execution_time_ms", "workflow_error_recovery_time_ms", "quorum_latency_ms",
                    "quorum_latency_ms",
                    "coordination_sync_time_ms",
                ]
            )
            #expect(records[0].value >= 2)
            #expect(records[2].value >= 1)
            #expect(records[4].value >= 1)
            #expect(records[4].correlationID == "c-9")
            #expect(records.allSatisfy { $0.type == .timing && $0.unit == "ms" })
        }
    }

    @Test func handlesRecordWithFixedTagsAndTheirOwnHelpers() async throws {
        try await withCollector { collector, path in
            let handle = try collector.handle(
                MetricCatalog.stateGetTime,
                tags: ["operation_type": "get", "key_prefix": "session"]
            )
            for value in [0.25, 1.5, 3.0] { #expect(handle.record(value).isRecorded) }
            handle.measure { usleep(500) }
            await handle.measure { try? await Task.sleep(nanoseconds: 500_000) }
            handle.startTimer(correlationID: "t").stop()
            collector.flush()
            let records = try readMetrics(path)
            #expect(records.count == 6)
            #expect(records.allSatisfy { $0.tags == ["operation_type": "get", "key_prefix": "session"] })
            #expect(records.prefix(3).map(\.value) == [0.25, 1.5, 3.0])
            #expect(records.last?.correlationID == "t")
            #expect(throws: MetricsError.self) { try collector.handle("Bad Name", type: .gauge, unit: "x") }
        }
    }

    @Test func symbolsSurviveReopeningAndIdsStayStable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("log")
        for round in 0..<3 {
            let collector = try MetricsCollector(
                configuration: MetricsConfiguration(directory: path, agentID: "a\(round % 2)")
            )
            for metric in MetricCatalog.all {
                collector.record(metric, value: Double(round), tags: ["agent_type": "t\(round % 2)"])
            }
            let symbols = collector.statistics.symbols
            try collector.close()
            if round == 2 {
                #expect(symbols == 25 * 2 + 6 + 2 + 1 + 2 + 2, "no symbol interned twice across reopenings")
            }
        }
        let records = try readMetrics(path)
        #expect(records.count == 75)
        #expect(
            records.map(\.value) == Array(repeating: 0.0, count: 25) + Array(repeating: 1.0, count: 25)
                + Array(repeating: 2.0, count: 25)
        )
        #expect(records[25].agentID == "a1" && records[50].agentID == "a0")
    }

    @Test func closeSealsAndLaterEmitsAreRejectedNotCrashing() throws {
        try withCollector { collector, _ in
            try collector.close()
            #expect(collector.recordCounter("state_operation_count") == .rejected(.logUnavailable))
            #expect(collector.statistics.rejected[.logUnavailable] == 1)
        }
    }

    @Test func disabledMetricsAreANoOp() throws {
        let collector = try MetricsCollector.fromEnvironment(["METRICS_ENABLED": "false"])
        #expect(collector.log == nil)
        #expect(collector.recordTiming("routing_decision_time_ms", milliseconds: 1) == .disabled)
        #expect(try collector.handle(MetricCatalog.routingDecisionTime).record(1) == .disabled)
        #expect(collector.statistics.emitted == 0)
    }

    @Test func fullLogDropsAreCountedAsDrops() throws {
        try withCollector({ configuration in
            configuration.log.segmentSize = 1 << 20
            configuration.log.blockSize = 16 << 10
            configuration.log.blockCount = 4
            configuration.log.maxTotalBytes = Int64(3 << 20) + Int64(64 << 10) + 4096
        }) { collector, path in
            try CursorStore(path: path).store("consumer", seq: 0)
            var dropped = 0
            for counter in 0..<400_000 {
                if case .dropped = AgentTraffic(thread: 0).emit(UInt64(counter), into: collector) { dropped += 1 }
            }
            #expect(dropped > 0)
            #expect(collector.statistics.dropped == UInt64(dropped))
        }
    }
}
