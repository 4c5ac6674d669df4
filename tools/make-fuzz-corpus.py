#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz harness (Tests/Fuzz/corpus/TARGET/*): valid inputs built from wal-format.md
by the independent writer in make-golden-fixture.py, plus a few edge cases. Usage: make-fuzz-corpus.py DIR"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import importlib

golden = importlib.import_module("make-golden-fixture")


def staged(kind: int, seq: int, payload: bytes) -> bytes:
    word = len(payload) | (kind << 28)
    crc = golden.crc32c(struct.pack("<Q", seq), golden.crc32c(struct.pack("<I", word), golden.crc32c(payload)))
    return golden.pad8(struct.pack("<IIQ", word, crc, seq) + payload)


def writer_state(generation: int, high_water: int, gap_first: int, gap_last: int) -> bytes:
    body = b"WALWSTAT" + struct.pack("<QQQQ", generation, high_water, gap_first, gap_last)
    body += b"\0" * (60 - len(body))
    return body + struct.pack("<I", golden.crc32c(body))


def varint(value: int) -> bytes:
    out = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def symbol_entry(payload: bytes) -> bytes:
    return golden.pad8(struct.pack("<II", len(payload), golden.crc32c(payload)) + payload)


def main() -> None:
    out = sys.argv[1]
    seeds = {
        "frame": {
            "data-lz4": golden.data_frame(1, 100, 1),
            "data-plain": golden.data_frame(511, 520, 0),
            "gap": golden.frame(2, 0, 501, 10, b"golden gap"),
            "empty-records": golden.frame(1, 0, 7, 3, struct.pack("<III", 0, 0, 0)),
        },
        "staging": {
            "block": staged(0, 5, b"hello") + staged(1, 6, struct.pack("<Q", 9) + b"dropped") + staged(0, 10, b""),
            "header": b"WALSTAGE" + b"\0" * 56 + writer_state(1, 41, 0, 0) + writer_state(2, 42, 40, 42),
        },
        "small-files": {
            "cursor": golden.cursor(42),
            "meta": golden.meta(),
            "segment-header": golden.segment_header(511),
        },
        "record": {
            # kind 1, flags (value: 8-byte double, agent present), metric 1, tags 2, agent 3, time, value
            "timing": bytes([1, 0x20 | 0]) + varint(1) + varint(2) + varint(3)
            + struct.pack(">q", 1_767_225_600_000_000_000),
            "no-tags": bytes([1, 0]) + varint(7) + varint(0) + struct.pack(">q", 1),
        },
        "symbols": {
            "file": b"WALCSYMS" + struct.pack("<H", 1) + b"\0" * 6 + golden.LOG_ID + b"\0" * 28
            + struct.pack("<I", 0)  # header CRC deliberately off: the scan must still be safe
            + symbol_entry(b"\x01routing_decision_time_ms") + symbol_entry(b"\x01ms")
            + symbol_entry(b"\x02\x00" + varint(1) + varint(2))
            + symbol_entry(b"\x01agent_type") + symbol_entry(b"\x01router")
            + symbol_entry(b"\x03" + varint(1) + varint(4) + varint(5)),
        },
    }
    for target, files in seeds.items():
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
