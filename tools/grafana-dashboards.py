#!/usr/bin/env python3
"""Writes dashboards/grafana/dashboards/{realtime,historical}.json (the checked-in files are its output).

Real-time panels read the raw metric tables, always through $__timeFilter(timestamp) so the daily partitions are
pruned. Historical panels read walctl_rollup_1h (exact counts, sums, min, max; percentiles from the merged
histogram, within 1 %). Filters:
  $agent       every panel: agent_id IN ($agent), "All" = '__all'
  $agent_type  routing rows only (the only category tagged agent_type): tags->>'agent_type' / main_tag
  $latency     historical: which latency metric the percentile panels show

Run: python3 tools/grafana-dashboards.py
"""
import json
import os

DS = {"type": "grafana-postgresql-datasource", "uid": "walctl-postgres"}
OUT = os.path.join(os.path.dirname(__file__), "..", "dashboards", "grafana", "dashboards")

RAW_AGENT = "('__all' IN ($agent) OR agent_id IN ($agent))"
RAW_AGENT_TYPE = "('__all' IN ($agent_type) OR tags ->> 'agent_type' IN ($agent_type))"
ROLLUP_FILTER = (
    "('__all' IN ($agent) OR agent_id IN ($agent))"
    " AND (category <> 'routing' OR '__all' IN ($agent_type) OR main_tag IN ($agent_type))"
)


def variable(name, label, query):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": "'__all'",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


AGENT_TYPE = variable(
    "agent_type",
    "agent type",
    "SELECT DISTINCT main_tag FROM walctl_rollup_1h WHERE category = 'routing' AND main_tag <> '' ORDER BY 1",
)
AGENT = variable("agent", "agent", "SELECT DISTINCT agent_id FROM walctl_rollup_1h WHERE agent_id <> '' ORDER BY 1")
LATENCIES = [
    "routing_decision_time_ms",
    "state_get_time_ms",
    "state_set_time_ms",
    "state_lock_contention_ms",
    "coordination_overhead_ms",
    "coordination_sync_time_ms",
    "coordination_dependency_wait_ms",
    "workflow_execution_time_ms",
    "workflow_error_recovery_time_ms",
    "quorum_latency_ms",
]
LATENCY = {
    "name": "latency",
    "label": "latency metric",
    "type": "custom",
    "query": ",".join(LATENCIES),
    "multi": False,
    "includeAll": False,
    "current": {"selected": True, "text": "state_get_time_ms", "value": "state_get_time_ms"},
    "options": [{"selected": n == "state_get_time_ms", "text": n, "value": n} for n in LATENCIES],
}


class Layout:
    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title):
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append(
            {"type": "row", "title": title, "id": self.next_id, "collapsed": False,
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []}
        )
        self.next_id += 1
        self.y += 1

    def panel(self, title, kind, sql, columns, description="", fmt="time_series", width=8, unit=None,
              long_range=False):
        if self.x + width > 24:
            self.y += 8
            self.x = 0
        panel = {
            "id": self.next_id,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "targets": [{"refId": "A", "datasource": DS, "editorMode": "code", "format": fmt, "rawQuery": True,
                         "rawSql": sql}],
            "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
            "options": {},
            # Read by the tests: the columns the panel expects, and whether it must read rollups only.
            "walctl": {"columns": columns, "long_range": long_range},
        }
        self.panels.append(panel)
        self.next_id += 1
        self.x += width


def dashboard(uid, title, description, layout, time_from, refresh, templating):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["walctl"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": templating},
        "panels": layout.panels,
        "annotations": {"list": []},
    }


def realtime():
    l = Layout()
    l.row("Routing performance (1-minute window)")
    l.panel(
        "Average routing decision time", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 1m), avg(value) AS "decision time (ms)"
FROM agent_routing_metrics
WHERE $__timeFilter(timestamp) AND metric_name = 'routing_decision_time_ms' AND {RAW_AGENT_TYPE} AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "decision time (ms)"], unit="ms",
    )
    l.panel(
        "Routing cache hit rate", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 1m), avg(value) AS "cache hit rate (%)"
FROM agent_routing_metrics
WHERE $__timeFilter(timestamp) AND metric_name = 'routing_cache_hit_rate' AND {RAW_AGENT_TYPE} AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "cache hit rate (%)"], unit="percent",
    )
    l.panel(
        "Routing confidence score distribution (last minute)", "barchart",
        f"""SELECT to_char((width_bucket(least(greatest(value, 0), 0.9999), 0, 1, 10) - 1) / 10.0, 'FM0.0') AS bucket,
    count(*) AS decisions
FROM agent_routing_metrics
WHERE $__timeFilter(timestamp) AND timestamp > $__timeTo()::timestamptz - interval '1 minute'
    AND metric_name = 'routing_confidence_score' AND {RAW_AGENT_TYPE} AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["bucket", "decisions"], fmt="table",
    )
    l.row("State operations (1-minute window)")
    l.panel(
        "State get/set latency percentiles", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 1m),
    percentile_cont(0.5) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric_name = 'state_get_time_ms') AS "get p50",
    percentile_cont(0.95) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric_name = 'state_get_time_ms') AS "get p95",
    percentile_cont(0.99) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric_name = 'state_get_time_ms') AS "get p99",
    percentile_cont(0.5) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric_name = 'state_set_time_ms') AS "set p50",
    percentile_cont(0.95) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric_name = 'state_set_time_ms') AS "set p95",
    percentile_cont(0.99) WITHIN GROUP (ORDER BY value) FILTER (WHERE metric_name = 'state_set_time_ms') AS "set p99"
FROM agent_state_metrics
WHERE $__timeFilter(timestamp) AND metric_name IN ('state_get_time_ms', 'state_set_time_ms') AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "get p50", "get p95", "get p99", "set p50", "set p95", "set p99"], unit="ms",
    )
    l.panel(
        "Lock contention", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 1m),
    count(*) / 60.0 AS "contended acquisitions/s",
    avg(value) AS "average wait (ms)"
FROM agent_state_metrics
WHERE $__timeFilter(timestamp) AND metric_name = 'state_lock_contention_ms' AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "contended acquisitions/s", "average wait (ms)"],
    )
    l.panel(
        "State operation throughput", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 1m), count(*) / 60.0 AS "operations/s"
FROM agent_state_metrics
WHERE $__timeFilter(timestamp) AND metric_name IN ('state_get_time_ms', 'state_set_time_ms') AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "operations/s"], unit="ops",
    )
    l.row("Coordination overhead (5-minute window)")
    l.panel(
        "Average coordination time", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 5m),
    avg(value) FILTER (WHERE metric_name = 'coordination_overhead_ms') AS "overhead (ms)",
    avg(value) FILTER (WHERE metric_name = 'coordination_sync_time_ms') AS "sync time (ms)"
FROM agent_coordination_metrics
WHERE $__timeFilter(timestamp) AND metric_name IN ('coordination_overhead_ms', 'coordination_sync_time_ms')
    AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "overhead (ms)", "sync time (ms)"], unit="ms",
    )
    l.panel(
        "Active agents (last 5 minutes)", "stat",
        f"""SELECT count(DISTINCT agent_id) AS "active agents"
FROM agent_coordination_metrics
WHERE $__timeFilter(timestamp) AND timestamp > $__timeTo()::timestamptz - interval '5 minutes' AND {RAW_AGENT}""",
        ["active agents"], fmt="table",
    )
    l.panel(
        "Dependency wait times", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 5m), avg(value) AS "average wait (ms)", max(value) AS "max wait (ms)"
FROM agent_coordination_metrics
WHERE $__timeFilter(timestamp) AND metric_name = 'coordination_dependency_wait_ms' AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "average wait (ms)", "max wait (ms)"], unit="ms",
    )
    l.row("Workflow execution (5-minute window)")
    l.panel(
        "Workflow success rate", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 5m), avg(value) AS "success rate (%)"
FROM agent_workflow_metrics
WHERE $__timeFilter(timestamp) AND metric_name = 'workflow_success_rate' AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "success rate (%)"], unit="percent",
    )
    l.panel(
        "Average workflow execution time", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 5m), avg(value) AS "execution time (ms)"
FROM agent_workflow_metrics
WHERE $__timeFilter(timestamp) AND metric_name = 'workflow_execution_time_ms' AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "execution time (ms)"], unit="ms",
    )
    l.panel(
        "Parallel speedup ratio", "timeseries",
        f"""SELECT $__timeGroupAlias(timestamp, 5m), avg(value) AS "speedup (x)"
FROM agent_workflow_metrics
WHERE $__timeFilter(timestamp) AND metric_name = 'workflow_parallel_speedup' AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "speedup (x)"],
    )
    l.row("Alerts")
    l.panel(
        "Recent critical and warning alerts", "table",
        f"""SELECT fired_at AS "time", severity, metric_name, value, threshold, agent_id, alert_id
FROM walctl_alerts
WHERE $__timeFilter(fired_at) AND severity IN ('critical', 'warning') AND {RAW_AGENT}
ORDER BY fired_at DESC LIMIT 200""",
        ["time", "severity", "metric_name", "value", "threshold", "agent_id", "alert_id"], fmt="table", width=14,
    )
    l.panel(
        "Alert frequency", "timeseries",
        f"""SELECT $__timeGroupAlias(fired_at, $__interval),
    count(*) FILTER (WHERE severity = 'critical') AS critical,
    count(*) FILTER (WHERE severity = 'warning') AS warning,
    count(*) FILTER (WHERE severity = 'info') AS info
FROM walctl_alerts
WHERE $__timeFilter(fired_at) AND {RAW_AGENT}
GROUP BY 1 ORDER BY 1""",
        ["time", "critical", "warning", "info"], width=10,
    )
    return dashboard(
        "walctl-realtime", "walctl: real-time agent performance",
        "Live agent metrics from the raw tables (partition-pruned by $__timeFilter) and alerts from walctl_alerts.",
        l, "now-15m", "5s", [AGENT_TYPE, AGENT],
    )


def historical():
    l = Layout()
    rollup = "walctl_rollup_1h"
    l.row("Performance trends (7 days)")
    l.panel(
        "Daily average latency per metric", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d), metric_name AS metric, sum(sum) / sum(count) AS value
FROM {rollup}
WHERE $__timeFilter(hour) AND metric_name IN ('routing_decision_time_ms', 'state_get_time_ms', 'state_set_time_ms',
    'coordination_overhead_ms', 'workflow_execution_time_ms', 'quorum_latency_ms') AND {ROLLUP_FILTER}
GROUP BY 1, 2 ORDER BY 1""",
        ["time", "metric", "value"], unit="ms", long_range=True,
    )
    l.panel(
        "Percentile trends of $latency", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d),
    walctl_hist_percentile(walctl_hist_merge(hist), 0.5) AS p50,
    walctl_hist_percentile(walctl_hist_merge(hist), 0.95) AS p95,
    walctl_hist_percentile(walctl_hist_merge(hist), 0.99) AS p99
FROM {rollup}
WHERE $__timeFilter(hour) AND metric_name = '$latency' AND {ROLLUP_FILTER}
GROUP BY 1 ORDER BY 1""",
        ["time", "p50", "p95", "p99"], unit="ms", long_range=True,
        description="Daily percentiles merged from hourly histograms: within 1 % of the exact nearest-rank value.",
    )
    l.panel(
        "Anomalies in $latency (hourly average outside mean ± 3σ)", "timeseries",
        f"""WITH h AS (
    SELECT hour, (sum(sum) / sum(count))::float8 AS average FROM {rollup}
    WHERE $__timeFilter(hour) AND metric_name = '$latency' AND {ROLLUP_FILTER}
    GROUP BY hour
), b AS (
    SELECT hour, average, avg(average) OVER () AS mean, coalesce(stddev_samp(average) OVER (), 0) AS sigma FROM h
)
SELECT hour AS "time", average AS "hourly average", mean + 3 * sigma AS "upper band",
    greatest(mean - 3 * sigma, 0) AS "lower band",
    CASE WHEN abs(average - mean) > 3 * sigma THEN average END AS anomaly
FROM b ORDER BY 1""",
        ["time", "hourly average", "upper band", "lower band", "anomaly"], unit="ms", long_range=True,
    )
    l.row("Capacity analysis (30 days)")
    l.panel(
        "Agent utilization", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d),
    count(DISTINCT agent_id) FILTER (WHERE agent_id <> '') AS "active agents",
    sum(count)::float8 / greatest(count(DISTINCT agent_id) FILTER (WHERE agent_id <> ''), 1) AS "records per agent"
FROM {rollup}
WHERE $__timeFilter(hour) AND {ROLLUP_FILTER}
GROUP BY 1 ORDER BY 1""",
        ["time", "active agents", "records per agent"], long_range=True,
    )
    l.panel(
        "Workflow throughput", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d), main_tag AS metric, sum(count) AS value
FROM {rollup}
WHERE $__timeFilter(hour) AND metric_name = 'workflow_execution_time_ms' AND {ROLLUP_FILTER}
GROUP BY 1, 2 ORDER BY 1""",
        ["time", "metric", "value"], long_range=True,
        description="Workflows executed per day, by workflow_type.",
    )
    l.panel(
        "Resource consumption trends", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d),
    (sum(sum) FILTER (WHERE metric_name = 'state_snapshot_size_kb')
        / nullif(sum(count) FILTER (WHERE metric_name = 'state_snapshot_size_kb'), 0))::float8 AS "snapshot size (KB)",
    (sum(sum) FILTER (WHERE metric_name = 'coordination_agent_count')
        / nullif(sum(count) FILTER (WHERE metric_name = 'coordination_agent_count'), 0))::float8
        AS "agents coordinated",
    (sum(sum) FILTER (WHERE metric_name = 'quorum_model_count')
        / nullif(sum(count) FILTER (WHERE metric_name = 'quorum_model_count'), 0))::float8 AS "quorum models"
FROM {rollup}
WHERE $__timeFilter(hour) AND metric_name IN ('state_snapshot_size_kb', 'coordination_agent_count',
    'quorum_model_count') AND {ROLLUP_FILTER}
GROUP BY 1 ORDER BY 1""",
        ["time", "snapshot size (KB)", "agents coordinated", "quorum models"], long_range=True,
    )
    l.row("Quality gates (90 days)")
    l.panel(
        "Success rate trends", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d),
    (sum(sum) FILTER (WHERE metric_name = 'workflow_success_rate')
        / nullif(sum(count) FILTER (WHERE metric_name = 'workflow_success_rate'), 0))::float8 AS "workflow success (%)",
    (sum(sum) FILTER (WHERE metric_name = 'quorum_participation_rate')
        / nullif(sum(count) FILTER (WHERE metric_name = 'quorum_participation_rate'), 0))::float8
        AS "quorum participation (%)"
FROM {rollup}
WHERE $__timeFilter(hour) AND metric_name IN ('workflow_success_rate', 'quorum_participation_rate')
    AND {ROLLUP_FILTER}
GROUP BY 1 ORDER BY 1""",
        ["time", "workflow success (%)", "quorum participation (%)"], unit="percent", long_range=True,
    )
    l.panel(
        "Error patterns", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d), metric_name || ' / ' || main_tag AS metric, sum(count) AS value
FROM {rollup}
WHERE $__timeFilter(hour) AND metric_name IN ('workflow_error_recovery_time_ms', 'routing_fallback_rate')
    AND {ROLLUP_FILTER}
GROUP BY 1, 2 ORDER BY 1""",
        ["time", "metric", "value"], long_range=True,
        description="Error recoveries (by workflow_type) and routing fallbacks (by agent_type) per day.",
    )
    l.panel(
        "Recovery time trends", "timeseries",
        f"""SELECT $__timeGroupAlias(hour, 1d),
    walctl_hist_percentile(walctl_hist_merge(hist), 0.5) AS p50,
    walctl_hist_percentile(walctl_hist_merge(hist), 0.95) AS p95,
    walctl_hist_percentile(walctl_hist_merge(hist), 0.99) AS p99,
    max(max) AS "max"
FROM {rollup}
WHERE $__timeFilter(hour) AND metric_name = 'workflow_error_recovery_time_ms' AND {ROLLUP_FILTER}
GROUP BY 1 ORDER BY 1""",
        ["time", "p50", "p95", "p99", "max"], unit="ms", long_range=True,
    )
    return dashboard(
        "walctl-historical", "walctl: historical trends",
        "Trends from the hourly rollups (walctl_rollup_1h): exact counts, sums, min and max; percentiles within 1 %.",
        l, "now-7d", "5m", [AGENT_TYPE, AGENT, LATENCY],
    )


for name, board in [("realtime", realtime()), ("historical", historical())]:
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(board, f, indent=2, ensure_ascii=False)
        f.write("\n")
