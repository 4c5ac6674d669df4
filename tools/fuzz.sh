#!/usr/bin/env bash
# Fuzzes the log's readers with libFuzzer: frame decoder, staging blocks and header, cursor/meta/segment header,
# metric record codec, symbols file. No input may crash, hang (-timeout) or allocate without bound (-rss_limit_mb,
# -malloc_limit_mb). Findings are written to $WORK/TARGET/ (crash-*, timeout-*, oom-*) and fail the run.
# Usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s each, every target)
# The test suite runs it briefly (tools/test.sh); the seed corpus is Tests/Fuzz/corpus (tools/make-fuzz-corpus.py).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame staging small-files record symbols)
build=.build-fuzz
# libFuzzer without its main (SwiftPM names the executable's entry point itself; the harness calls
# LLVMFuzzerRunDriver), coverage-guided (-sanitize-coverage) and under AddressSanitizer.
nomain=$(ls /opt/swift/usr/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null \
    || ls "$(dirname "$(readlink -f "$(command -v swiftc)")")"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a)
swift build --build-path "$build" --product walctl-fuzz -Xswiftc -DWALCTL_FUZZER -Xswiftc -sanitize=address \
    -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp -Xlinker "$nomain" -Xlinker -lstdc++ >&2
bin="$build/debug/walctl-fuzz"
work="${WALCTL_FUZZ_WORK:-$(mktemp -d /tmp/walctl-fuzz.XXXXXX)}"
status=0
for target in "${targets[@]}"; do
    mkdir -p "$work/$target/corpus"
    cp Tests/Fuzz/corpus/"$target"/* "$work/$target/corpus/" 2>/dev/null || true
    echo "fuzz $target: ${seconds}s" >&2
    if ! WALCTL_FUZZ_TARGET="$target" "$bin" "$work/$target/corpus" -max_total_time="$seconds" -timeout=5 \
        -rss_limit_mb=1024 -malloc_limit_mb=256 -max_len=65536 -artifact_prefix="$work/$target/" \
        -print_final_stats=1 >"$work/$target/log" 2>&1; then
        echo "fuzz $target: FAILED (see $work/$target/log and its artefacts)" >&2
        tail -n 30 "$work/$target/log" >&2
        status=1
    else
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target/log" | grep -o '[0-9]*$' || echo "?")
        echo "fuzz $target: ok, $runs inputs" >&2
    fi
done
exit "$status"
