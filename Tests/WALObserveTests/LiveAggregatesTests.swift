import Foundation
import Testing
import WALMetrics
import WALTestKit

@testable import WALObserve

/// The live view's arithmetic, without I/O: per-second aggregates, their windows, the histogram's percentiles.
@Suite struct LiveAggregatesTests {
    static let now: Int64 = 1_796_000_000_000_000_000 + 500_000_000

    func record(
        _ name: String,
        _ value: Double,
        secondsAgo: Double = 1,
        agent: String? = nil
    ) -> MetricRecord {
        let definition = MetricCatalog.byName[name]
        return MetricRecord(
            seq: 1,
            name: name,
            type: definition?.type ?? .gauge,
            value: value,
            unit: definition?.unit ?? "",
            tags: [:],
            timestampNanos: Self.now - Int64(secondsAgo * 1e9),
            correlationID: nil,
            agentID: agent
        )
    }

    @Test func histogramPercentilesAreWithinOnePercentOfNearestRank() {
        var generator = SeededGenerator(test: "histogramPercentiles", default: 17)
        var values: [Double] = []
        var histogram = LiveHistogram()
        for _ in 0..<20_000 {
            // Log-normal-ish latencies from 0.01 ms to 1 s.
            let value = exp(Double.random(in: log(0.01)...log(1000), using: &generator))
            values.append(value)
            histogram.add(value)
        }
        values.sort()
        for q in [0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = values[max(0, Int((q * Double(values.count)).rounded(.up)) - 1)]
            let estimate = histogram.percentile(q)!
            #expect(abs(estimate - exact) <= 0.01 * exact, "q=\(q): \(estimate) vs \(exact)")
        }
        #expect(histogram.count == 20_000)
        #expect(LiveHistogram().percentile(0.5) == nil)
    }

    @Test func mergedHistogramsEqualTheHistogramOfAllValues() {
        var all = LiveHistogram()
        var parts = [LiveHistogram(), LiveHistogram(), LiveHistogram()]
        for index in 0..<3000 {
            let value = Double(index % 97) - 20 + Double(index) / 1000
            all.add(value)
            parts[index % 3].add(value)
        }
        var merged = LiveHistogram()
        for part in parts { merged.merge(part) }
        #expect(merged == all)
        #expect(merged.percentile(0.01)! < 0)
    }

    @Test func oneMinutePanelsCountTheLastSixtySecondsOnly() {
        var aggregates = LiveAggregates()
        for index in 0..<100 {
            aggregates.add(
                record("routing_decision_time_ms", Double(index % 10) + 1, secondsAgo: 5),
                nowNanos: Self.now
            )
            aggregates.add(record("state_get_time_ms", Double(index + 1), secondsAgo: 10), nowNanos: Self.now)
        }
        // Outside the minute, inside five: routing ignores them.
        aggregates.add(record("routing_decision_time_ms", 1000, secondsAgo: 90), nowNanos: Self.now)
        aggregates.add(record("routing_cache_hit_rate", 80, secondsAgo: 3), nowNanos: Self.now)
        aggregates.add(record("routing_cache_hit_rate", 90, secondsAgo: 50), nowNanos: Self.now)
        aggregates.add(record("routing_confidence_score", 0.95), nowNanos: Self.now)
        aggregates.add(record("routing_confidence_score", 0.85), nowNanos: Self.now)
        aggregates.add(record("routing_confidence_score", 1.0), nowNanos: Self.now)
        aggregates.add(record("routing_confidence_score", 0.0), nowNanos: Self.now)
        aggregates.add(record("state_set_time_ms", 2), nowNanos: Self.now)
        aggregates.add(record("state_lock_contention_ms", 30), nowNanos: Self.now)
        aggregates.add(record("state_lock_contention_ms", 10), nowNanos: Self.now)
        let snapshot = aggregates.snapshot(nowNanos: Self.now)

        #expect(snapshot.routing.decisions == 100)
        #expect(snapshot.routing.decisionTimeMs == 5.5)
        #expect(snapshot.routing.cacheHitRatePercent == 85)
        #expect(snapshot.routing.confidenceBuckets == [1, 0, 0, 0, 0, 0, 0, 0, 1, 2])
        #expect(snapshot.state.get.count == 100)
        let p50 = snapshot.state.get.p50!
        let p99 = snapshot.state.get.p99!
        #expect(abs(p50 - 50) <= 0.5 && abs(p99 - 99) <= 0.99, "p50 \(p50) p99 \(p99)")
        #expect(snapshot.state.set.p50.map { abs($0 - 2) <= 0.02 } == true)
        #expect(snapshot.state.operationsPerSecond == 101.0 / 60)
        #expect(snapshot.state.lockContentionPerSecond == 2.0 / 60)
        #expect(snapshot.state.lockWaitMs == 20)
        // Per-second series: 60 points ending at the last complete second, so the routing values 5 seconds ago are
        // at index 55.
        #expect(snapshot.routing.decisionTimeSeries.count == 60)
        #expect(snapshot.routing.decisionTimeSeries[55] == 5.5)
        #expect(snapshot.routing.decisionTimeSeries[54] == nil)
        #expect(snapshot.state.operationsSeries[50] == 100)
    }

    @Test func fiveMinutePanelsAndActiveAgents() {
        var aggregates = LiveAggregates()
        aggregates.add(record("coordination_overhead_ms", 100, secondsAgo: 250, agent: "a1"), nowNanos: Self.now)
        aggregates.add(record("coordination_overhead_ms", 300, secondsAgo: 2, agent: "a2"), nowNanos: Self.now)
        aggregates.add(record("coordination_sync_time_ms", 7, secondsAgo: 20, agent: "a2"), nowNanos: Self.now)
        aggregates.add(record("coordination_dependency_wait_ms", 10, secondsAgo: 100, agent: "a3"), nowNanos: Self.now)
        aggregates.add(record("coordination_dependency_wait_ms", 40, secondsAgo: 10, agent: "a3"), nowNanos: Self.now)
        // Too old: five minutes and more.
        aggregates.add(record("coordination_overhead_ms", 9999, secondsAgo: 301, agent: "old"), nowNanos: Self.now)
        // Not a coordination metric: not an agent of the coordination panel.
        aggregates.add(record("workflow_success_rate", 90, secondsAgo: 200, agent: "w"), nowNanos: Self.now)
        aggregates.add(record("workflow_success_rate", 100, secondsAgo: 1, agent: "w"), nowNanos: Self.now)
        aggregates.add(record("workflow_execution_time_ms", 1200, secondsAgo: 30), nowNanos: Self.now)
        aggregates.add(record("workflow_parallel_speedup", 2.5, secondsAgo: 30), nowNanos: Self.now)
        aggregates.add(record("workflow_parallel_speedup", 3.5, secondsAgo: 290), nowNanos: Self.now)
        // Ahead of the clock by more than two seconds: not counted.
        aggregates.add(record("workflow_parallel_speedup", 100, secondsAgo: -10), nowNanos: Self.now)
        let snapshot = aggregates.snapshot(nowNanos: Self.now)

        #expect(snapshot.coordination.overheadMs == 200)
        #expect(snapshot.coordination.syncTimeMs == 7)
        #expect(snapshot.coordination.dependencyWaitMs == 25)
        #expect(snapshot.coordination.dependencyWaitMaxMs == 40)
        #expect(snapshot.coordination.activeAgents == 3)
        #expect(snapshot.workflow.successRatePercent == 95)
        #expect(snapshot.workflow.executionTimeMs == 1200)
        #expect(snapshot.workflow.parallelSpeedup == 3)
        #expect(snapshot.workflow.speedupSeries.count == 30)
        #expect(aggregates.recordsOutsideWindow == 2)
        #expect(snapshot.recordsInWindow == 10)

        // Four minutes later the early values have left the window, and so has agent a1.
        let later = Self.now + 240_000_000_000
        let moved = aggregates.snapshot(nowNanos: later)
        #expect(moved.coordination.overheadMs == 300)
        #expect(moved.coordination.activeAgents == 2)
        #expect(moved.workflow.parallelSpeedup == 2.5)
    }

    /// A flood of distinct agent ids past the table's cap: the count becomes a lower bound, and the table is passed
    /// over only when some of it expired, not at each new id (which made 150,000 ids take minutes of CPU).
    @Test func aFloodOfDistinctAgentIdsCostsAmortizedConstantTime() {
        var aggregates = LiveAggregates()
        let cap = LiveAggregates.maxTrackedAgents
        for index in 0..<(cap * 2) {
            aggregates.add(
                record("coordination_overhead_ms", 1, secondsAgo: 5, agent: "agent-\(index)"),
                nowNanos: Self.now
            )
        }
        let snapshot = aggregates.snapshot(nowNanos: Self.now)
        #expect(snapshot.coordination.activeAgents == cap)
        #expect(snapshot.coordination.activeAgentsIsLowerBound)
        #expect(aggregates.prunes <= 1, "\(aggregates.prunes) passes for \(cap) ids past the cap in one second")
        // Agents seen again are still counted, and once the old ones leave the window new ones are tracked.
        let later = Self.now + 400_000_000_000
        for index in 0..<(cap / 2) {
            aggregates.add(
                record("coordination_overhead_ms", 1, secondsAgo: -395, agent: "late-\(index)"),
                nowNanos: later
            )
        }
        #expect(aggregates.snapshot(nowNanos: later).coordination.activeAgents == cap / 2)
    }

    @Test func aSecondOfTheRingIsReusedFiveMinutesLater() {
        var aggregates = LiveAggregates()
        aggregates.add(record("workflow_parallel_speedup", 10, secondsAgo: 299), nowNanos: Self.now)
        #expect(aggregates.snapshot(nowNanos: Self.now).workflow.parallelSpeedup == 10)
        // A ring's length later, a record of the second that takes the same slot: the old second is dropped, not
        // added to.
        let ring = Int64(LiveAggregates.ringSeconds) * 1_000_000_000
        var fresh = record("workflow_parallel_speedup", 20, secondsAgo: 299)
        fresh.timestampNanos += ring
        aggregates.add(fresh, nowNanos: Self.now + ring)
        #expect(aggregates.snapshot(nowNanos: Self.now + ring).workflow.parallelSpeedup == 20)
        // A late record of the old second is outside the window now.
        aggregates.add(record("workflow_parallel_speedup", 10, secondsAgo: 299), nowNanos: Self.now + ring)
        #expect(aggregates.snapshot(nowNanos: Self.now + ring).workflow.parallelSpeedup == 20)
        #expect(aggregates.recordsOutsideWindow == 1)
    }

    @Test func theCurrentSecondWaitsUntilItIsComplete() {
        var aggregates = LiveAggregates()
        aggregates.add(record("state_get_time_ms", 3, secondsAgo: 0), nowNanos: Self.now)
        #expect(aggregates.snapshot(nowNanos: Self.now).state.get.count == 0)
        #expect(aggregates.snapshot(nowNanos: Self.now + 1_000_000_000).state.get.count == 1)
    }

    @Test func theJSONIsValidAndCarriesThePanels() throws {
        var aggregates = LiveAggregates()
        aggregates.add(record("routing_decision_time_ms", 4), nowNanos: Self.now)
        aggregates.add(record("state_get_time_ms", 1.5), nowNanos: Self.now)
        var snapshot = aggregates.snapshot(nowNanos: Self.now)
        snapshot.logs = [
            .init(directory: "/a \"quoted\"", state: "unreachable", error: "gone", lastSeq: 0, skipped: 0)
        ]
        snapshot.logCount = 1
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(snapshot.json())) as? [String: Any]
        )
        let routing = try #require(object["routing"] as? [String: Any])
        #expect(routing["decision_time_ms_avg"] as? Double == 4)
        #expect(routing["cache_hit_rate_pct"] is NSNull)
        let state = try #require(object["state"] as? [String: Any])
        let get = try #require(state["get_ms"] as? [String: Any])
        #expect((get["p50"] as? Double).map { abs($0 - 1.5) < 0.015 } == true)
        let logs = try #require(object["logs"] as? [[String: Any]])
        #expect(logs.first?["dir"] as? String == "/a \"quoted\"")
        let alerts = try #require(object["alerts"] as? [String: Any])
        let frequency = try #require(alerts["frequency"] as? [String: [Int]])
        #expect(frequency["critical"]?.count == LiveSnapshot.alertMinutes)
        #expect((object["generated_at"] as? String)?.hasSuffix("Z") == true)
    }
}
