"""Shared helpers: the walctl CLI (to read what Python wrote, as an operator would), and log directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(os.environ.get("WALCTL_SWIFT_PACKAGE", Path(__file__).resolve().parents[2]))


def walctl_binary() -> str:
    """$WALCTL_BIN, else the debug build of the Swift package, else `walctl` on PATH."""
    candidates = [os.environ.get("WALCTL_BIN"), str(REPO / ".build" / "debug" / "walctl"), shutil.which("walctl")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("no walctl binary: run `swift build --product walctl` or set WALCTL_BIN")


def walctl(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([walctl_binary(), *arguments], capture_output=True, text=True, check=check)


def inspect_records(directory: os.PathLike) -> List[Dict]:
    """`walctl inspect DIR --records --json`: one OnexEnvelopeV1 per record, in log order."""
    result = walctl("inspect", os.fspath(directory), "--records", "--json")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def recover(directory: os.PathLike) -> None:
    """What an agent restarting on a crashed log does: a writer opens it (sealing the records of the crashed writer
    that were staged) and closes it."""
    code = "import sys, walctl; walctl.MetricsCollector(sys.argv[1], use_environment=False).close()"
    subprocess.run([sys.executable, "-c", code, os.fspath(directory)], check=True)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No METRICS_* variable of the calling shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("METRICS_"):
            monkeypatch.delenv(name)
