/// The design's alert thresholds (its "Alert Thresholds" tables), as a thresholds file. `walctl alerts defaults`
/// prints it, as a starting point to copy and edit.
public enum DefaultThresholds {
    public static let yaml = """
        # walctl thresholds, version 1: the design's defaults.
        # Per metric: info / warning / critical thresholds; direction above (value > threshold, the default) or below
        # (value < threshold); optional window (last, or {aggregate: avg|p95|p99, duration: 60s, min_samples: N}),
        # tags (only records carrying these tag values) and cooldown (default 60s).
        version: 1
        metrics:
          routing_decision_time_ms:
            info: 20
            warning: 50
            critical: 100
          state_lock_contention_ms:
            critical: 50
          coordination_overhead_ms:
            warning: 5000
            critical: 10000
          workflow_success_rate:
            direction: below
            critical: 80
          quorum_consensus_score:
            direction: below
            critical: 0.6
          state_get_time_ms:
            warning: 10
          workflow_execution_time_ms:
            warning: 10000
          routing_cache_hit_rate:
            direction: below
            warning: 60
          coordination_agent_count:
            info: 10
          workflow_step_count:
            info: 50
          state_snapshot_size_kb:
            info: 500

        """
}
