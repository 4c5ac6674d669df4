#!/usr/bin/env bash
# `walctl ship --drain` of a `walctl emit` log into PostgreSQL against a plain binary COPY of the same rows into the
# same schema, in one run, on one throwaway PostgreSQL 15 (default settings: fsync on, synchronous commit).
# Usage: tools/bench-postgres.sh [RECORDS] [RUNS]   (default 300000 records, 5 runs)
#        tools/bench-postgres.sh --allocations [RECORDS]   (allocation calls per shipped row, tools/malloc-count.c)
#        tools/bench-postgres.sh --benchmark      (the package-benchmark target WALPostgresBenchmarks: the same
#                                                  comparison in one process, with allocations per shipped row)
# WALCTL_BIN: the walctl to measure (otherwise a release build is made). WALCTL_BEFORE_BIN: another walctl (an
# earlier commit) whose ship --drain is timed too, into a database of its own schema, in the same runs. To measure
# what read-ahead gains with one binary, WALCTL_BEFORE_BIN may be a script that runs it with WALCTL_PG_READ_AHEAD=0:
#   printf '#!/bin/sh\nWALCTL_PG_READ_AHEAD=0 exec /path/to/walctl "$@"\n' > /tmp/walctl-off; chmod +x /tmp/walctl-off
#
# Each run: three fresh databases, made by `walctl pg init` and `walctl pg maintain` (schema and daily partitions,
# not timed); then, each holding the machine's build lock, the wall clock of `walctl ship --drain` (start-up,
# connection, maintenance check, reading, decoding, COPY, cursor, 10k rows per transaction) and of psql's `\copy`
# of the same rows (exported once from the first run, binary, one COPY per table). Prints every run, then median,
# spread (min to max) and the ratio ship / COPY of the medians. After each measurement the database is vacuumed
# and checkpointed (untimed), so deferred index work of one measurement never runs during the next.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ "${1:-}" = "--benchmark" ]; then
    tools/setup.sh
    pgdir=$(mktemp -d /tmp/walctl-bench-pg.XXXXXX)
    cleanup() { "$root/tools/pg.sh" stop "$pgdir"; rm -rf "$pgdir"; }
    trap cleanup EXIT
    WALCTL_BENCH_POSTGRES=$(tools/pg.sh start "$pgdir")
    export WALCTL_BENCH_POSTGRES
    cd Benchmarks
    flock -o /tmp/walctl-build.lock swift package --allow-writing-to-package-directory benchmark \
        --target WALPostgresBenchmarks --format markdown --no-progress
    exit 0
fi
if [ "${1:-}" = "--allocations" ]; then
    # Allocation calls per shipped row: ship --drain of a RECORDS-record log minus that of a 1-record log (start-up),
    # each into a fresh database, counted by tools/malloc-count.c.
    count=${2:-300000}
    . tools/bench-pg-lib.sh
    bench_pg_setup bench-alloc
    gcc -O2 -shared -fPIC -o "$work/malloc-count.so" tools/malloc-count.c
    allocations() {  # RECORDS
        "$WALCTL_BIN" emit --dir "$work/log$1" --count "$1" >/dev/null 2>&1
        psql -q "$conninfo" -c "CREATE DATABASE alloc$1" >/dev/null
        "$WALCTL_BIN" pg init --postgres "$(db "alloc$1")" >/dev/null
        LD_PRELOAD="$work/malloc-count.so" "$WALCTL_BIN" ship --dir "$work/log$1" --postgres "$(db "alloc$1")" \
            --drain 2>&1 | awk '/^mallocs / { n = $2 } END { print n }'
    }
    one=$(allocations 1)
    all=$(allocations "$count")
    python3 -c "import sys; a, b, n = map(int, sys.argv[1:]); print(f'{(b - a) / n:.2f} allocations per shipped row '
        f'({b} for {n} rows, {a} for 1)')" "$one" "$all" "$count"
    exit 0
fi
count=${1:-300000}
runs=${2:-5}
. tools/bench-pg-lib.sh
bench_pg_setup bench-pg
tables="agent_coordination_metrics agent_custom_metrics agent_quorum_metrics agent_routing_metrics
    agent_state_metrics agent_workflow_metrics"
columns="metric_id, metric_name, metric_type, value, unit, tags, agent_id, correlation_id, timestamp, log_id, wal_seq"
"$WALCTL_BIN" emit --dir "$work/log" --count "$count" --threads 2 >/dev/null 2>&1

fresh() {  # NAME BIN: a database with BIN's schema and today's partitions
    psql -q "$conninfo" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    "$2" pg init --postgres "$(db "$1")" >/dev/null
    "$2" pg maintain --postgres "$(db "$1")" >/dev/null
}
seconds() {  # COMMAND...: its wall clock in seconds, run holding the build lock (its output in $work/out)
    flock -o /tmp/walctl-build.lock python3 -c '
import subprocess, sys, time
start = time.monotonic()
with open(sys.argv[1], "w") as out:
    done = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
if done.returncode != 0:
    sys.exit(open(sys.argv[1]).read())
print(f"{time.monotonic() - start:.3f}")' "$work/out" "$@"
}
settle() {  # DATABASE: what autovacuum would do later to the rows just written (GIN pending lists, BRIN ranges,
    # statistics) is done now, untimed, and so is the checkpoint their WAL would set off (a checkpoint writing the
    # previous measurement's pages during the next one made single runs of either side 1.5x slower), so that neither
    # runs during the next measurement
    flock -o /tmp/walctl-build.lock psql -q "$(db "$1")" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
}
ship() {  # BIN DATABASE
    rm -rf "$work/log/cursors"
    seconds "$1" ship --dir "$work/log" --postgres "$(db "$2")" --drain
    settle "$2"
}
ship_times=() copy_times=() before_times=()
for run in $(seq 1 "$runs"); do
    fresh bench_ship "$WALCTL_BIN"
    fresh bench_copy "$WALCTL_BIN"
    ship_times+=("$(ship "$WALCTL_BIN" bench_ship)")
    shipped=$(psql -qAt "$(db bench_ship)" -c "SELECT sum(n) FROM (SELECT count(*) AS n FROM agent_routing_metrics
        UNION ALL SELECT count(*) FROM agent_state_metrics UNION ALL SELECT count(*) FROM agent_coordination_metrics
        UNION ALL SELECT count(*) FROM agent_workflow_metrics UNION ALL SELECT count(*) FROM agent_quorum_metrics
        UNION ALL SELECT count(*) FROM agent_custom_metrics) c")
    [ "$shipped" = "$count" ] || { echo "ship --drain wrote $shipped rows, not $count" >&2; exit 1; }
    if [ "$run" = 1 ]; then
        for t in $tables; do
            psql -q "$(db bench_ship)" -c "\\copy (SELECT $columns FROM $t ORDER BY id) TO '$work/$t.copy' (FORMAT binary)"
        done
        for t in $tables; do echo "\\copy $t ($columns) FROM '$work/$t.copy' (FORMAT binary)"; done >"$work/copy.sql"
    fi
    copy_times+=("$(seconds psql -q "$(db bench_copy)" -v ON_ERROR_STOP=1 -f "$work/copy.sql")")
    settle bench_copy
    line="run $run: ship --drain ${ship_times[-1]} s, plain COPY ${copy_times[-1]} s"
    if [ -n "${WALCTL_BEFORE_BIN:-}" ]; then
        fresh bench_before "$WALCTL_BEFORE_BIN"
        before_times+=("$(ship "$WALCTL_BEFORE_BIN" bench_before)")
        line+=", ship --drain before ${before_times[-1]} s"
    fi
    echo "$line"
done
python3 - "$count" "${ship_times[*]}" "${copy_times[*]}" "${before_times[*]:-}" <<'PY'
import statistics, sys
count = int(sys.argv[1])
def rates(text):
    values = [count / float(x) for x in text.split()]
    return statistics.median(values), min(values), max(values)
ship, copy = rates(sys.argv[2]), rates(sys.argv[3])
print(f"{count} rows, {len(sys.argv[2].split())} runs, rows/s median (min to max):")
print(f"  walctl ship --drain          {ship[0] / 1000:6.1f}k ({ship[1] / 1000:.1f}k to {ship[2] / 1000:.1f}k)")
print(f"  plain binary COPY (psql)     {copy[0] / 1000:6.1f}k ({copy[1] / 1000:.1f}k to {copy[2] / 1000:.1f}k)")
print(f"  ship / COPY                  {ship[0] / copy[0]:.2f}")
if sys.argv[4].strip():
    before = rates(sys.argv[4])
    print(f"  ship --drain, WALCTL_BEFORE_BIN {before[0] / 1000:6.1f}k ({before[1] / 1000:.1f}k to {before[2] / 1000:.1f}k)"
          f"; now / before {ship[0] / before[0]:.2f}")
PY
