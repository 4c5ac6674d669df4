#!/usr/bin/env bash
# Ship throughput into PostgreSQL against a plain binary COPY of the same rows, in one run, on a throwaway server.
# Usage: tools/bench-postgres.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools/setup.sh
pgdir=$(mktemp -d /tmp/walctl-bench-pg.XXXXXX)
cleanup() { "$root/tools/pg.sh" stop "$pgdir"; rm -rf "$pgdir"; }
trap cleanup EXIT
WALCTL_BENCH_POSTGRES=$(tools/pg.sh start "$pgdir")
export WALCTL_BENCH_POSTGRES
cd Benchmarks
swift package --allow-writing-to-package-directory benchmark --target WALPostgresBenchmarks --format markdown --no-progress
