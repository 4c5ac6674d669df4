#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with the Swift toolchain: installs the system packages,
# builds, and runs every test. Usage: tools/test.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build --build-tests
swift test --skip-build "$@"
