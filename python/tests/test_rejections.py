"""Every rejection reason of the Swift collector is reachable from Python, as a result value or (raise_on_reject) an
exception, and nothing is written for any of them."""

from __future__ import annotations

import asyncio
import math

import pytest

import walctl
from walctl import MetricType, RejectedError, catalog
from conftest import inspect_records

LONG = "x" * 101

# (reason, call) with `c` the collector; each call is refused.
CASES = [
    ("invalid_name", lambda c: c.record_timing("Routing-Decision", 1.0)),
    ("invalid_name", lambda c: c.record_timing("toolong_" + "a" * 100, 1.0)),
    ("non_finite_value", lambda c: c.record_timing("routing_decision_time_ms", math.nan)),
    ("non_finite_value", lambda c: c.record_gauge("state_snapshot_size_kb", math.inf, "KB")),
    ("too_many_tags", lambda c: c.record_counter("state_operation_count", tags={f"k{i}": "v" for i in range(17)})),
    ("invalid_tag_key", lambda c: c.record_counter("state_operation_count", tags={"Bad Key": "v"})),
    ("tag_value_too_long", lambda c: c.record_counter("state_operation_count", tags={"key": "v" * 257})),
    ("invalid_unit", lambda c: c.record_gauge("custom_size_units", 1.0, "")),
    ("invalid_unit", lambda c: c.record_gauge("custom_size_units", 1.0, "u" * 21)),
    ("invalid_correlation_id", lambda c: c.record_timing("routing_decision_time_ms", 1.0, correlation_id=LONG)),
    ("invalid_correlation_id", lambda c: c.record_timing("routing_decision_time_ms", 1.0, correlation_id="")),
    ("invalid_agent_id", lambda c: c.record_timing("routing_decision_time_ms", 1.0, agent_id=LONG)),
    ("nul_character", lambda c: c.record_counter("state_operation_count", tags={"key": "a\0b"})),
    ("nul_character", lambda c: c.record_timing("routing_decision_time_ms", 1.0, correlation_id="a\0b")),
    ("conflicting_definition", lambda c: c.record_counter("routing_decision_time_ms", 1)),
    ("conflicting_definition", lambda c: c.record_gauge("routing_decision_time_ms", 1.0, "s")),
    ("invalid_type", lambda c: c.record_metric(9, "state_snapshot_size_kb", 1.0, "KB")),
]


def prime(collector) -> None:
    """Defines routing_decision_time_ms as a timing in ms (so a counter of that name conflicts), writes nothing."""
    collector.handle(catalog.ROUTING_DECISION_TIME)


@pytest.mark.parametrize("reason,call", CASES, ids=[f"{reason}-{index}" for index, (reason, _) in enumerate(CASES)])
def test_rejection_as_result_and_as_exception_writes_nothing(log_dir, reason, call):
    collector = walctl.MetricsCollector(log_dir, agent_id="agent", use_environment=False)
    prime(collector)
    result = call(collector)
    assert (result.status, result.reason, result.recorded, result.seq) == (reason, reason, False, None)
    assert asyncio.run(_awaited(call, collector)).reason == reason

    collector.raise_on_reject = True
    with pytest.raises(RejectedError) as raised:
        call(collector)
    assert raised.value.reason == reason
    assert reason in str(raised.value)
    counted = 3 if reason != "invalid_type" else 0  # invalid_type is refused by the C interface, before Swift counts
    assert collector.stats()["rejected"] == counted
    assert collector.stats()["emitted"] == 0
    collector.close()
    assert inspect_records(log_dir) == []


async def _awaited(call, collector):
    return await call(collector)


def test_log_unavailable_after_close_as_result_and_exception(log_dir):
    collector = walctl.MetricsCollector(log_dir, use_environment=False)
    handle = collector.handle(catalog.STATE_GET_TIME)
    assert collector.record_timing("routing_decision_time_ms", 1.0).recorded
    collector.close()
    assert collector.record_timing("routing_decision_time_ms", 1.0).reason == "log_unavailable"
    assert handle.record(1.0).reason == "log_unavailable"
    collector.raise_on_reject = True
    with pytest.raises(RejectedError, match="log_unavailable"):
        handle.record(1.0)
    assert len(inspect_records(log_dir)) == 1


def test_a_handle_for_refused_input_raises_whatever_the_mode(log_dir):
    with walctl.MetricsCollector(log_dir, use_environment=False) as collector:
        with pytest.raises(RejectedError) as raised:
            collector.handle("state_operation_count", tags={"Bad": "v"})
        assert raised.value.reason == "invalid_tag_key"
        with pytest.raises(RejectedError, match="invalid_name"):
            collector.handle("Nope", metric_type=MetricType.GAUGE, unit="x")
        with pytest.raises(TypeError):
            collector.handle("custom_not_in_catalog")  # needs metric_type and unit
    assert inspect_records(log_dir) == []


def test_wrong_python_types_raise_type_error_not_a_crash(log_dir):
    with walctl.MetricsCollector(log_dir, use_environment=False) as collector:
        with pytest.raises(TypeError):
            collector.record_timing("routing_decision_time_ms", "fast")
        with pytest.raises(TypeError):
            collector.record_timing(42, 1.0)
        with pytest.raises(TypeError):
            collector.record_timing("routing_decision_time_ms", 1.0, tags=["a"])
        with pytest.raises(TypeError):
            collector.record_timing("routing_decision_time_ms", 1.0, {1: "a"})
        with pytest.raises(UnicodeEncodeError):
            collector.record_timing("routing_decision_time_ms", 1.0, {"key": "\ud800"})
        with pytest.raises(TypeError):
            collector.record_timing("routing_decision_time_ms")
        with pytest.raises(TypeError):
            collector.record_timing("routing_decision_time_ms", 1.0, nope=1)
    assert inspect_records(log_dir) == []


def test_symbol_table_full_is_refused_with_nothing_written(log_dir):
    """A million distinct strings fill the symbol table; handles intern tag values without writing records."""
    collector = walctl.MetricsCollector(log_dir, use_environment=False)
    reason = None
    for index in range(1_100_000):
        try:
            collector.handle(catalog.STATE_GET_TIME, tags={"key_prefix": str(index)})
        except RejectedError as error:
            reason = error.reason
            break
    assert reason == "symbol_table_full"
    result = collector.record_timing("state_get_time_ms", 1.0, {"key_prefix": "one-more"})
    assert result.reason == "symbol_table_full"
    collector.close()
    assert inspect_records(log_dir) == []


def test_disabled_collector_writes_nothing(log_dir):
    with walctl.MetricsCollector(log_dir, enabled=False, use_environment=False) as collector:
        result = collector.record_timing("routing_decision_time_ms", 1.0)
        assert (result.status, result.recorded) == ("disabled", False)
        assert collector.handle(catalog.ROUTING_DECISION_TIME).record(1.0).status == "disabled"
    assert not log_dir.exists()


def test_invalid_setting_names_the_variable(log_dir, monkeypatch):
    with pytest.raises(walctl.MetricsError, match="METRICS_WHEN_FULL"):
        walctl.MetricsCollector(log_dir, when_full="sometimes")
    monkeypatch.setenv("METRICS_DURABILITY", "never")
    with pytest.raises(walctl.MetricsError, match="METRICS_DURABILITY"):
        walctl.MetricsCollector(log_dir)
    monkeypatch.delenv("METRICS_DURABILITY")
    with pytest.raises(walctl.MetricsError, match="METRICS_DIR"):
        walctl.MetricsCollector()


def test_a_catalog_metric_keeps_its_catalog_type_and_unit_from_the_first_call(log_dir):
    """A catalog name recorded first with another type or unit used to be accepted, and from then on the design's own
    record_timing under that name was refused as conflicting, even after reopening (found by a hostile tester)."""
    collector = walctl.MetricsCollector(log_dir, agent_id="agent", use_environment=False)
    assert collector.record_gauge("routing_decision_time_ms", 7, "s").reason == "conflicting_definition"
    assert collector.record_counter("routing_decision_time_ms", 1).reason == "conflicting_definition"
    assert collector.record_timing("routing_decision_time_ms", 12.5).recorded
    collector.close()
    reopened = walctl.MetricsCollector(log_dir, agent_id="agent", use_environment=False)
    assert reopened.record_timing("routing_decision_time_ms", 3.0).recorded
    reopened.close()
