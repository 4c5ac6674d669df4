#!/usr/bin/env bash
# Builds and tests the Python package (python/) the way a user installs it: a fresh virtualenv in a temp dir,
# `pip install ./python pytest` (which builds libwalctl_c with SwiftPM and the CPython binding), then pytest.
# The PostgreSQL test needs WALCTL_TEST_POSTGRES (tools/test.sh exports it); without it, that test is reported as
# skipped with the reason. Also builds the walctl CLI the tests read the logs with (WALCTL_BIN overrides).
# Usage: tools/python-test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "python-test: $python not found" >&2; exit 1; }
command -v cc >/dev/null || command -v clang >/dev/null || { echo "python-test: a C compiler is needed" >&2; exit 1; }

if [ -z "${WALCTL_BIN:-}" ]; then
    swift build --product walctl >&2
    WALCTL_BIN="$(swift build --show-bin-path)/walctl"
    export WALCTL_BIN
fi
if [ -z "${WALCTL_TEST_POSTGRES:-}" ]; then
    echo "python-test: WALCTL_TEST_POSTGRES is not set: the PostgreSQL round trip will be skipped" >&2
fi

venv=$(mktemp -d /tmp/walctl-python-test.XXXXXX)
trap 'rm -rf "$venv"' EXIT
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet "$repo/python" pytest >&2

# pytest exits 5 when it ran no test: that is a failure here, not a pass.
set +e
(cd "$repo/python" && "$venv/bin/python" -m pytest -p no:cacheprovider "$@")
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "python-test: pytest collected no test" >&2
    exit 1
fi
exit "$status"
