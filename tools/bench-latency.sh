#!/usr/bin/env bash
# Append latency p50 / p99 / p99.9 for the segment log and the physical floor (mutex + memcpy into a MAP_SHARED
# mapping), measured in the same run by package-benchmark, with each figure's ratio to the floor.
# Usage: tools/bench-latency.sh
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
swift package --allow-writing-to-directory "$out" benchmark --target WALCoreBenchmarks \
    --filter 'append 100 B.*|floor.*' --format histogram --path "$out" --no-progress >/dev/null 2>&1
python3 - "$out" <<'PY'
import glob, os, sys

def percentile(path, wanted):
    rows = []
    for line in open(path):
        parts = line.split()
        if len(parts) >= 2:
            try:
                rows.append((float(parts[1]), float(parts[0])))
            except ValueError:
                pass
    return next(value for p, value in rows if p >= wanted)

def load(name):
    [path] = glob.glob(os.path.join(sys.argv[1], f"*{name}*wallClock.histogram.txt"))
    return [percentile(path, p) for p in (0.5, 0.99, 0.999)]

pairs = [("append_100_B,_1_thread", "floor:_mutex"), ("append_100_B,_2_threads", "floor,_2_threads")]
print(f"{'benchmark':40} {'p50 ns':>8} {'p99 ns':>8} {'p99.9 ns':>9}   ratio to floor (p50 / p99 / p99.9)")
for log, floor in pairs:
    a, f = load(log), load(floor)
    print(f"{log.replace('_', ' '):40} {a[0]:8.0f} {a[1]:8.0f} {a[2]:9.0f}   "
          + " / ".join(f"{x / y:.2f}x" for x, y in zip(a, f)))
    print(f"{('  floor: ' + floor.replace('_', ' ')):40} {f[0]:8.0f} {f[1]:8.0f} {f[2]:9.0f}")
PY
