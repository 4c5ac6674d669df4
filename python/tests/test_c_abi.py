"""walctl.h used from C: a C program (tests/c/walctl_abi_test.c) compiled with cc against the header and the
libwalctl_c.so inside the installed package, run from 4 threads; what it wrote is read back with walctl inspect."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import walctl
from conftest import REPO, inspect_records

SOURCE = Path(__file__).parent / "c" / "walctl_abi_test.c"
HEADER_DIR = REPO / "Sources" / "CWALCollector" / "include"


def test_c_program_records_from_threads_and_sees_every_status(tmp_path):
    library_dir = Path(walctl.__file__).parent
    assert (library_dir / "libwalctl_c.so").exists(), "the package ships libwalctl_c.so"
    compiler = os.environ.get("CC") or shutil.which("cc") or "clang"
    program = tmp_path / "walctl_abi_test"
    subprocess.run(
        [compiler, "-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Werror", "-O1", str(SOURCE), f"-I{HEADER_DIR}",
         f"-L{library_dir}", "-lwalctl_c", f"-Wl,-rpath,{library_dir}", "-lpthread", "-lm", "-o", str(program)],
        check=True,
    )
    log = tmp_path / "log"
    run = subprocess.run([str(program), str(log)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "emitted=20000 rejected=7"
    envelopes = inspect_records(log)
    assert len(envelopes) == 20000
    by_name = [e for e in envelopes if e["correlation_id"] == "corr-c"]
    through_handle = [e for e in envelopes if e["correlation_id"] is None]
    assert len(by_name) == len(through_handle) == 10000
    assert {tuple(sorted(e["payload"]["tags"].items())) for e in by_name} == {
        (("agent_type", "router"), ("thread", f"t{t}")) for t in range(4)
    }
    assert all(e["payload"]["tags"] == {"agent_type": "handle"} for e in through_handle)
    assert {e["payload"]["agent_id"] for e in envelopes} == {"c-agent"}


def test_the_library_carries_the_swift_runtime():
    """No libswift*.so is needed at run time: the wheel works wherever the toolchain is (or is not) installed."""
    library = Path(walctl.__file__).parent / "libwalctl_c.so"
    needed = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    libraries = [line.split("[")[1].split("]")[0] for line in needed.splitlines() if "(NEEDED)" in line]
    assert not [name for name in libraries if "swift" in name.lower() or "dispatch" in name.lower()], libraries
