#!/usr/bin/env bash
# The long fault-injection sweeps (wal-format.md section 14): every system call of each scenario fails with ENOSPC,
# EIO and EINTR in turn, and a writer (and a recovering writer) is killed at every one of its calls, ROUNDS times
# (the kill sweeps are timing-dependent: each round meets the calls in a slightly different order).
# Usage: tools/fault-sweep.sh [ROUNDS]   (default 3; about 15 minutes a round on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
swift build --build-tests
for round in $(seq 1 "$rounds"); do
    echo "fault sweep: round $round of $rounds" >&2
    WALCTL_FAULT_TESTS=1 WALCTL_FAULT_SWEEP_STRIDE=1 swift test --skip-build --filter FaultInjectionTests
done
