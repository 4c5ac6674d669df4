"""Emitted in Python, shipped with `walctl ship --drain` to PostgreSQL: the rows equal what Python passed, values
exact. Needs WALCTL_TEST_POSTGRES (a conninfo with dbname=postgres, as tools/test.sh exports it)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import uuid

import pytest

import walctl
from conftest import walctl_binary

SERVER = os.environ.get("WALCTL_TEST_POSTGRES")

pytestmark = pytest.mark.skipif(
    not SERVER, reason="WALCTL_TEST_POSTGRES is not set (tools/test.sh or tools/python-test.sh with a server sets it)"
)


def psql(conninfo: str, sql: str) -> str:
    return subprocess.run(
        ["psql", conninfo, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def database():
    name = "walctl_py_" + uuid.uuid4().hex[:12]
    psql(SERVER, f"CREATE DATABASE {name}")
    yield SERVER.replace("dbname=postgres", f"dbname={name}")
    psql(SERVER, f"DROP DATABASE {name} WITH (FORCE)")


def test_rows_in_postgresql_equal_what_python_passed(log_dir, database):
    rng = random.Random(1515)
    sent = []
    with walctl.MetricsCollector(log_dir, agent_id="py-agent", use_environment=False) as collector:
        decide = collector.handle(walctl.catalog.ROUTING_DECISION_TIME, tags={"agent_type": "router"})
        for index in range(500):
            value = rng.uniform(-1e9, 1e9) if index % 7 else rng.random() * 1e-300  # exact doubles, tiny and huge
            correlation = f"corr-{index}"
            kind = index % 4
            if kind == 0:
                result = decide.record(value, correlation_id=correlation)
                row = ("routing_decision_time_ms", "timing", "ms", {"agent_type": "router"}, "py-agent")
            elif kind == 1:
                tags = {"workflow_type": f"w{index % 3}", "step_count": str(index)}
                result = collector.record_rate("workflow_success_rate", value, tags, correlation, agent_id="other")
                row = ("workflow_success_rate", "rate", "%", tags, "other")
            elif kind == 2:
                result = collector.record_gauge("state_snapshot_size_kb", value, "KB", None, correlation)
                row = ("state_snapshot_size_kb", "gauge", "KB", {}, "py-agent")
            else:
                tags = {"model_count": "3", "unicode": "naïve ☃"}
                result = collector.record_gauge("quorum_model_count", value, "count", tags, correlation)
                row = ("quorum_model_count", "gauge", "count", tags, "py-agent")
            assert result.recorded
            sent.append((correlation, value, *row))

    shipped = subprocess.run(
        [walctl_binary(), "ship", "--dir", str(log_dir), "--postgres", database, "--drain"],
        capture_output=True,
        text=True,
    )
    assert shipped.returncode == 0, shipped.stderr

    tables = ["agent_routing_metrics", "agent_workflow_metrics", "agent_state_metrics", "agent_quorum_metrics"]
    union = " UNION ALL ".join(
        f"SELECT correlation_id, value::text, metric_name, metric_type, unit, tags::text, agent_id FROM {t}"
        for t in tables
    )
    rows = {}
    for row in json.loads(psql(database, f"SELECT json_agg(r) FROM ({union}) r")):
        assert row["correlation_id"] not in rows, "a row shipped twice"
        rows[row["correlation_id"]] = row
    assert len(rows) == len(sent)
    for correlation, value, name, type_, unit, tags, agent in sent:
        row = rows[correlation]
        assert float(row["value"]) == value, (correlation, row["value"], value)
        assert (row["metric_name"], row["metric_type"], row["unit"], row["agent_id"]) == (name, type_, unit, agent)
        assert json.loads(row["tags"]) == tags

