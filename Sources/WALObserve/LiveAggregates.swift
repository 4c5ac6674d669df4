import WALMetrics

/// The live view's memory: per-second aggregates of the design's real-time metrics for the last five minutes, in a
/// ring of 301 seconds (five minutes and the current second) keyed by the records' emit time (wall clock, UTC).
///
/// The panels end at the last complete second: the current one is still filling, and a rate or a sparkline that
/// counted it would dip at its end.
///
/// A plain value: `add` and `snapshot` do no I/O and read no clock (the caller passes the time), so the same records
/// always give the same panels. Its size is bounded whatever the record rate: 300 seconds of fixed counters, two
/// sparse histograms per second (state get/set latency, at most a few hundred buckets each) and at most
/// `maxTrackedAgents` agent ids.
public struct LiveAggregates: Sendable {
    /// The longest panel window (coordination and workflow, five minutes), in seconds.
    public static let windowSeconds = 300
    /// Seconds kept: the longest window and the current, incomplete second.
    public static let ringSeconds = windowSeconds + 1
    /// Records whose emit time is more than this many seconds ahead of the clock are not counted (a skewed clock
    /// would otherwise evict a second of the window).
    public static let maxFutureSeconds: Int64 = 2
    /// Agent ids remembered for the active-agent count; beyond it the count is a lower bound.
    public static let maxTrackedAgents = 50_000

    /// The means the panels show, one slot each per second.
    enum Mean: Int, CaseIterable {
        case decisionTime, cacheHitRate, confidence, lockWait, coordinationOverhead, coordinationSync
        case dependencyWait, workflowSuccess, workflowExecution, parallelSpeedup
    }

    struct Sum: Sendable {
        var count: UInt64 = 0
        var sum: Double = 0

        mutating func add(_ value: Double) {
            count += 1
            sum += value
        }

        mutating func merge(_ other: Sum) {
            count += other.count
            sum += other.sum
        }

        var mean: Double? { count == 0 ? nil : sum / Double(count) }
    }

    struct Second: Sendable {
        var second: Int64 = .min
        var records: UInt64 = 0
        var means = [Sum](repeating: Sum(), count: Mean.allCases.count)
        var dependencyWaitMax = -Double.infinity
        /// Routing confidence in ten buckets of 0.1 (0.0-0.1, ..., 0.9-1.0), as the Grafana bar chart.
        var confidence = [UInt64](repeating: 0, count: 10)
        var stateGet = LiveHistogram()
        var stateSet = LiveHistogram()

        mutating func reset(to second: Int64) {
            self.second = second
            records = 0
            for index in means.indices { means[index] = Sum() }
            dependencyWaitMax = -.infinity
            for index in confidence.indices { confidence[index] = 0 }
            stateGet = LiveHistogram()
            stateSet = LiveHistogram()
        }
    }

    var ring = [Second](repeating: Second(), count: ringSeconds)
    /// Agent id to the last second it sent a coordination metric.
    var agents: [String: Int64] = [:]
    var agentsTruncated = false
    /// The same agents by the second they were last seen, and the earliest of those seconds: expired agents are
    /// dropped a second at a time, at a cost proportional to what is dropped (dropping them by a pass over the whole
    /// table at each new id past the cap made 150,000 distinct ids take minutes of CPU and stalled the page).
    var agentsBySecond: [Int64: Set<String>] = [:]
    var earliestAgentSecond = Int64.max
    /// Passes over the seconds of the table (for the tests).
    var prunes = 0
    /// Records counted, and records outside the window (older than five minutes, or ahead of the clock).
    public private(set) var recordsCounted: UInt64 = 0
    public private(set) var recordsOutsideWindow: UInt64 = 0

    public init() {}

    // MARK: - Adding records

    /// Counts one record into the second of its emit time; `nowNanos` is the wall clock (records older than the ring
    /// or ahead of the clock are counted in `recordsOutsideWindow` only).
    public mutating func add(_ record: MetricRecord, nowNanos: Int64) {
        let second = Self.second(of: record.timestampNanos)
        let now = Self.second(of: nowNanos)
        guard second > now - Int64(Self.ringSeconds), second <= now + Self.maxFutureSeconds else {
            recordsOutsideWindow += 1
            return
        }
        let slot = Int(((second % Int64(Self.ringSeconds)) + Int64(Self.ringSeconds)) % Int64(Self.ringSeconds))
        if ring[slot].second != second {
            guard ring[slot].second < second else {
                recordsOutsideWindow += 1
                return
            }
            ring[slot].reset(to: second)
        }
        recordsCounted += 1
        ring[slot].records += 1
        let value = record.value
        guard value.isFinite else { return }
        switch record.name {
        case "routing_decision_time_ms": ring[slot].means[Mean.decisionTime.rawValue].add(value)
        case "routing_cache_hit_rate": ring[slot].means[Mean.cacheHitRate.rawValue].add(value)
        case "routing_confidence_score":
            ring[slot].means[Mean.confidence.rawValue].add(value)
            let bucket = Int((min(max(value, 0), 0.9999) * 10).rounded(.down))
            ring[slot].confidence[bucket] += 1
        case "state_get_time_ms": ring[slot].stateGet.add(value)
        case "state_set_time_ms": ring[slot].stateSet.add(value)
        case "state_lock_contention_ms": ring[slot].means[Mean.lockWait.rawValue].add(value)
        case "coordination_overhead_ms": ring[slot].means[Mean.coordinationOverhead.rawValue].add(value)
        case "coordination_sync_time_ms": ring[slot].means[Mean.coordinationSync.rawValue].add(value)
        case "coordination_dependency_wait_ms":
            ring[slot].means[Mean.dependencyWait.rawValue].add(value)
            ring[slot].dependencyWaitMax = max(ring[slot].dependencyWaitMax, value)
        case "workflow_success_rate": ring[slot].means[Mean.workflowSuccess.rawValue].add(value)
        case "workflow_execution_time_ms": ring[slot].means[Mean.workflowExecution.rawValue].add(value)
        case "workflow_parallel_speedup": ring[slot].means[Mean.parallelSpeedup.rawValue].add(value)
        default: break
        }
        if let agent = record.agentID, record.name.hasPrefix("coordination_") {
            noteAgent(agent, second: second)
        }
    }

    private mutating func noteAgent(_ agent: String, second: Int64) {
        if let last = agents[agent] {
            if second > last {
                agents[agent] = second
                agentsBySecond[last]?.remove(agent)
                if agentsBySecond[last]?.isEmpty == true { agentsBySecond[last] = nil }
                agentsBySecond[second, default: []].insert(agent)
            }
            return
        }
        if agents.count >= Self.maxTrackedAgents {
            let oldest = second - Int64(Self.windowSeconds) - 1
            if earliestAgentSecond <= oldest {
                prunes += 1
                for (when, expired) in agentsBySecond where when <= oldest {
                    for name in expired { agents[name] = nil }
                    agentsBySecond[when] = nil
                }
                earliestAgentSecond = agentsBySecond.keys.min() ?? .max
            }
            guard agents.count < Self.maxTrackedAgents else {
                agentsTruncated = true
                return
            }
        }
        agents[agent] = second
        agentsBySecond[second, default: []].insert(agent)
        earliestAgentSecond = min(earliestAgentSecond, second)
    }

    static func second(of nanos: Int64) -> Int64 {
        nanos >= 0 ? nanos / 1_000_000_000 : (nanos - 999_999_999) / 1_000_000_000
    }

    // MARK: - Reading

    /// The seconds of the window ending at `now` (inclusive), oldest first; nil for a second without records.
    func window(_ seconds: Int, endingAt now: Int64) -> [Second?] {
        (0..<seconds).map { offset in
            let second = now - Int64(seconds - 1 - offset)
            let slot = Int(((second % Int64(Self.ringSeconds)) + Int64(Self.ringSeconds)) % Int64(Self.ringSeconds))
            return ring[slot].second == second ? ring[slot] : nil
        }
    }

    /// The panels at `nowNanos`: the routing and state panels over the last 60 complete seconds, coordination and
    /// workflow over the last 300 (the design's windows), each with its per-second (1-minute panels) or per-10-second
    /// (5-minute panels) series for sparklines. Cost: the occupied histogram buckets of 60 seconds, and 300 seconds
    /// of counters; no record is visited.
    public func snapshot(nowNanos: Int64) -> LiveSnapshot {
        let now = Self.second(of: nowNanos) - 1
        let minute = window(60, endingAt: now)
        let five = window(Self.windowSeconds, endingAt: now)
        var snapshot = LiveSnapshot(nowNanos: nowNanos)

        func total(_ mean: Mean, _ seconds: ArraySlice<Second?>) -> Sum {
            var sum = Sum()
            for second in seconds { if let second { sum.merge(second.means[mean.rawValue]) } }
            return sum
        }
        func series(_ seconds: [Second?], step: Int, _ value: (ArraySlice<Second?>) -> Double?) -> [Double?] {
            stride(from: 0, to: seconds.count, by: step).map { start in
                value(seconds[start..<min(start + step, seconds.count)])
            }
        }

        // Routing (1 minute).
        let all = minute[...]
        snapshot.recordsPerSecond = Double(minute.reduce(0) { $0 + ($1?.records ?? 0) }) / 60
        snapshot.routing.decisions = total(.decisionTime, all).count
        snapshot.routing.decisionTimeMs = total(.decisionTime, all).mean
        snapshot.routing.cacheHitRatePercent = total(.cacheHitRate, all).mean
        snapshot.routing.confidenceMean = total(.confidence, all).mean
        for second in minute {
            guard let second else { continue }
            for index in 0..<10 { snapshot.routing.confidenceBuckets[index] += second.confidence[index] }
        }
        snapshot.routing.decisionTimeSeries = series(minute, step: 1) { total(.decisionTime, $0).mean }
        snapshot.routing.cacheHitRateSeries = series(minute, step: 1) { total(.cacheHitRate, $0).mean }

        // State (1 minute).
        var get = LiveHistogram()
        var set = LiveHistogram()
        for second in minute {
            guard let second else { continue }
            get.merge(second.stateGet)
            set.merge(second.stateSet)
        }
        snapshot.state.get = LiveSnapshot.Percentiles(get)
        snapshot.state.set = LiveSnapshot.Percentiles(set)
        let lock = total(.lockWait, all)
        snapshot.state.lockContentionPerSecond = Double(lock.count) / 60
        snapshot.state.lockWaitMs = lock.mean
        snapshot.state.operationsPerSecond = Double(get.count + set.count) / 60
        snapshot.state.operationsSeries = minute.map { second in
            second.map { Double($0.stateGet.count + $0.stateSet.count) } ?? 0
        }
        snapshot.state.getP99Series = minute.map { $0?.stateGet.percentile(0.99) }
        snapshot.state.setP99Series = minute.map { $0?.stateSet.percentile(0.99) }

        // Coordination (5 minutes).
        let five10 = five[...]
        snapshot.coordination.overheadMs = total(.coordinationOverhead, five10).mean
        snapshot.coordination.syncTimeMs = total(.coordinationSync, five10).mean
        let wait = total(.dependencyWait, five10)
        snapshot.coordination.dependencyWaitMs = wait.mean
        let maxWait = five.reduce(-Double.infinity) { max($0, $1?.dependencyWaitMax ?? -.infinity) }
        snapshot.coordination.dependencyWaitMaxMs = maxWait.isFinite ? maxWait : nil
        let oldest = now - Int64(Self.windowSeconds)
        snapshot.coordination.activeAgents = agents.values.count(where: { $0 > oldest && $0 <= now })
        snapshot.coordination.activeAgentsIsLowerBound = agentsTruncated
        snapshot.coordination.overheadSeries = series(five, step: 10) { total(.coordinationOverhead, $0).mean }
        snapshot.coordination.dependencyWaitSeries = series(five, step: 10) { total(.dependencyWait, $0).mean }

        // Workflow (5 minutes).
        snapshot.workflow.executions = total(.workflowExecution, five10).count
        snapshot.workflow.successRatePercent = total(.workflowSuccess, five10).mean
        snapshot.workflow.executionTimeMs = total(.workflowExecution, five10).mean
        snapshot.workflow.parallelSpeedup = total(.parallelSpeedup, five10).mean
        snapshot.workflow.successRateSeries = series(five, step: 10) { total(.workflowSuccess, $0).mean }
        snapshot.workflow.executionTimeSeries = series(five, step: 10) { total(.workflowExecution, $0).mean }
        snapshot.workflow.speedupSeries = series(five, step: 10) { total(.parallelSpeedup, $0).mean }
        snapshot.recordsInWindow = five.reduce(0) { $0 + ($1?.records ?? 0) }
        return snapshot
    }
}
