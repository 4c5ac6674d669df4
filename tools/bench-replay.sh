#!/usr/bin/env bash
# Replay to PostgreSQL against `ship --drain` of the same log, each into a fresh database of one throwaway server,
# in one run; prints both rates (wall clock, start-up and schema creation included) and their ratio.
# Usage: tools/bench-replay.sh [RECORDS] [RUNS]   (default 300000 records, 3 runs; WALCTL_BIN: a walctl to use,
# otherwise a release build is made)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
count=${1:-300000}
runs=${2:-3}
. tools/bench-pg-lib.sh
bench_pg_setup bench-replay
"$WALCTL_BIN" emit --dir "$work/log" --count "$count" --threads 2 >/dev/null 2>&1

now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.0f}')" "$@"; }
for run in $(seq 1 "$runs"); do
    for db in ship replay; do
        psql -q "$conninfo" -c "DROP DATABASE IF EXISTS bench_$db" -c "CREATE DATABASE bench_$db" >/dev/null
    done
    rm -rf "$work/log/cursors"
    start=$(now)
    "$WALCTL_BIN" ship --dir "$work/log" --postgres "${conninfo/dbname=postgres/dbname=bench_ship}" --drain \
        >/dev/null 2>"$work/ship.err" || { cat "$work/ship.err" >&2; exit 1; }
    ship=$(rate "$count" "$start" "$(now)")
    start=$(now)
    "$WALCTL_BIN" replay "$work/log" --to postgres --postgres "${conninfo/dbname=postgres/dbname=bench_replay}" \
        2>"$work/replay.err" || { cat "$work/replay.err" >&2; exit 1; }
    replay=$(rate "$count" "$start" "$(now)")
    ratio=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$replay" "$ship")
    echo "run $run: ship --drain $ship rows/s, replay $replay rows/s, replay/ship $ratio"
done
