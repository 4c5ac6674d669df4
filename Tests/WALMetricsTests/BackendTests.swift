import Foundation
import Metrics
import Testing
import WALMetrics
import WALTestKit

@testable import CoreMetrics

@Suite(.serialized) struct BackendTests {
    @Test func swiftMetricsTypesLandInTheLog() throws {
        try withCollector { collector, path in
            MetricsSystem.bootstrapInternal(WALMetricsFactory(collector: collector))
            Counter(label: "routing_strategy_count", dimensions: [("agent_type", "router")]).increment(by: 3)
            FloatingPointCounter(label: "custom_cost_usd").increment(by: 0.25)
            Recorder(label: "state_snapshot_size_kb").record(512)
            Gauge(label: "http.requests.in-flight").record(7)
            Metrics.Timer(label: "quorum_latency_ms", dimensions: [("Model-Count", "5")]).recordNanoseconds(2_500_000)
            let meter = Meter(label: "coordination_agent_count")
            meter.set(4)
            meter.increment(by: 2)
            meter.decrement()
            collector.flush()
            let records = try readMetrics(path)
            #expect(
                records.map(\.name) == [
                    "routing_strategy_count", "custom_cost_usd", "state_snapshot_size_kb", "http_requests_in_flight",
                    "quorum_latency_ms", "coordination_agent_count", "coordination_agent_count",
                    "coordination_agent_count",
                ]
            )
            #expect(records.map(\.value) == [3, 0.25, 512, 7, 2.5, 4, 6, 5])
            #expect(records[0].tags == ["agent_type": "router"])
            #expect(records[4].tags == ["model_count": "5"])
            // Catalog labels keep the catalog's type and unit.
            #expect(records[2].type == .gauge && records[2].unit == "KB")
            #expect(records[0].type == .counter && records[0].unit == "count")
            #expect(records[1].type == .counter)
            #expect(records[3].type == .gauge && records[3].unit == "value")
            #expect(records[3].category == .custom)
            #expect(records[4].type == .timing && records[4].unit == "ms")
        }
    }

    @Test(arguments: [
        ("routing_decision_time_ms", "routing_decision_time_ms"), ("http.requests", "http_requests"),
        ("Requests", "custom_requests"), ("a..b--c", "a_b_c"), ("__x__", "custom_x"), ("", "custom_metric"),
        ("9lives_count", "custom_9lives_count"),
    ])
    func labelsBecomeValidNames(label: String, name: String) {
        #expect(WALMetricsFactory.metricName(label) == name)
    }
}
