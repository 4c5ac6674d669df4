#!/usr/bin/env bash
# Kafka shipping throughput against what a user would pick instead, in one run against one cluster:
#   kcat -P -K (lz4, idempotence, acks=all, linger.ms=5) producing the log's envelopes keyed by agent id, vs
#   walctl ship --kafka --drain of the same log (made with walctl emit), median of RUNS (3) runs each, plus the
#   start-up of walctl ship --drain for a 10-record log. Also kcat with the shipper's four headers on every message
#   (log_id, wal_seq, event_id, metric_type; fixed values, kcat cannot vary them): what librdkafka alone spends on
#   the headers the message contract requires.
#
#   tools/bench-kafka.sh [RECORDS]        (default 300000; RUNS=3)
#
# The cluster: KAFKA_BOOTSTRAP_SERVERS when set, else a fresh librdkafka mock cluster (3 brokers) started here and
# stopped at the end. Needs release builds of walctl and kafka-mock
# (swift build -c release --product walctl; swift build -c release --product kafka-mock), kcat, python3 and
# /usr/bin/time. Run it under the build lock: flock -o /tmp/walctl-build.lock tools/bench-kafka.sh
set -euo pipefail
records="${1:-300000}"
runs="${RUNS:-3}"
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "$root" && swift build -c release --show-bin-path)
walctl="${WALCTL_BIN:-$bin/walctl}"
for tool in "$walctl" "$bin/kafka-mock"; do
    [ -x "$tool" ] || { echo "bench-kafka.sh: $tool missing (swift build -c release --product ${tool##*/})" >&2; exit 2; }
done
work=$(mktemp -d /tmp/walctl-bench-kafka.XXXXXX)
cleanup() {
    [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ] && "$root/tools/kafka.sh" stop "$work/kafka" || true
    rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    servers="$KAFKA_BOOTSTRAP_SERVERS"
else
    servers=$(KAFKA_MOCK_BIN="$bin/kafka-mock" "$root/tools/kafka.sh" start "$work/kafka" 3)
fi
run_id="b$(date +%s)"

"$walctl" emit --dir "$work/log" --count "$records" >/dev/null 2>&1
"$walctl" emit --dir "$work/small" --count 10 >/dev/null 2>&1
# kcat's input: "agent_id<TAB>envelope" lines, the envelopes exactly as walctl renders them.
"$walctl" replay "$work/log" --to "file:$work/envelopes.jsonl" >/dev/null 2>&1
python3 - "$work/envelopes.jsonl" "$work/keyed.txt" <<'EOF'
import json, sys
with open(sys.argv[1]) as source, open(sys.argv[2], "w") as target:
    for line in source:
        target.write((json.loads(line)["payload"]["agent_id"] or "") + "\t" + line)
EOF
[ "$(wc -l <"$work/keyed.txt")" -eq "$records" ] || { echo "bench-kafka.sh: replay wrote too few envelopes" >&2; exit 1; }

# Prints "wall user sys" of a command (its output discarded); fails when the command fails.
timed() {
    /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
    cat "$work/time"
}

ship() { # ship DIR PREFIX
    timed "$walctl" ship --dir "$1" --kafka "$servers" --kafka-topic-prefix "$2" --kafka-group-prefix "$2-" --drain
}

declare -a kcat_rate kcat_user kcath_rate kcath_user ship_rate ship_user startup
for run in $(seq 1 "$runs"); do
    prefix="$run_id-$run"
    # Start-up: the 10-record log, which also creates the run's topics (the mock auto-creates them: 4 partitions).
    read -r wall _ _ < <(ship "$work/small" "$prefix")
    startup+=("$wall")
    # kcat into one of those topics (4 partitions): the same envelopes, keys and producer settings.
    read -r wall user _ < <(timed kcat -P -b "$servers" -t "$prefix.routing.v1" -K $'\t' -l \
        -X compression.type=lz4 -X enable.idempotence=true -X acks=all -X linger.ms=5 "$work/keyed.txt")
    kcat_rate+=("$(python3 -c "print(round($records / $wall))")")
    kcat_user+=("$user")
    read -r wall user _ < <(timed kcat -P -b "$servers" -t "$prefix.routing.v1" -K $'\t' -l \
        -X compression.type=lz4 -X enable.idempotence=true -X acks=all -X linger.ms=5 \
        -H log_id=00000000-0000-4000-8000-000000000000 -H wal_seq=150000 \
        -H event_id=00000000-0000-5000-8000-000000000000 -H metric_type=gauge "$work/keyed.txt")
    kcath_rate+=("$(python3 -c "print(round($records / $wall))")")
    kcath_user+=("$user")
    read -r wall user _ < <(ship "$work/log" "$prefix")
    ship_rate+=("$(python3 -c "print(round($records / $wall))")")
    ship_user+=("$user")
    echo "run $run: kcat ${kcat_rate[-1]} msgs/s user ${kcat_user[-1]} s; with headers ${kcath_rate[-1]} msgs/s" \
        "user ${kcath_user[-1]} s; walctl ship ${ship_rate[-1]} records/s" \
        "user ${ship_user[-1]} s; start-up (10 records) ${startup[-1]} s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
kr=$(median "${kcat_rate[@]}")
ku=$(median "${kcat_user[@]}")
sr=$(median "${ship_rate[@]}")
su=$(median "${ship_user[@]}")
st=$(median "${startup[@]}")
hr=$(median "${kcath_rate[@]}")
hu=$(median "${kcath_user[@]}")
python3 - "$records" "$kr" "$ku" "$sr" "$su" "$st" "$runs" "$hr" "$hu" <<'EOF'
import sys
records, kr, ku, sr, su, st, runs = int(sys.argv[1]), *map(float, sys.argv[2:7]), sys.argv[7]
hr, hu = float(sys.argv[8]), float(sys.argv[9])
print(f"median of {runs} runs, {records} records:")
print(f"  kcat -P -K            {kr:>9.0f} msgs/s     user CPU {ku:.2f} s ({ku / records * 1e6:.2f} us/msg)")
print(f"  kcat, 4 headers       {hr:>9.0f} msgs/s     user CPU {hu:.2f} s ({hu / records * 1e6:.2f} us/msg)")
print(f"  walctl ship --drain   {sr:>9.0f} records/s  user CPU {su:.2f} s ({su / records * 1e6:.2f} us/record)")
print(f"  throughput ratio (ship / kcat)   {sr / kr:.2f}")
print(f"  user CPU ratio (ship / kcat)     {su / ku:.2f}")
print(f"  against kcat with the 4 headers: throughput {sr / hr:.2f}, user CPU {su / hu:.2f}")
print(f"  start-up, ship --drain of a 10-record log: {st:.2f} s")
EOF
