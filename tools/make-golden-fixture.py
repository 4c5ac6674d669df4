#!/usr/bin/env python3
"""Writes the golden log fixture from wal-format.md alone, independently of the Swift code.

Usage: tools/make-golden-fixture.py OUTPUT_DIR

The result is checked in under Tests/WALCoreTests/Fixtures/golden-log and read back by
FormatTests.goldenFixtureReadsBackExactly: if the Swift reader and this writer ever disagree, either the
code or the spec changed, and the format is a public contract.
"""
import ctypes
import os
import struct
import sys

LZ4 = ctypes.CDLL("liblz4.so.1")


def crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def lz4_block(raw: bytes) -> bytes:
    bound = LZ4.LZ4_compressBound(len(raw))
    out = ctypes.create_string_buffer(bound)
    n = LZ4.LZ4_compress_default(raw, out, len(raw), bound)
    assert n > 0
    return out.raw[:n]


LOG_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
SEALED_AT = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


def meta() -> bytes:
    body = b"WALCMETA" + struct.pack("<HHI", 1, 0, 0) + LOG_ID + struct.pack("<Q", SEALED_AT) + b"\0" * 20
    return body + struct.pack("<I", crc32c(body))


def segment_header(first_seq: int) -> bytes:
    body = b"WALCSEG1" + struct.pack("<HHI", 1, 64, 0) + LOG_ID + struct.pack("<QQ", first_seq, SEALED_AT)
    body += b"\0" * 12
    return body + struct.pack("<I", crc32c(body))


def frame(kind: int, codec: int, first_seq: int, count: int, raw: bytes) -> bytes:
    stored = lz4_block(raw) if codec == 1 else raw
    head = struct.pack("<IBBHQIIII", 0x4D524657, kind, codec, 0, first_seq, count, len(raw), len(stored),
                       crc32c(stored))
    head += struct.pack("<QI", SEALED_AT, 0)
    head += struct.pack("<I", crc32c(head))
    assert len(head) == 48
    return pad8(head + stored)


def data_frame(first_seq: int, last_seq: int, codec: int) -> bytes:
    raw = b""
    for seq in range(first_seq, last_seq + 1):
        record = f"golden record {seq}".encode()
        raw += struct.pack("<I", len(record)) + record
    return frame(1, codec, first_seq, last_seq - first_seq + 1, raw)


def cursor(seq: int) -> bytes:
    body = b"WALCCURS" + struct.pack("<QQI", seq, SEALED_AT, 0)
    return body + struct.pack("<I", crc32c(body))


def main() -> None:
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "cursors"), exist_ok=True)
    with open(os.path.join(out, "wal.meta"), "wb") as f:
        f.write(meta())
    # Segment 1: sealed (trimmed to its data): records 1-500 in LZ4 frames of 100, then a gap marker 501-510.
    seg1 = segment_header(1)
    for first in range(1, 501, 100):
        seg1 += data_frame(first, first + 99, 1)
    seg1 += frame(2, 0, 501, 10, b"golden gap")
    with open(os.path.join(out, "00000000000000000001.seg"), "wb") as f:
        f.write(seg1)
    # Segment 2: active (preallocated zeroes after the data): records 511-1000, one stored uncompressed.
    seg2 = segment_header(511) + data_frame(511, 600, 0) + data_frame(601, 1000, 1)
    with open(os.path.join(out, "00000000000000000511.seg"), "wb") as f:
        f.write(seg2 + b"\0" * (16384 - len(seg2)))
    with open(os.path.join(out, "cursors", "golden.cursor"), "wb") as f:
        f.write(cursor(42))


if __name__ == "__main__":
    main()
