"""A pool of 8 worker processes (multiprocessing, fork and spawn), each emitting into its own log under one root:
8 logs, every record present once, none in another process's log."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from pathlib import Path

import pytest

import walctl
from conftest import inspect_records

TASKS = 400


def initialize_spawned(root: str) -> None:
    walctl.init_metrics(per_process_root=root, agent_id="worker", use_environment=False)


def work(task: int) -> tuple:
    result = walctl.get_metrics_collector().record_counter(
        "workflow_step_count", task, tags={"workflow_type": "pool"}, correlation_id=f"task-{task}"
    )
    assert result.recorded, result
    return os.getpid(), task


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_of_8_workers_writes_8_logs_each_record_once(tmp_path: Path, method: str):
    root = tmp_path / "logs"
    context = multiprocessing.get_context(method)
    if method == "fork":
        # The parent's collector; each forked worker reopens its own {root}/worker-{pid} on fork.
        parent = walctl.init_metrics(per_process_root=root, agent_id="worker", use_environment=False)
        parent.record_counter("workflow_step_count", 0, correlation_id="parent")
        pool = context.Pool(8)
    else:
        pool = context.Pool(8, initializer=initialize_spawned, initargs=(str(root),))
    with pool:
        done = pool.map(work, range(TASKS), chunksize=5)
        pool.close()
        pool.join()
    if method == "fork":
        walctl.close()

    worker_pids = {pid for pid, _ in done}
    directories = sorted(path for path in root.iterdir() if path.name != f"worker-{os.getpid()}")
    assert len(directories) == 8
    assert {path.name for path in directories} >= {f"worker-{pid}" for pid in worker_pids}
    seen: Counter = Counter()
    for directory in directories:
        pid = int(directory.name.split("-")[1])
        for envelope in inspect_records(directory):
            task = int(envelope["correlation_id"].split("-")[1])
            seen[task] += 1
            assert (pid, task) in done, f"task {task} is in the log of {pid}, which did not run it"
            assert envelope["payload"]["value"] == task
    assert seen == Counter(range(TASKS)), "every record exactly once"
    if method == "fork":
        parent_log = inspect_records(root / f"worker-{os.getpid()}")
        assert [e["correlation_id"] for e in parent_log] == ["parent"]


def test_forked_child_of_a_fixed_directory_collector_raises_and_writes_nothing(log_dir):
    collector = walctl.MetricsCollector(log_dir, agent_id="parent", use_environment=False)
    handle = collector.handle("routing_decision_time_ms")
    collector.record_timing("routing_decision_time_ms", 1.0)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        outcome = []
        for call in (lambda: collector.record_timing("routing_decision_time_ms", 2.0), lambda: handle.record(3.0)):
            try:
                call()
                outcome.append("wrote")
            except walctl.ForkedError:
                outcome.append("forked")
        os.write(writer, ",".join(outcome).encode())
        os._exit(0)
    os.close(writer)
    assert os.read(reader, 100) == b"forked,forked"
    os.waitpid(pid, 0)
    collector.record_timing("routing_decision_time_ms", 4.0)
    collector.close()
    assert [e["payload"]["value"] for e in inspect_records(log_dir)] == [1.0, 4.0]
