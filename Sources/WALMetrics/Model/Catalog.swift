/// A metric of the catalog: name, type, unit and target, as the design lists them.
public struct MetricDefinition: Sendable, Hashable {
    /// The design's catalog id, e.g. `route_001`; stored as `metric_id`.
    public let id: String
    public let name: String
    public let type: MetricType
    public let unit: String
    /// The design's target, as text (e.g. `<5ms`), for documentation and dashboards.
    public let target: String
    public let summary: String
    /// The tag keys the design lists for the metric's category.
    public var suggestedTags: [String] { MetricCatalog.tags[category] ?? [] }

    public var category: MetricCategory { MetricCategory(metricName: name) }
}

/// The 25 agent metrics of the design, as typed constants so agent code does not spell strings.
public enum MetricCatalog {
    // MARK: - Routing
    public static let routingDecisionTime = MetricDefinition(
        id: "route_001",
        name: "routing_decision_time_ms",
        type: .timing,
        unit: "ms",
        target: "<5ms",
        summary: "Time to select optimal agent"
    )
    public static let routingConfidenceScore = MetricDefinition(
        id: "route_002",
        name: "routing_confidence_score",
        type: .gauge,
        unit: "0-1",
        target: ">0.8",
        summary: "Confidence in routing decision"
    )
    public static let routingCacheHitRate = MetricDefinition(
        id: "route_003",
        name: "routing_cache_hit_rate",
        type: .rate,
        unit: "%",
        target: ">80%",
        summary: "Cache hit rate for routing decisions"
    )
    public static let routingStrategyCount = MetricDefinition(
        id: "route_004",
        name: "routing_strategy_count",
        type: .counter,
        unit: "count",
        target: "-",
        summary: "Number of routing strategies evaluated"
    )
    public static let routingFallbackRate = MetricDefinition(
        id: "route_005",
        name: "routing_fallback_rate",
        type: .rate,
        unit: "%",
        target: "<10%",
        summary: "Rate of fallback to default routing"
    )

    // MARK: - State
    public static let stateGetTime = MetricDefinition(
        id: "state_001",
        name: "state_get_time_ms",
        type: .timing,
        unit: "ms",
        target: "<2ms",
        summary: "Time to read from shared state"
    )
    public static let stateSetTime = MetricDefinition(
        id: "state_002",
        name: "state_set_time_ms",
        type: .timing,
        unit: "ms",
        target: "<2ms",
        summary: "Time to write to shared state"
    )
    public static let stateLockContention = MetricDefinition(
        id: "state_003",
        name: "state_lock_contention_ms",
        type: .timing,
        unit: "ms",
        target: "<5ms",
        summary: "Time waiting for lock acquisition"
    )
    public static let stateOperationCount = MetricDefinition(
        id: "state_004",
        name: "state_operation_count",
        type: .counter,
        unit: "count",
        target: "-",
        summary: "Total state operations"
    )
    public static let stateSnapshotSize = MetricDefinition(
        id: "state_005",
        name: "state_snapshot_size_kb",
        type: .gauge,
        unit: "KB",
        target: "<100KB",
        summary: "Size of state snapshots"
    )

    // MARK: - Coordination
    public static let coordinationOverhead = MetricDefinition(
        id: "coord_001",
        name: "coordination_overhead_ms",
        type: .timing,
        unit: "ms",
        target: "<3s",
        summary: "Total coordination overhead per workflow"
    )
    public static let coordinationAgentCount = MetricDefinition(
        id: "coord_002",
        name: "coordination_agent_count",
        type: .gauge,
        unit: "count",
        target: "-",
        summary: "Number of agents coordinated"
    )
    public static let coordinationSyncTime = MetricDefinition(
        id: "coord_003",
        name: "coordination_sync_time_ms",
        type: .timing,
        unit: "ms",
        target: "<500ms",
        summary: "Time spent in synchronization points"
    )
    public static let coordinationSignalCount = MetricDefinition(
        id: "coord_004",
        name: "coordination_signal_count",
        type: .counter,
        unit: "count",
        target: "-",
        summary: "Number of coordination signals sent"
    )
    public static let coordinationDependencyWait = MetricDefinition(
        id: "coord_005",
        name: "coordination_dependency_wait_ms",
        type: .timing,
        unit: "ms",
        target: "<2s",
        summary: "Time waiting for dependency resolution"
    )

    // MARK: - Workflow
    public static let workflowExecutionTime = MetricDefinition(
        id: "wflow_001",
        name: "workflow_execution_time_ms",
        type: .timing,
        unit: "ms",
        target: "<5s",
        summary: "Total workflow execution time"
    )
    public static let workflowStepCount = MetricDefinition(
        id: "wflow_002",
        name: "workflow_step_count",
        type: .counter,
        unit: "count",
        target: "-",
        summary: "Number of workflow steps executed"
    )
    public static let workflowSuccessRate = MetricDefinition(
        id: "wflow_003",
        name: "workflow_success_rate",
        type: .rate,
        unit: "%",
        target: ">95%",
        summary: "Percentage of successful workflows"
    )
    public static let workflowParallelSpeedup = MetricDefinition(
        id: "wflow_004",
        name: "workflow_parallel_speedup",
        type: .gauge,
        unit: "ratio",
        target: ">1.5x",
        summary: "Speedup from parallel execution"
    )
    public static let workflowErrorRecoveryTime = MetricDefinition(
        id: "wflow_005",
        name: "workflow_error_recovery_time_ms",
        type: .timing,
        unit: "ms",
        target: "<1s",
        summary: "Time to recover from errors"
    )

    // MARK: - Quorum
    public static let quorumParticipationRate = MetricDefinition(
        id: "quorum_001",
        name: "quorum_participation_rate",
        type: .rate,
        unit: "%",
        target: ">90%",
        summary: "Models participating in quorum"
    )
    public static let quorumConsensusScore = MetricDefinition(
        id: "quorum_002",
        name: "quorum_consensus_score",
        type: .gauge,
        unit: "0-1",
        target: ">0.8",
        summary: "Agreement score among models"
    )
    public static let quorumLatency = MetricDefinition(
        id: "quorum_003",
        name: "quorum_latency_ms",
        type: .timing,
        unit: "ms",
        target: "<500ms",
        summary: "Time to reach consensus"
    )
    public static let quorumModelCount = MetricDefinition(
        id: "quorum_004",
        name: "quorum_model_count",
        type: .gauge,
        unit: "count",
        target: "5",
        summary: "Number of models in quorum"
    )
    public static let quorumValidationRate = MetricDefinition(
        id: "quorum_005",
        name: "quorum_validation_rate",
        type: .rate,
        unit: "%",
        target: "-",
        summary: "Rate of quorum validations triggered"
    )

    /// All 25, in catalog order.
    public static let all: [MetricDefinition] = [
        routingDecisionTime, routingConfidenceScore, routingCacheHitRate, routingStrategyCount, routingFallbackRate,
        stateGetTime, stateSetTime, stateLockContention, stateOperationCount, stateSnapshotSize,
        coordinationOverhead, coordinationAgentCount, coordinationSyncTime, coordinationSignalCount,
        coordinationDependencyWait,
        workflowExecutionTime, workflowStepCount, workflowSuccessRate, workflowParallelSpeedup,
        workflowErrorRecoveryTime,
        quorumParticipationRate, quorumConsensusScore, quorumLatency, quorumModelCount, quorumValidationRate,
    ]

    /// Catalog entries by name.
    public static let byName: [String: MetricDefinition] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// The tag keys the design lists per category.
    public static let tags: [MetricCategory: [String]] = [
        .routing: ["agent_type", "routing_strategy", "cache_status", "confidence_level"],
        .state: ["operation_type", "key_prefix", "lock_wait_time", "contention_level"],
        .coordination: ["coordination_type", "agent_count", "sync_point", "dependency_type"],
        .workflow: ["workflow_type", "step_count", "parallel_mode", "error_type"],
        .quorum: ["quorum_type", "model_count", "consensus_level", "validation_outcome"],
    ]

    /// True when `name` is a metric name the collector accepts (`[a-z][a-z0-9]*(_[a-z0-9]+)+`, 3 to 100 bytes).
    public static func isValidName(_ name: String) -> Bool { Validation.isValidName(name) }

    /// The `metric_id` of a name: the catalog id, or for a name outside the catalog `custom_` and 8 hex digits of
    /// the name's FNV-1a hash (deterministic, so it need not be stored).
    public static func metricID(for name: String) -> String {
        if let definition = byName[name] { return definition.id }
        var hash: UInt32 = 0x811C_9DC5
        for byte in name.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 0x0100_0193
        }
        let hex = String(hash, radix: 16)
        return "custom_" + String(repeating: "0", count: 8 - hex.count) + hex
    }
}
