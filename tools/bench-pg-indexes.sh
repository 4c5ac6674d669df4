#!/usr/bin/env bash
# What each index of the metric tables costs PostgreSQL: the rows of a `walctl emit` log (shipped once, then exported
# with binary COPY) are copied again into fresh databases whose metric tables carry one index set each, and timed
# against the same COPY into the bare tables, in one run on one throwaway PostgreSQL 15 (default settings).
# Usage: tools/bench-pg-indexes.sh [RECORDS] [RUNS] [VARIANT...]   (default 300000 records, 3 runs, every variant;
# WALCTL_BIN: a walctl to use, otherwise a release build is made). Prints per variant the median seconds, the
# spread (min to max) and the cost over the bare tables in µs per row.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
count=${1:-300000}
runs=${2:-3}
shift $(( $# > 2 ? 2 : $# )) || true
. tools/bench-pg-lib.sh
bench_pg_setup bench-idx
tables="agent_routing_metrics agent_state_metrics agent_coordination_metrics agent_workflow_metrics
    agent_quorum_metrics agent_custom_metrics"
columns="metric_id, metric_name, metric_type, value, unit, tags, agent_id, correlation_id, timestamp, log_id, wal_seq"

"$WALCTL_BIN" emit --dir "$work/log" --count "$count" --threads 2 >/dev/null 2>&1
psql -q "$conninfo" -c "CREATE DATABASE source" >/dev/null
"$WALCTL_BIN" ship --dir "$work/log" --postgres "$(db source)" --drain >/dev/null 2>"$work/ship.err" \
    || { cat "$work/ship.err" >&2; exit 1; }
for t in $tables; do
    psql -q "$(db source)" -c "\\copy (SELECT $columns FROM $t ORDER BY log_id, wal_seq) TO '$work/$t.copy' (FORMAT binary)"
done

# Index sets, as SQL with {t} for each metric table. "bare": no index at all (the floor); "v2": the indexes of
# schema version 2 (the design's); "v3": those of migration 3 (Schema+Indexes.swift).
declare -A variant=(
    [bare]=""
    [v2]="ALTER TABLE {t} ADD PRIMARY KEY (id, timestamp); CREATE INDEX ON {t} (timestamp DESC);
        CREATE INDEX ON {t} (metric_name); CREATE INDEX ON {t} USING gin (tags); CREATE INDEX ON {t} (correlation_id);
        CREATE UNIQUE INDEX ON {t} (log_id, wal_seq, timestamp);
        CREATE INDEX ON {t} USING brin (created_at) WITH (autosummarize = on)"
    [v3]="ALTER TABLE {t} ADD PRIMARY KEY (id, timestamp); CREATE INDEX ON {t} USING brin (timestamp)
        WITH (autosummarize = on); CREATE INDEX ON {t} (metric_name); CREATE INDEX ON {t} USING gin (tags jsonb_path_ops);
        CREATE INDEX ON {t} USING hash (correlation_id); CREATE UNIQUE INDEX ON {t} (log_id, wal_seq, timestamp);
        CREATE INDEX ON {t} USING brin (created_at) WITH (autosummarize = on)"
    [pk]="ALTER TABLE {t} ADD PRIMARY KEY (id, timestamp)"
    [timestamp_btree]="CREATE INDEX ON {t} (timestamp DESC)"
    [timestamp_brin]="CREATE INDEX ON {t} USING brin (timestamp) WITH (autosummarize = on)"
    [created_at_brin]="CREATE INDEX ON {t} USING brin (created_at) WITH (autosummarize = on)"
    [metric_name_btree]="CREATE INDEX ON {t} (metric_name)"
    [metric_name_timestamp_btree]="CREATE INDEX ON {t} (metric_name, timestamp)"
    [tags_gin]="CREATE INDEX ON {t} USING gin (tags)"
    [tags_gin_nofastupdate]="CREATE INDEX ON {t} USING gin (tags) WITH (fastupdate = off)"
    [tags_gin_pending_64mb]="CREATE INDEX ON {t} USING gin (tags) WITH (gin_pending_list_limit = 65536)"
    [tags_gin_path_ops]="CREATE INDEX ON {t} USING gin (tags jsonb_path_ops)"
    [correlation_btree]="CREATE INDEX ON {t} (correlation_id)"
    [correlation_partial_btree]="CREATE INDEX ON {t} (correlation_id) WHERE correlation_id IS NOT NULL"
    [correlation_hash]="CREATE INDEX ON {t} USING hash (correlation_id)"
    [unique_log_seq_ts]="CREATE UNIQUE INDEX ON {t} (log_id, wal_seq, timestamp)"
)
order=(bare pk timestamp_btree timestamp_brin created_at_brin metric_name_btree metric_name_timestamp_btree tags_gin
    tags_gin_nofastupdate tags_gin_pending_64mb tags_gin_path_ops correlation_btree correlation_partial_btree
    correlation_hash unique_log_seq_ts v2 v3)
[ $# -gt 0 ] && order=(bare "$@")

# A fresh database with walctl's schema and today's partitions, every index of the metric tables dropped, then the
# variant's. Timed: one COPY per table (in table order), one transaction each, then a CHECKPOINT-free commit.
prepare() {
    local name=$1 sql=$2
    psql -q "$conninfo" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
    "$WALCTL_BIN" pg init --postgres "$(db "$name")" >/dev/null
    "$WALCTL_BIN" pg maintain --postgres "$(db "$name")" >/dev/null
    local ddl=""
    for t in $tables; do
        ddl+="ALTER TABLE $t DROP CONSTRAINT ${t}_pkey; "
        for index in $(psql -qAt "$(db "$name")" -c "SELECT indexrelid::regclass FROM pg_index i
                JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = '$t'"); do
            [ "$index" = "${t}_pkey" ] || ddl+="DROP INDEX $index; "
        done
        [ -n "$sql" ] && ddl+="${sql//\{t\}/$t}; "
    done
    psql -q "$(db "$name")" -v ON_ERROR_STOP=1 -c "$ddl" >/dev/null
}
# Timed by psql (\timing: the statements' time, not the wait for the machine's build lock).
load() {
    local name=$1 script="$work/load.sql"
    echo '\timing on' >"$script"
    for t in $tables; do echo "\\copy $t ($columns) FROM '$work/$t.copy' (FORMAT binary)" >>"$script"; done
    flock -o /tmp/walctl-build.lock psql -q "$(db "$name")" -v ON_ERROR_STOP=1 -f "$script" \
        | awk '/^Time:/ { total += $2 } END { printf "%.3f\n", total / 1000 }'
}
declare -A seconds
for run in $(seq 1 "$runs"); do
    for name in "${order[@]}"; do
        prepare "idx_$name" "${variant[$name]}"
        seconds[$name]+="$(load "idx_$name") "
        psql -q "$conninfo" -c "DROP DATABASE idx_$name" >/dev/null
    done
done
echo "$count rows, $runs runs; seconds per COPY of all rows: median (min to max); cost over bare tables"
for name in "${order[@]}"; do
    python3 - "$name" "$count" "${seconds[bare]}" "${seconds[$name]}" <<'PY'
import statistics, sys
name, count, bare, mine = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
b, m = statistics.median(map(float, bare)), [float(x) for x in mine]
med = statistics.median(m)
print(f"{name:30} {med:7.2f} s ({min(m):.2f} to {max(m):.2f})  +{med - b:6.2f} s  {1e6 * (med - b) / count:5.2f} us/row"
      f"  {count / med / 1000:6.1f}k rows/s")
PY
done
