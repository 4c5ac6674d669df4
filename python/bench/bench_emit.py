"""Per-emit cost, side by side in one run: the design's own Python collector (an asyncio lock and a dataclass into an
in-memory ring, as rebuilt in ../shared/bench/seed_collector.py: volatile, it loses everything on a crash) against
walctl's durable record_timing by name (3 tags and a correlation id, as the seed's loop) and through a handle.

usage: python bench/bench_emit.py [--count N] [--seed PATH]   (walctl installed: pip install ./python)

Each call is timed alone with perf_counter_ns and the timer's own cost (measured on an empty body) is subtracted;
p50 and p99 are over all calls of a row, "mean" is a separate untimed loop (total / count).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import walctl

TAGS = {"agent_type": "router", "routing_strategy": "smart", "cache_status": "hit"}
NAME = "routing_decision_time_ms"


def load_seed(path: Path):
    """The seed collector's module without its trailing asyncio.run(main(...))."""
    source = path.read_text()
    source = "\n".join(line for line in source.splitlines() if not line.startswith("asyncio.run(main("))
    module = types.ModuleType("seed_collector")
    sys.modules["seed_collector"] = module  # dataclasses look their module up
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module.MetricsCollector


def percentiles(samples):
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def timer_overhead(count: int) -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        t0 = clock()
        samples.append(clock() - t0)
    return percentiles(samples)[0]


def sync_row(label, call, count, overhead):
    clock = time.perf_counter_ns
    for i in range(min(count, 20000)):  # warm up (symbols interned, caches hot)
        call(i)
    samples = [0] * count
    for i in range(count):
        t0 = clock()
        call(i)
        samples[i] = clock() - t0 - overhead
    t0 = clock()
    for i in range(count):
        call(i)
    mean = (clock() - t0) / count
    p50, p99 = percentiles(samples)
    return label, p50, p99, mean


def async_row(label, make_call, count, overhead):
    async def run():
        call = make_call()
        clock = time.perf_counter_ns
        for i in range(min(count, 20000)):
            await call(i)
        samples = [0] * count
        for i in range(count):
            t0 = clock()
            await call(i)
            samples[i] = clock() - t0 - overhead
        t0 = clock()
        for i in range(count):
            await call(i)
        return samples, (clock() - t0) / count

    samples, mean = asyncio.run(run())
    p50, p99 = percentiles(samples)
    return label, p50, p99, mean


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--seed", type=Path, default=Path(__file__).resolve().parents[2] / ".." / "shared" / "bench"
                        / "seed_collector.py")
    arguments = parser.parse_args()
    count = arguments.count
    gc.disable()
    overhead = timer_overhead(count)
    rows = []

    if arguments.seed.exists():
        Seed = load_seed(arguments.seed)

        def make_seed():
            collector = Seed()
            return lambda i: collector.record_timing(NAME, float(i % 100), TAGS, "corr-1")

        rows.append(async_row("design's collector: await record_timing (volatile, in memory)", make_seed, count,
                              overhead))
    else:
        print(f"(no seed collector at {arguments.seed}: its row is left out)", file=sys.stderr)

    directory = tempfile.mkdtemp(prefix="walctl-bench-")
    try:
        collector = walctl.MetricsCollector(Path(directory) / "log", agent_id="bench", use_environment=False)
        record_timing = collector.record_timing
        rows.append(sync_row("walctl record_timing by name, 3 tags + correlation id",
                             lambda i: record_timing(NAME, float(i % 100), TAGS, "corr-1"), count, overhead))

        def make_awaited():
            async def call(i):
                return await record_timing(NAME, float(i % 100), TAGS, "corr-1")
            return call

        rows.append(async_row("walctl await record_timing by name, 3 tags + correlation id", make_awaited, count,
                              overhead))
        handle = collector.handle(NAME, tags=TAGS)
        record = handle.record
        rows.append(sync_row("walctl handle.record(value)", lambda i: record(float(i % 100)), count, overhead))
        rows.append(sync_row("walctl handle.record(value, correlation id)",
                             lambda i: record(float(i % 100), "corr-1"), count, overhead))
        stats = collector.stats()
        collector.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(f"python {sys.version.split()[0]}, {walctl.library_version()}, {count} calls per row, "
          f"timer overhead {overhead} ns subtracted; {stats['emitted']} records written durably")
    print(f"{'':62}  {'p50 ns':>8}  {'p99 ns':>8}  {'mean ns':>8}")
    for label, p50, p99, mean in rows:
        print(f"{label:62}  {p50:8.0f}  {p99:8.0f}  {mean:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
