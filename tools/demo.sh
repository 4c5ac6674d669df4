#!/usr/bin/env bash
# The main job, end to end: simulated agents emit the 25 catalog metrics into a durable log; then an agent process
# is killed with SIGKILL mid-stream, and the log is recovered, inspected and verified: every acknowledged record
# is still there, and decodes.
# Usage: tools/demo.sh [LOG_DIR]   (default: a throwaway directory)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build -c release --product walctl >/dev/null
walctl=".build/release/walctl"
log="${1:-$(mktemp -d /tmp/walctl-demo.XXXXXX)/log}"

echo "== 1. simulated agents emit the catalog for 3 seconds into $log"
"$walctl" demo --dir "$log" --seconds 3 --agents 2 --rate 20000

echo "== 1b. an agent emits 2,000,000 more records as fast as it can (2 threads)"
"$walctl" emit --dir "$log" --count 2000000 --threads 2 | tail -n 1

echo "== 2. another agent run is killed with SIGKILL mid-stream"
coproc EMITTER { exec "$walctl" emit --dir "$log" --count 100000000 --threads 2; }
acked=0
for _ in $(seq 1 20); do
    read -r line <&"${EMITTER[0]}"
    acked="${line#acked }"
done
kill -9 "$EMITTER_PID"
wait "$EMITTER_PID" 2>/dev/null || true
echo "killed after 'acked $acked': every record up to $acked must survive"

echo "== 3. inspect the crashed log (read-only, no lock taken)"
"$walctl" inspect "$log"

echo "== 4. reopen as a writer (recovery seals what was staged) and append one more batch"
"$walctl" emit --dir "$log" --count 10000 | tail -n 1

echo "== 5. the last records, decoded"
"$walctl" inspect "$log" --records --from-seq "$acked" --limit 5

echo "== 6. verify every checksum"
"$walctl" verify "$log"
last=$("$walctl" inspect "$log" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_seq"])')
if [ "$last" -lt "$acked" ]; then
    echo "demo: FAILED: last_seq $last < acked $acked" >&2
    exit 1
fi
echo "demo: ok: last_seq $last >= acked $acked"
