"""The 25 agent metrics of the design, as constants (the Swift ``MetricCatalog``), so agent code does not spell
names, types and units by hand::

    collector.record(catalog.ROUTING_DECISION_TIME, 12.5, tags={"agent_type": "router"})
    decide = collector.handle(catalog.ROUTING_DECISION_TIME, tags={"agent_type": "router"})
"""

from __future__ import annotations

import enum
from typing import Dict, List, NamedTuple


class MetricType(enum.IntEnum):
    """The four metric types (values are the C interface's ``walctl_metric_type``)."""

    TIMING = 0
    """A duration in milliseconds (unit ``ms``)."""
    COUNTER = 1
    """A count of events (unit ``count``)."""
    GAUGE = 2
    """A value that goes up and down."""
    RATE = 3
    """A percentage, 0 to 100 (unit ``%``)."""


class MetricDefinition(NamedTuple):
    """A catalog metric: the design's id, name, type, unit, target and summary."""

    id: str
    name: str
    type: MetricType
    unit: str
    target: str
    summary: str


ROUTING_DECISION_TIME = MetricDefinition("route_001", "routing_decision_time_ms", MetricType.TIMING, "ms", "<5ms", "Time to select optimal agent")
ROUTING_CONFIDENCE_SCORE = MetricDefinition("route_002", "routing_confidence_score", MetricType.GAUGE, "0-1", ">0.8", "Confidence in routing decision")
ROUTING_CACHE_HIT_RATE = MetricDefinition("route_003", "routing_cache_hit_rate", MetricType.RATE, "%", ">80%", "Cache hit rate for routing decisions")
ROUTING_STRATEGY_COUNT = MetricDefinition("route_004", "routing_strategy_count", MetricType.COUNTER, "count", "-", "Number of routing strategies evaluated")
ROUTING_FALLBACK_RATE = MetricDefinition("route_005", "routing_fallback_rate", MetricType.RATE, "%", "<10%", "Rate of fallback to default routing")
STATE_GET_TIME = MetricDefinition("state_001", "state_get_time_ms", MetricType.TIMING, "ms", "<2ms", "Time to read from shared state")
STATE_SET_TIME = MetricDefinition("state_002", "state_set_time_ms", MetricType.TIMING, "ms", "<2ms", "Time to write to shared state")
STATE_LOCK_CONTENTION = MetricDefinition("state_003", "state_lock_contention_ms", MetricType.TIMING, "ms", "<5ms", "Time waiting for lock acquisition")
STATE_OPERATION_COUNT = MetricDefinition("state_004", "state_operation_count", MetricType.COUNTER, "count", "-", "Total state operations")
STATE_SNAPSHOT_SIZE = MetricDefinition("state_005", "state_snapshot_size_kb", MetricType.GAUGE, "KB", "<100KB", "Size of state snapshots")
COORDINATION_OVERHEAD = MetricDefinition("coord_001", "coordination_overhead_ms", MetricType.TIMING, "ms", "<3s", "Total coordination overhead per workflow")
COORDINATION_AGENT_COUNT = MetricDefinition("coord_002", "coordination_agent_count", MetricType.GAUGE, "count", "-", "Number of agents coordinated")
COORDINATION_SYNC_TIME = MetricDefinition("coord_003", "coordination_sync_time_ms", MetricType.TIMING, "ms", "<500ms", "Time spent in synchronization points")
COORDINATION_SIGNAL_COUNT = MetricDefinition("coord_004", "coordination_signal_count", MetricType.COUNTER, "count", "-", "Number of coordination signals sent")
COORDINATION_DEPENDENCY_WAIT = MetricDefinition("coord_005", "coordination_dependency_wait_ms", MetricType.TIMING, "ms", "<2s", "Time waiting for dependency resolution")
WORKFLOW_EXECUTION_TIME = MetricDefinition("wflow_001", "workflow_execution_time_ms", MetricType.TIMING, "ms", "<5s", "Total workflow execution time")
WORKFLOW_STEP_COUNT = MetricDefinition("wflow_002", "workflow_step_count", MetricType.COUNTER, "count", "-", "Number of workflow steps executed")
WORKFLOW_SUCCESS_RATE = MetricDefinition("wflow_003", "workflow_success_rate", MetricType.RATE, "%", ">95%", "Percentage of successful workflows")
WORKFLOW_PARALLEL_SPEEDUP = MetricDefinition("wflow_004", "workflow_parallel_speedup", MetricType.GAUGE, "ratio", ">1.5x", "Speedup from parallel execution")
WORKFLOW_ERROR_RECOVERY_TIME = MetricDefinition("wflow_005", "workflow_error_recovery_time_ms", MetricType.TIMING, "ms", "<1s", "Time to recover from errors")
QUORUM_PARTICIPATION_RATE = MetricDefinition("quorum_001", "quorum_participation_rate", MetricType.RATE, "%", ">90%", "Models participating in quorum")
QUORUM_CONSENSUS_SCORE = MetricDefinition("quorum_002", "quorum_consensus_score", MetricType.GAUGE, "0-1", ">0.8", "Agreement score among models")
QUORUM_LATENCY = MetricDefinition("quorum_003", "quorum_latency_ms", MetricType.TIMING, "ms", "<500ms", "Time to reach consensus")
QUORUM_MODEL_COUNT = MetricDefinition("quorum_004", "quorum_model_count", MetricType.GAUGE, "count", "5", "Number of models in quorum")
QUORUM_VALIDATION_RATE = MetricDefinition("quorum_005", "quorum_validation_rate", MetricType.RATE, "%", "-", "Rate of quorum validations triggered")

ALL: List[MetricDefinition] = [value for value in list(globals().values()) if isinstance(value, MetricDefinition)]
"""All 25, in catalog order."""

BY_NAME: Dict[str, MetricDefinition] = {definition.name: definition for definition in ALL}
"""Catalog entries by metric name."""

TAGS: Dict[str, List[str]] = {
    "routing": ["agent_type", "routing_strategy", "cache_status", "confidence_level"],
    "state": ["operation_type", "key_prefix", "lock_wait_time", "contention_level"],
    "coordination": ["coordination_type", "agent_count", "sync_point", "dependency_type"],
    "workflow": ["workflow_type", "step_count", "parallel_mode", "error_type"],
    "quorum": ["quorum_type", "model_count", "consensus_level", "validation_outcome"],
}
"""The tag keys the design lists per category."""
