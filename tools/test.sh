#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with the Swift toolchain: installs the system packages,
# starts a throwaway PostgreSQL on 127.0.0.1, builds, runs every test, and stops the server.
# Usage: tools/test.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build --build-tests

pgdir=$(mktemp -d /tmp/walctl-test-pg.XXXXXX)
cleanup() { tools/pg.sh stop "$pgdir"; rm -rf "$pgdir"; }
trap cleanup EXIT
WALCTL_TEST_POSTGRES=$(tools/pg.sh start "$pgdir")
export WALCTL_TEST_POSTGRES
export WALCTL_TEST_PGDIR="$pgdir"
echo "test PostgreSQL: $WALCTL_TEST_POSTGRES" >&2

swift test --skip-build "$@"
