"""How to call libwalctl_c from Python: the same two calls (by name with 3 tags and a correlation id, and through a
handle) through ctypes, cffi (ABI mode, no compiler) and the package's CPython extension, on the library the package
ships. The figures decided the binding (see python/README.md).

usage: python bench/bench_binding.py [--count N]   (needs cffi for its rows: pip install cffi)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

import walctl

TAGS = {"agent_type": "router", "routing_strategy": "smart", "cache_status": "hit"}
NAME = "routing_decision_time_ms"
LIBRARY = str(Path(walctl.__file__).parent / "libwalctl_c.so")


def mean_ns(call, count: int) -> float:
    for i in range(min(count, 20000)):
        call(i)
    clock = time.perf_counter_ns
    t0 = clock()
    for i in range(count):
        call(i)
    return (clock() - t0) / count


class String(ctypes.Structure):
    _fields_ = [("data", ctypes.c_char_p), ("length", ctypes.c_size_t)]


def ctypes_rows(directory: Path, count: int):
    lib = ctypes.CDLL(LIBRARY)
    lib.walctl_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_void_p)]
    lib.walctl_record.argtypes = [ctypes.c_void_p, ctypes.c_int, String, ctypes.c_double, String,
                                  ctypes.POINTER(String), ctypes.POINTER(String), ctypes.c_size_t, String, String,
                                  ctypes.POINTER(ctypes.c_uint64)]
    lib.walctl_handle_open.argtypes = [ctypes.c_void_p, ctypes.c_int, String, String, ctypes.POINTER(String),
                                       ctypes.POINTER(String), ctypes.c_size_t, String,
                                       ctypes.POINTER(ctypes.c_void_p)]
    lib.walctl_handle_record.argtypes = [ctypes.c_void_p, ctypes.c_double, String, ctypes.POINTER(ctypes.c_uint64)]
    collector = ctypes.c_void_p()
    assert lib.walctl_open(str(directory).encode(), b"bench", None, 0, 0, ctypes.byref(collector)) == 0
    seq = ctypes.c_uint64()
    none = String(None, 0)

    def s(text: str) -> String:
        data = text.encode()
        return String(data, len(data))

    def by_name(i):
        count = len(TAGS)
        keys, values = (String * count)(), (String * count)()
        for index, (key, value) in enumerate(TAGS.items()):
            keys[index], values[index] = s(key), s(value)
        return lib.walctl_record(collector, 0, s(NAME), float(i % 100), s("ms"), keys, values, count, s("corr-1"),
                                 none, ctypes.byref(seq))

    handle = ctypes.c_void_p()
    keys, values = (String * 3)(*[s(k) for k in TAGS]), (String * 3)(*[s(v) for v in TAGS.values()])
    assert lib.walctl_handle_open(collector, 0, s(NAME), s("ms"), keys, values, 3, none, ctypes.byref(handle)) == 0
    record = lib.walctl_handle_record
    rows = [("ctypes", mean_ns(by_name, count), mean_ns(lambda i: record(handle, float(i % 100), none, None), count))]
    lib.walctl_release(collector)
    return rows


def cffi_rows(directory: Path, count: int):
    try:
        import cffi
    except ImportError:
        return [("cffi (ABI mode): not installed", float("nan"), float("nan"))]
    ffi = cffi.FFI()
    ffi.cdef(
        """
        typedef struct { const char *data; size_t length; } walctl_string;
        int walctl_open(const char *, const char *, const char *const *, size_t, int, void **);
        int walctl_record(void *, int, walctl_string, double, walctl_string, const walctl_string *,
                          const walctl_string *, size_t, walctl_string, walctl_string, uint64_t *);
        int walctl_handle_open(void *, int, walctl_string, walctl_string, const walctl_string *,
                               const walctl_string *, size_t, walctl_string, void **);
        int walctl_handle_record(void *, double, walctl_string, uint64_t *);
        void walctl_release(void *);
        """
    )
    lib = ffi.dlopen(LIBRARY)
    out = ffi.new("void **")
    assert lib.walctl_open(str(directory).encode(), b"bench", ffi.NULL, 0, 0, out) == 0
    collector = out[0]
    seq = ffi.new("uint64_t *")
    none = ffi.new("walctl_string *")[0]

    buffer = ffi.from_buffer

    def by_name(i):
        encoded = [(k.encode(), v.encode()) for k, v in TAGS.items()]
        keys = ffi.new("walctl_string[]", [(buffer(k), len(k)) for k, _ in encoded])
        values = ffi.new("walctl_string[]", [(buffer(v), len(v)) for _, v in encoded])
        name, unit, corr = NAME.encode(), b"ms", b"corr-1"
        return lib.walctl_record(collector, 0, (buffer(name), len(name)), float(i % 100), (buffer(unit), 2), keys,
                                 values, 3, (buffer(corr), len(corr)), none, seq)

    encoded = [(k.encode(), v.encode()) for k, v in TAGS.items()]
    keep = [buffer(text) for pair in encoded for text in pair]
    keys = ffi.new("walctl_string[]", [(keep[2 * i], len(encoded[i][0])) for i in range(3)])
    values = ffi.new("walctl_string[]", [(keep[2 * i + 1], len(encoded[i][1])) for i in range(3)])
    name = NAME.encode()
    assert lib.walctl_handle_open(collector, 0, (buffer(name), len(name)), (buffer(b"ms"), 2), keys, values, 3, none,
                                  out) == 0
    handle = out[0]
    record = lib.walctl_handle_record
    rows = [("cffi (ABI mode)", mean_ns(by_name, count),
             mean_ns(lambda i: record(handle, float(i % 100), none, ffi.NULL), count))]
    lib.walctl_release(collector)
    return rows


def extension_rows(directory: Path, count: int):
    collector = walctl.MetricsCollector(directory, agent_id="bench", use_environment=False)
    record_timing = collector.record_timing
    record = collector.handle(NAME, tags=TAGS).record
    rows = [("CPython extension (walctl._native)",
             mean_ns(lambda i: record_timing(NAME, float(i % 100), TAGS, "corr-1"), count),
             mean_ns(lambda i: record(float(i % 100)), count))]
    collector.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    count = parser.parse_args().count
    gc.disable()
    root = Path(tempfile.mkdtemp(prefix="walctl-binding-"))
    try:
        rows = ctypes_rows(root / "ctypes", count) + cffi_rows(root / "cffi", count) + extension_rows(root / "ext", count)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"mean ns per call, {count} calls each (python {sys.version.split()[0]})")
    print(f"{'binding':40}  {'by name, 3 tags + corr':>24}  {'handle.record(v)':>18}")
    for label, by_name, handle in rows:
        print(f"{label:40}  {by_name:24.0f}  {handle:18.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
