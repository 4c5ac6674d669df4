#!/usr/bin/env bash
# Per-log footprint (issue 16): for a fresh log holding N records written by `walctl emit` (metric records by default,
# `--raw` for 100-byte opaque records), the bytes every file occupies on disk (st_blocks * 512, not st_size) and the
# bytes a running writer maps (its /proc/PID/maps entries for files of the log).
# Usage: tools/footprint.sh [--raw] [N ...]       (default N: 0 1000 100000 1000000)
# WALCTL names the binary (default: the debug build, .build/debug/walctl).
set -euo pipefail
cd "$(dirname "$0")/.."
walctl=${WALCTL:-.build/debug/walctl}
mode=()
if [[ ${1:-} == --raw ]]; then
    mode=(--raw)
    shift
fi
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(0 1000 100000 1000000)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for n in "${counts[@]}"; do
    dir=$work/log-$n
    "$walctl" emit --dir "$dir" --count "$n" "${mode[@]}" >/dev/null 2>&1
    echo "records: $n"
    find "$dir" -type f -printf '%b %s %P\n' | sort -k3 | awk '
        { a += $1 * 512; printf "    %-28s %10d allocated %10d size\n", $3, $1 * 512, $2 }
        END { printf "  total %d bytes allocated\n", a }'
done

# Mappings of a running writer: emit slowly so that the process is alive while its maps are read.
dir=$work/log-mapped
"$walctl" emit --dir "$dir" --count 129 --rate 40 "${mode[@]}" >/dev/null 2>&1 & # paced every 64 records: ~3 s
pid=$!
mapped=""
for _ in $(seq 100); do
    if grep -q "$dir/staging.wal" "/proc/$pid/maps" 2>/dev/null; then
        mapped=$(grep "$dir/" "/proc/$pid/maps" || true)
        break
    fi
    sleep 0.02
done
wait "$pid" || true
echo "mapped by the writer:"
if [[ -z $mapped ]]; then
    echo "  (the writer ended before its mappings could be read)"
    exit 1
fi
total=0
while read -r range _ _ _ _ file; do
    bytes=$((16#${range#*-} - 16#${range%-*}))
    total=$((total + bytes))
    printf "    %-28s %10d bytes\n" "${file#"$dir"/}" "$bytes"
done <<<"$mapped"
echo "  total $total bytes mapped"
