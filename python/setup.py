"""Builds the Python package: libwalctl_c.so from the Swift package one directory up, then the CPython binding
linked against it with rpath $ORIGIN; the library ships inside the package, so nothing needs to be found at run
time but liblz4 and the C library.

The Swift package is found at .. (this file's parent's parent) or at $WALCTL_SWIFT_PACKAGE. The build is offline:
`swift build -c release --product walctl_c` (the product links the Swift runtime statically) uses the package's resolved dependencies (tools/setup.sh
or any earlier `swift build` fetched them). $WALCTL_SWIFT_BUILD_FLAGS adds flags (for example a --scratch-path)."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
SWIFT_PACKAGE = Path(os.environ.get("WALCTL_SWIFT_PACKAGE", HERE.parent)).resolve()
LIBRARY = "libwalctl_c.so"


class BuildWithSwift(build_ext):
    """Builds libwalctl_c with SwiftPM, copies it next to the extension, then builds the extension."""

    def run(self):
        if not (SWIFT_PACKAGE / "Package.swift").exists():
            raise SystemExit(f"walctl: no Package.swift in {SWIFT_PACKAGE} (set WALCTL_SWIFT_PACKAGE)")
        swift = shutil.which("swift")
        if swift is None:
            raise SystemExit("walctl: the Swift toolchain is needed to build libwalctl_c (swift not on PATH)")
        flags = ["-c", "release"] + shlex.split(os.environ.get("WALCTL_SWIFT_BUILD_FLAGS", ""))
        print(f"walctl: swift build {' '.join(flags)} --product walctl_c (in {SWIFT_PACKAGE})", flush=True)
        subprocess.run([swift, "build", *flags, "--product", "walctl_c"], cwd=SWIFT_PACKAGE, check=True)
        bin_path = subprocess.run(
            [swift, "build", *flags, "--show-bin-path"], cwd=SWIFT_PACKAGE, check=True, capture_output=True, text=True
        ).stdout.strip()
        built = Path(bin_path) / LIBRARY
        package_dir = Path(self.build_lib) / "walctl"
        package_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, package_dir / LIBRARY)
        if self.inplace:
            shutil.copy2(built, HERE / "src" / "walctl" / LIBRARY)
        for extension in self.extensions:
            extension.library_dirs.append(str(package_dir))
        super().run()


setup(
    ext_modules=[
        Extension(
            "walctl._native",
            sources=["src/walctl/_native.c"],
            depends=[str(SWIFT_PACKAGE / "Sources" / "CWALCollector" / "include" / "walctl.h")],
            include_dirs=[str(SWIFT_PACKAGE / "Sources" / "CWALCollector" / "include")],
            libraries=["walctl_c"],
            extra_compile_args=["-O2", "-std=c11"],
            extra_link_args=["-Wl,-rpath,$ORIGIN"],
        )
    ],
    cmdclass={"build_ext": BuildWithSwift},
)
