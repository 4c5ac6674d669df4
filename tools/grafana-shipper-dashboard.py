#!/usr/bin/env python3
"""Writes dashboards/grafana/dashboards/shipper.json: the shipper's own dashboard, over the Prometheus that scrapes
`walctl ship --http` (/metrics; datasource uid walctl-prometheus). The checked-in file is this script's output.

Every panel is PromQL over the walctl_* series documented in ShipperMonitor.swift. Filters: $instance (the scraped
shipper) and $sink (postgres, kafka). Each target carries "walctl": {"expects_data": bool}, read by the test that
runs every expression against a real Prometheus scraping a real shipper (WALObserveTests).

Run: python3 tools/grafana-shipper-dashboard.py
"""
import json
import os

DS = {"type": "prometheus", "uid": "walctl-prometheus"}
OUT = os.path.join(os.path.dirname(__file__), "..", "dashboards", "grafana", "dashboards", "shipper.json")
SEL = 'instance=~"$instance", sink=~"$sink"'
LOG = 'instance=~"$instance"'


def variable(name, label, query):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": name}, "definition": query,
        "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1,
    }


class Layout:
    def __init__(self):
        self.panels, self.y, self.x, self.next_id = [], 0, 0, 1

    def row(self, title):
        if self.x:
            self.y, self.x = self.y + 8, 0
        self.panels.append({"type": "row", "title": title, "id": self.next_id, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.next_id += 1
        self.y += 1

    def panel(self, title, kind, targets, description, unit=None, width=8, instant=False):
        if self.x + width > 24:
            self.y, self.x = self.y + 8, 0
        self.panels.append({
            "id": self.next_id, "type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": {"h": 8 if kind != "stat" else 4, "w": width, "x": self.x, "y": self.y},
            "targets": [
                {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                 "instant": instant, "range": not instant, "format": "table" if kind == "table" else "time_series",
                 "walctl": {"expects_data": expects}}
                for i, (expr, legend, expects) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
            "options": {},
        })
        self.next_id += 1
        self.x += width


def shipper():
    l = Layout()
    l.row("Health: is every sink making progress?")
    l.panel("Healthy", "stat", [(f"min by (sink) (walctl_ship_healthy{{{SEL}}})", "{{sink}}", True)],
            "1 while /healthz is happy with the sink; 0 when it stopped, failed every attempt or committed nothing "
            "for --stalled-after while records wait.", width=6)
    l.panel("Records waiting", "stat", [(f"sum by (sink) (walctl_ship_lag_records{{{SEL}}})", "{{sink}}", True)],
            "Sealed in the logs and not yet committed.", width=6)
    l.panel("Oldest waiting record", "stat", [(f"max by (sink) (walctl_ship_lag_seconds{{{SEL}}})", "{{sink}}", True)],
            "Age of the oldest record read and not yet committed.", unit="s", width=6)
    l.panel("Since the last commit", "stat",
            [(f"max by (sink) (walctl_ship_seconds_since_progress{{{SEL}}})", "{{sink}}", True)],
            "An idle shipper is fine; a long time here with records waiting is not.", unit="s", width=6)
    l.row("Throughput")
    l.panel("Records shipped", "timeseries",
            [(f"sum by (sink) (rate(walctl_ship_records_total{{{SEL}}}[$__rate_interval]))", "{{sink}}", True)],
            "Records committed per second.", unit="recps")
    l.panel("Bytes shipped", "timeseries",
            [(f"sum by (sink) (rate(walctl_ship_bytes_total{{{SEL}}}[$__rate_interval]))", "{{sink}}", True)],
            "Encoded record bytes committed per second.", unit="Bps")
    l.panel("Batches", "timeseries",
            [(f"sum by (sink) (rate(walctl_ship_batches_total{{{SEL}}}[$__rate_interval]))", "{{sink}}", True)],
            "Batches (transactions, produce rounds) committed per second.", unit="ops")
    l.row("Lag")
    l.panel("Lag in records", "timeseries", [(f"sum by (sink) (walctl_ship_lag_records{{{SEL}}})", "{{sink}}", True)],
            "Records sealed and not yet committed, over all logs.")
    l.panel("Lag in seconds", "timeseries", [(f"max by (sink) (walctl_ship_lag_seconds{{{SEL}}})", "{{sink}}", True)],
            "The oldest record waiting, per sink.", unit="s")
    l.panel("Logs furthest behind", "table",
            [(f"topk(10, walctl_ship_lag_records{{{SEL}}})", "{{sink}} {{dir}}", True)],
            "The ten logs with the most records waiting.", instant=True)
    l.row("Errors and refusals")
    l.panel("Failed attempts by kind", "timeseries",
            [(f"sum by (sink, kind) (rate(walctl_ship_errors_total{{{SEL}}}[$__rate_interval]))", "{{sink}} {{kind}}",
              False)],
            "Each failed attempt is retried after a backoff (connection, unavailable, timeout, ...).", unit="ops")
    l.panel("Dead-lettered records", "timeseries",
            [(f"sum by (sink) (increase(walctl_ship_dead_letters_total{{{SEL}}}[1h]))", "{{sink}}", True)],
            "Records the sink refused for good in the last hour (walctl_dead_letters, dead-letters/kafka.jsonl).")
    l.panel("Passed over", "timeseries",
            [(f"sum by (sink) (increase(walctl_ship_skipped_total{{{SEL}}}[1h]))", "{{sink}}", True)],
            "Gaps, damaged regions and undecodable records reported in the last hour.")
    l.row("Logs on disk")
    l.panel("Disk used by the logs", "timeseries", [(f"sum(walctl_log_bytes_on_disk{{{LOG}}})", "all logs", True)],
            "Bytes allocated to segments and staging files.", unit="bytes")
    l.panel("Staged records", "timeseries", [(f"sum(walctl_log_staged_records{{{LOG}}})", "staged", True)],
            "Appended and durable in staging, not sealed yet.")
    l.panel("Largest logs", "table", [(f"topk(10, walctl_log_bytes_on_disk{{{LOG}}})", "{{dir}}", True)],
            "The ten logs using the most disk.", unit="bytes", instant=True)
    l.row("Alerts (with --alerts)")
    l.panel("Alerts fired", "timeseries",
            [(f"sum(increase(walctl_alerts_fired_total{{{LOG}}}[5m]))", "fired", False)],
            "Alerts fired in the last 5 minutes.")
    l.panel("Deliveries by channel", "timeseries",
            [(f"sum by (channel) (increase(walctl_alerts_delivered_total{{{LOG}}}[5m]))", "{{channel}} delivered", False),
             (f"sum by (channel) (increase(walctl_alerts_delivery_failures_total{{{LOG}}}[5m]))", "{{channel}} failed",
              False)],
            "Deliveries and failed attempts (retried) per channel, last 5 minutes.")
    l.panel("Alerts dead-lettered", "timeseries",
            [(f"sum by (channel) (increase(walctl_alerts_dead_letters_total{{{LOG}}}[1h]))", "{{channel}}", False)],
            "Alerts given up on (out of attempts or budget) per channel, last hour.")
    return {
        "uid": "walctl-shipper", "title": "walctl: the shipper",
        "description": "The shipper's own series from `walctl ship --http` /metrics, scraped by Prometheus.",
        "tags": ["walctl"], "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": False,
        "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [variable("instance", "shipper", "label_values(walctl_ship_logs, instance)"),
                                variable("sink", "sink", "label_values(walctl_ship_logs, sink)")]},
        "panels": l.panels, "annotations": {"list": []},
    }


with open(OUT, "w") as f:
    json.dump(shipper(), f, indent=2, ensure_ascii=False)
    f.write("\n")
