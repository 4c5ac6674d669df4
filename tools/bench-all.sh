#!/usr/bin/env bash
# Runs the rows of README.md's performance table, each through the command or script that owns it, one at a time
# under the build lock (/tmp/walctl-build.lock: no build or other benchmark runs beside a measurement), and prints
# each row's figures with its floor or baseline and ratio. Full outputs stay in the printed log directory.
#
# Usage: tools/bench-all.sh [--rows LIST] [--quick] [--list]
#   --rows LIST  comma-separated row groups (default: all but host):
#                latency   append 1 thread / 2 threads saturating vs the floor (tools/bench-latency.sh)
#                core      WALCoreBenchmarks: allocations, 2 threads at 1M records/s offered, sustained, recovery,
#                          compression
#                metrics   WALMetricsBenchmarks: recordTiming through a handle / by name / with a UUID, allocations,
#                          bytes per record, envelopes to /dev/null
#                emit      `walctl emit --count` (traffic: generator and collector shares) and `--raw`, 2 threads
#                replay    `walctl replay D --to stdout > /dev/null` on `walctl emit` records
#                postgres  tools/bench-postgres.sh (ship to PostgreSQL vs plain COPY)
#                kafka     WALKafkaBenchmarks (ship to the Kafka mock vs a bare producer)
#                replay-pg tools/bench-replay.sh (replay --to postgres vs ship --drain)
#                host      tools/load-host.py (1,000 agent processes; long: not in the default set)
#   --quick      smaller counts for the walctl rows, one run of replay-pg, and the package-benchmark targets without
#                their slow benchmarks (bytes per record, envelopes, visibility, recovery, compression, sustained)
#   --list       print the row groups and exit
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rows="latency,core,metrics,emit,replay,postgres,kafka,replay-pg"
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --list) sed -n '/^#   --rows/,/^#   --quick/p' "$0" | sed '$d; s/^# \{0,3\}//'; exit 0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-all.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
wants() { [[ ",$rows," == *",$1,"* ]]; }
lock() { flock -o /tmp/walctl-build.lock "$@"; }

logs=$(mktemp -d /tmp/walctl-bench-all.XXXXXX)
echo "bench-all: $(date -u +%FT%TZ), $(nproc) cores, rows: $rows$([ $quick = 1 ] && echo ' (quick)'); logs in $logs"
summary="$logs/summary.txt"
: >"$summary"
row() { printf '| %s | %s | %s | %s | %s |\n' "$@" >>"$summary"; }

# package-benchmark rows print their text tables; quick mode cuts iterations.
benchmark_args=(--no-progress)
if [ $quick = 1 ]; then benchmark_args+=(--skip 'bytes per record.*|envelopes.*|append to visible.*|recovery.*|compression.*|sustained.*'); fi
run_benchmark() { # TARGET FILTER LOG
    (cd Benchmarks && lock swift package --allow-writing-to-package-directory benchmark --target "$1" \
        --filter "$2" "${benchmark_args[@]}") >"$3" 2>&1 || { echo "  (failed: see $3)"; return 0; }
}
# One cell of a package-benchmark text table: the row of METRIC under the benchmark titled BENCHMARK; COLUMN 1 is
# p0, then p25, p50 (3), p75, p90, p99 (6), p100.
pick() { # LOG BENCHMARK METRIC COLUMN
    python3 - "$@" <<'PY'
import re, sys
path, bench, metric, column = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
inside = False
for line in open(path, errors="replace"):
    if not line.startswith(("│", "╒", "╞", "├", "╘")) and bench in line:
        inside = True
    if inside and line.startswith("│") and metric in line:
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        print(cells[column] if column < len(cells) else "?")
        break
else:
    print("?")
PY
}

if [ "$quick" = 1 ]; then emit_count=300000; replay_count=300000; replay_runs=1; else
    emit_count=2000000; replay_count=1000000; replay_runs=3; fi
walctl_bin() {
    if [ -z "${WALCTL_BIN:-}" ]; then
        lock swift build -c release --product walctl >"$logs/build.log" 2>&1
        WALCTL_BIN=$(swift build -c release --show-bin-path)/walctl
    fi
    echo "$WALCTL_BIN"
}

if wants latency; then
    echo "== latency: tools/bench-latency.sh"
    lock tools/bench-latency.sh 2>&1 | tee "$logs/latency.txt" || echo "  (failed)"
    for which in "1 thread" "2 threads"; do
        line=$(grep "^append 100 B, $which" "$logs/latency.txt" || true)
        floor=$(grep -A1 "^append 100 B, $which" "$logs/latency.txt" | tail -n 1 || true)
        row "append 100 B, $which, p50 / p99 / p99.9 ns" "$(echo "$line" | awk '{print $(NF-7)" / "$(NF-6)" / "$(NF-5)}')" \
            "$(echo "$floor" | awk '{print $(NF-2)" / "$(NF-1)" / "$NF}')" "$(echo "$line" | awk '{print $(NF-4)" / "$(NF-2)" / "$NF}')" \
            "tools/bench-latency.sh"
    done
fi

if wants core; then
    echo "== core: WALCoreBenchmarks"
    run_benchmark WALCoreBenchmarks '.*' "$logs/core.txt"
    grep -E '^\| |^│|^[A-Za-z].*(append|floor|recovery|sustained|compression)' "$logs/core.txt" | head -120 || true
    row "2 threads at 1M records/s offered, append p50 / p99 / p99.9 ns" \
        "$(pick "$logs/core.txt" '1M records/s offered' 'append p50' 3) / $(pick "$logs/core.txt" '1M records/s offered' 'append p99 ' 3) / $(pick "$logs/core.txt" '1M records/s offered' 'append p99.9' 3)" \
        "floor $(pick "$logs/core.txt" '1M records/s offered' 'floor p50' 3) / $(pick "$logs/core.txt" '1M records/s offered' 'floor p99 ' 3) / $(pick "$logs/core.txt" '1M records/s offered' 'floor p99.9' 3)" \
        "" "WALCoreBenchmarks"
    row "recovery: open a crashed 1 GiB log, p50 ms" "$(pick "$logs/core.txt" 'recovery' 'Time (wall clock)' 3)" "" "" \
        "WALCoreBenchmarks"
fi

if wants metrics; then
    echo "== metrics: WALMetricsBenchmarks"
    run_benchmark WALMetricsBenchmarks '.*' "$logs/metrics.txt"
    grep -E '^│|^[A-Za-z]' "$logs/metrics.txt" | head -150 || true
    for name in 'floor: mutex' 'through a handle, 3 tags' 'with a correlation id' 'by name, 3 tags'; do
        row "$name, p50 / p99 ns; mallocs p50" \
            "$(pick "$logs/metrics.txt" "$name" 'Time (wall clock)' 3) / $(pick "$logs/metrics.txt" "$name" 'Time (wall clock)' 6); $(pick "$logs/metrics.txt" "$name" 'Malloc (total)' 3)" \
            "floor row above" "" "WALMetricsBenchmarks"
    done
    row "envelopes to /dev/null, records/s p50" "$(pick "$logs/metrics.txt" 'envelopes from the log' 'records per second' 3)" \
        "" "" "WALMetricsBenchmarks"
fi

if wants emit; then
    bin=$(walctl_bin)
    echo "== emit: walctl emit --count $emit_count --threads 2 (traffic, then --raw)"
    for mode in traffic raw; do
        rm -rf "$logs/emit-log"
        extra=()
        [ "$mode" = raw ] && extra=(--raw)
        lock "$bin" emit --dir "$logs/emit-log" --count "$emit_count" --threads 2 "${extra[@]}" \
            2>"$logs/emit-$mode.txt" >/dev/null
        cat "$logs/emit-$mode.txt"
        row "walctl emit --count $emit_count --threads 2 ${extra[*]}" \
            "$(grep -o '([0-9]* records/s)' "$logs/emit-$mode.txt" | tr -d '()')" \
            "$(grep -o 'generator.*' "$logs/emit-$mode.txt" || true)" "" "walctl emit"
    done
    rm -rf "$logs/emit-log"
fi

if wants replay; then
    bin=$(walctl_bin)
    echo "== replay: walctl replay D --to stdout > /dev/null, $replay_count records"
    rm -rf "$logs/replay-log"
    lock "$bin" emit --dir "$logs/replay-log" --count "$replay_count" --threads 2 >/dev/null 2>&1
    started=$(date +%s.%N)
    lock "$bin" replay "$logs/replay-log" --to stdout >/dev/null
    ended=$(date +%s.%N)
    rate=$(python3 -c "import sys; print(f'{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):,.0f}')" \
        "$replay_count" "$started" "$ended")
    echo "  $rate records/s"
    row "walctl replay --to stdout, $replay_count records" "$rate records/s" "" "" "walctl replay"
    rm -rf "$logs/replay-log"
fi

if wants postgres; then
    echo "== postgres: tools/bench-postgres.sh"
    lock tools/bench-postgres.sh >"$logs/postgres.txt" 2>&1 || echo "  (failed: see $logs/postgres.txt)"
    grep -E '^\||ship|COPY' "$logs/postgres.txt" || true
    row "ship to PostgreSQL vs plain COPY" "see $logs/postgres.txt" "" "" "tools/bench-postgres.sh"
fi

if wants kafka; then
    echo "== kafka: WALKafkaBenchmarks"
    run_benchmark WALKafkaBenchmarks '.*' "$logs/kafka.txt"
    grep -E '^│|^[A-Za-z]' "$logs/kafka.txt" | head -80 || true
    row "ship to Kafka vs bare producer" "see $logs/kafka.txt" "" "" "WALKafkaBenchmarks"
fi

if wants replay-pg; then
    bin=$(walctl_bin)
    echo "== replay-pg: tools/bench-replay.sh $replay_count $replay_runs"
    WALCTL_BIN="$bin" lock tools/bench-replay.sh "$replay_count" "$replay_runs" 2>&1 | tee "$logs/replay-pg.txt" ||
        echo "  (failed)"
    row "replay --to postgres vs ship --drain" "$(tail -n 1 "$logs/replay-pg.txt")" "" "" "tools/bench-replay.sh"
fi

if wants host; then
    bin=$(walctl_bin)
    echo "== host: tools/load-host.py --agents 1000 --alive 200 --records 60 --rate 10"
    WALCTL_BIN="$bin" lock python3 tools/load-host.py --agents 1000 --alive 200 --records 60 --rate 10 2>&1 |
        tee "$logs/host.txt" || echo "  (failed)"
    row "one host shipper, 1,000 agents" "see $logs/host.txt" "" "" "tools/load-host.py"
fi

echo
echo "| figure | value | floor / baseline | ratio | command |"
echo "|---|---|---|---|---|"
cat "$summary"
