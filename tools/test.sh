#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with the Swift toolchain: installs the system packages,
# starts a throwaway PostgreSQL on 127.0.0.1 and librdkafka's mock Kafka cluster (unless KAFKA_BOOTSTRAP_SERVERS
# names a real broker), builds, runs every test, and stops both.
# Usage: tools/test.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build --build-tests

pgdir=$(mktemp -d /tmp/walctl-test-pg.XXXXXX)
kafkadir=$(mktemp -d /tmp/walctl-test-kafka.XXXXXX)
cleanup() { tools/pg.sh stop "$pgdir"; tools/kafka.sh stop "$kafkadir"; rm -rf "$pgdir" "$kafkadir"; }
trap cleanup EXIT
WALCTL_TEST_POSTGRES=$(tools/pg.sh start "$pgdir")
export WALCTL_TEST_POSTGRES
export WALCTL_TEST_PGDIR="$pgdir"
echo "test PostgreSQL: $WALCTL_TEST_POSTGRES" >&2
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    KAFKA_BOOTSTRAP_SERVERS=$(tools/kafka.sh start "$kafkadir" 3)
    export KAFKA_BOOTSTRAP_SERVERS
    echo "test Kafka: librdkafka mock cluster at $KAFKA_BOOTSTRAP_SERVERS" >&2
else
    echo "test Kafka: the broker at $KAFKA_BOOTSTRAP_SERVERS" >&2
fi

# The readers under libFuzzer, briefly (tools/fuzz.sh SECONDS for longer runs).
tools/fuzz.sh "${WALCTL_FUZZ_SECONDS:-10}"
swift test --skip-build --skip FaultInjectionTests "$@"
# The fault-injection sweeps arm a process-wide injection point: they run alone, in a process of their own.
WALCTL_FAULT_TESTS=1 swift test --skip-build --filter FaultInjectionTests
# The Python package, installed into a fresh virtualenv as a user would, and its pytest suite.
WALCTL_BIN="$(swift build --show-bin-path)/walctl" tools/python-test.sh
