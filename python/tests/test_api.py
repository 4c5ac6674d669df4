"""The Python API around the records: results (sync and awaited), handles, catalog, per-process directories, fork,
exit, and the GIL policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import walctl
from walctl import EmitResult, MetricType, catalog
from conftest import inspect_records


def test_results_are_values_and_awaitables(log_dir):
    with walctl.MetricsCollector(log_dir, use_environment=False) as collector:
        first = collector.record_timing("routing_decision_time_ms", 1.5)
        assert isinstance(first, EmitResult)
        assert (first.status, first.recorded, first.reason, first.code) == ("ok", True, None, 0)

        async def awaited():
            return await collector.record_gauge("state_snapshot_size_kb", 512, "KB")

        second = asyncio.run(awaited())
        assert second.recorded and second.seq == first.seq + 1
        assert repr(second) == f"EmitResult(ok, seq={second.seq})"
        assert asyncio.run(_await(collector.flush_all())) is None
        assert asyncio.run(_await(collector.sync())) is None
    assert len(inspect_records(log_dir)) == 2


async def _await(awaitable):
    return await awaitable


def test_handles_record_with_resolved_tags_and_catalog_constants(log_dir):
    assert len(catalog.ALL) == 25 and len(catalog.BY_NAME) == 25
    assert catalog.QUORUM_CONSENSUS_SCORE.type is MetricType.GAUGE
    with walctl.MetricsCollector(log_dir, agent_id="h", use_environment=False) as collector:
        decide = collector.handle("routing_decision_time_ms", tags={"agent_type": "router"})
        assert (decide.name, decide.unit, decide.type_code, decide.tags) == (
            "routing_decision_time_ms", "ms", 0, {"agent_type": "router"})
        custom = collector.handle("custom_queue_depth", metric_type=MetricType.GAUGE, unit="items")
        assert decide.record(12.5, correlation_id="r-1").recorded
        assert decide.record(7).recorded
        assert custom.record(3).recorded
        assert collector.record(catalog.QUORUM_CONSENSUS_SCORE, 0.91, tags={"quorum_type": "models"}).recorded
    payloads = [(e["payload"]["metric_name"], e["payload"]["value"], e["payload"]["tags"], e["correlation_id"])
                for e in inspect_records(log_dir)]
    assert payloads == [
        ("routing_decision_time_ms", 12.5, {"agent_type": "router"}, "r-1"),
        ("routing_decision_time_ms", 7, {"agent_type": "router"}, None),
        ("custom_queue_depth", 3, {}, None),
        ("quorum_consensus_score", 0.91, {"quorum_type": "models"}, None),
    ]


def test_records_from_many_threads_all_land(log_dir):
    collector = walctl.MetricsCollector(log_dir, use_environment=False)
    handle = collector.handle(catalog.STATE_GET_TIME)

    def emit(thread: int) -> None:
        for i in range(2000):
            if i % 2:
                handle.record(i, correlation_id=f"{thread}-{i}")
            else:
                collector.record_timing("state_get_time_ms", i, correlation_id=f"{thread}-{i}")

    threads = [threading.Thread(target=emit, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    collector.close()
    ids = [e["correlation_id"] for e in inspect_records(log_dir)]
    assert sorted(ids) == sorted(f"{t}-{i}" for t in range(4) for i in range(2000))


def test_process_log_directory_and_fork_reopens_own_log_with_handles_following(tmp_path):
    root = tmp_path / "root"
    assert walctl.process_log_directory(root, "agent", 42) == str(root / "agent-42")
    collector = walctl.MetricsCollector(per_process_root=root, agent_id="agent", use_environment=False)
    assert collector.directory == walctl.process_log_directory(root, "agent")
    handle = collector.handle(catalog.ROUTING_DECISION_TIME)
    handle.record(1.0)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = handle.record(2.0).recorded and collector.record_timing("routing_decision_time_ms", 3.0).recorded
            collector.close()
            os.write(writer, f"{ok} {collector.directory}".encode())
        finally:
            os._exit(0)
    os.close(writer)
    ok, child_directory = os.read(reader, 1000).decode().split(" ")
    os.waitpid(pid, 0)
    assert ok == "True" and child_directory == str(root / f"agent-{pid}")
    handle.record(4.0)
    collector.close()
    assert [e["payload"]["value"] for e in inspect_records(root / f"agent-{os.getpid()}")] == [1.0, 4.0]
    assert [e["payload"]["value"] for e in inspect_records(child_directory)] == [2.0, 3.0]


def test_per_process_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_DIR", str(tmp_path))
    monkeypatch.setenv("METRICS_PER_PROCESS", "true")
    monkeypatch.setenv("METRICS_AGENT_ID", "envagent")
    with walctl.MetricsCollector() as collector:
        assert collector.directory == str(tmp_path / f"envagent-{os.getpid()}")


def test_interpreter_exit_closes_the_collector(log_dir):
    """No close() call: atexit seals the records, so a reader sees them without any recovery."""
    code = textwrap.dedent(
        """
        import sys, walctl
        collector = walctl.init_metrics(sys.argv[1], agent_id="exit", use_environment=False)
        for i in range(100):
            collector.record_counter("state_operation_count", i)
        """
    )
    subprocess.run([sys.executable, "-c", code, str(log_dir)], check=True)
    assert [e["payload"]["value"] for e in inspect_records(log_dir)] == list(range(100))


def test_gil_is_released_only_where_a_record_can_wait(tmp_path):
    with walctl.MetricsCollector(tmp_path / "a", use_environment=False) as default:
        assert default.may_block is False
    with walctl.MetricsCollector(tmp_path / "b", when_full="block:200", use_environment=False) as blocking:
        assert blocking.may_block is True
        assert blocking.record_timing("routing_decision_time_ms", 1.0, {"k": "v"}, "c").recorded
    with walctl.MetricsCollector(tmp_path / "c", durability="sync", use_environment=False) as synchronous:
        assert synchronous.may_block is True
        assert synchronous.record_timing("routing_decision_time_ms", 1.0).recorded


def test_second_writer_of_a_directory_is_refused(log_dir):
    with walctl.MetricsCollector(log_dir, use_environment=False):
        with pytest.raises(walctl.MetricsError):
            walctl.MetricsCollector(log_dir, use_environment=False)


def test_a_log_whose_symbol_table_is_damaged_is_refused_and_left_as_it_is(log_dir):
    """A flipped bit in an entry of metrics.symbols that later entries follow: the binding opens through the same
    writer as the CLI, which refuses rather than give the ids of the damaged entries to new strings."""
    with walctl.MetricsCollector(log_dir, use_environment=False) as collector:
        for index in range(30):
            assert collector.record_metric(MetricType.GAUGE, f"custom_probe_{index}_count", 1.0, "count").recorded
    path = log_dir / "metrics.symbols"
    data = bytearray(path.read_bytes())
    data[64 + 9] ^= 0x01  # the first entry's payload; 60-odd valid entries follow it
    path.write_bytes(bytes(data))
    with pytest.raises(walctl.MetricsError, match="damaged at byte 64"):
        walctl.MetricsCollector(log_dir, use_environment=False)
    assert path.read_bytes() == bytes(data)


def test_records_by_name_keep_their_own_tags_through_the_handle_cache(log_dir):
    """By-name records reuse cached handles: many distinct tag sets (evicting each other), tag orders, agents,
    types and units must each land with exactly what the call passed."""
    import random

    rng = random.Random(7)
    expected = []
    with walctl.MetricsCollector(log_dir, agent_id="default", use_environment=False) as collector:
        for index in range(3000):
            tags = {f"k{j}": f"v{rng.randrange(40)}" for j in rng.sample(range(5), rng.randrange(4))}
            agent = rng.choice([None, "a1", "a2"])
            if index % 3 == 0:
                result = collector.record_gauge("state_snapshot_size_kb", index, "KB", tags, f"c{index}", agent)
                expected.append(("state_snapshot_size_kb", "gauge", "KB"))
            elif index % 3 == 1:
                result = collector.record_counter("state_operation_count", index, tags, f"c{index}", agent)
                expected.append(("state_operation_count", "counter", "count"))
            else:
                result = collector.record_gauge("state_snapshot_size_kb", index, "MB", tags, f"c{index}", agent)
                assert result.reason == "conflicting_definition"  # one unit per name, cached or not
                expected.append(None)
                continue
            assert result.recorded
            expected[-1] += (tags, agent or "default", index)
    records = [e["payload"] for e in inspect_records(log_dir)]
    wanted = [item for item in expected if item is not None]
    assert len(records) == len(wanted)
    for payload, (name, type_, unit, tags, agent, value) in zip(records, wanted):
        assert (payload["metric_name"], payload["metric_type"], payload["unit"]) == (name, type_, unit)
        assert (payload["tags"], payload["agent_id"], payload["value"]) == (tags, agent, value)
        assert payload["correlation_id"] == f"c{value}"


def test_a_record_blocked_on_a_full_log_releases_the_gil(tmp_path):
    """On a filesystem that holds the staging area and one segment, the log fills up; with block:1500 the next record
    waits 1.5 s and is dropped. During that wait another Python thread keeps running (it could not if the GIL were
    held). The probe thread wakes every millisecond; it is a witness, not a synchronization."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=70m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs permission to mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        collector = walctl.MetricsCollector(mount_point / "log", when_full="block:1500", use_environment=False)
        assert collector.may_block
        handle = collector.handle(catalog.ROUTING_DECISION_TIME)
        rng = __import__("random").Random(3)
        ids = ["%032x" % rng.getrandbits(128) for _ in range(20000)]  # hard to compress: the log fills sooner
        ticks = [0]
        stop = threading.Event()

        def probe() -> None:
            while not stop.wait(0.001):
                ticks[0] += 1

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            for index in range(5_000_000):
                before = ticks[0]
                started = time.perf_counter()
                result = handle.record(float(index), ids[index % 20000])
                if not result.recorded:
                    waited, ticked = time.perf_counter() - started, ticks[0] - before
                    break
            else:
                pytest.fail("the log never filled up")
        finally:
            stop.set()
            prober.join()
        assert result.status == "dropped"
        assert waited >= 1.4
        assert ticked >= 100, f"the other thread ran {ticked} times in {waited:.2f} s: the GIL was held"
        with pytest.raises(walctl.MetricsError):
            collector.close()  # records still staged: no space to seal them (the next open recovers them)
        del collector, handle  # unmaps the log's files
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)
