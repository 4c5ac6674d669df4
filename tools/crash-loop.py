#!/usr/bin/env python3
"""Crash loop: SIGKILL `walctl emit` at seeded random moments, again and again on the same logs, and check the
invariants of wal-format.md section 14 after every kill.

After each kill the next writer opens the log (recovery), then `walctl verify` must say sound and `walctl inspect
--json` must show every seq from the first to the last exactly once as a record or in a gap
(records + gap seqs = last - first + 1), with the last seq at or above everything the killed writer acknowledged
(`acked SEQ` lines) and above everything seen before. Scenarios: raw records, metrics on 2 threads, and metrics
against a size limit with a cursor held back (drops and gaps), each with process and periodic durability.

Usage: tools/crash-loop.py [--kills N] [--seed S] [--walctl PATH]   (default 40 kills per scenario)
Exit 0 when every check held; 1 otherwise (each failure is printed with the seed that replays it).
"""
import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
crc32c = __import__("make-golden-fixture").crc32c

SCENARIOS = [
    ("raw", ["--raw", "--size", "120", "--segment-size", "1048576"], False),
    ("metrics-2-threads", ["--threads", "2", "--segment-size", "1048576"], False),
    ("metrics-periodic", ["--durability", "periodic:20", "--segment-size", "1048576"], False),
    ("size-limit-drops", ["--segment-size", "1048576", "--max-bytes", "4300000"], True),
]


def write_cursor(log, name, seq):
    os.makedirs(os.path.join(log, "cursors"), mode=0o700, exist_ok=True)
    body = b"WALCCURS" + struct.pack("<QQI", seq, time.time_ns(), 0)
    path = os.path.join(log, "cursors", name + ".cursor")
    with open(path + ".tmp", "wb") as f:
        f.write(body + struct.pack("<I", crc32c(body)))
    os.replace(path + ".tmp", path)


class AckReader(threading.Thread):
    """Reads a writer's `acked SEQ` lines until its output ends; keeps the highest."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.acked, self.lines = stream, 0, 0
        self.changed = threading.Condition()
        self.start()

    def run(self):
        for line in self.stream:
            with self.changed:
                if line.startswith("acked "):
                    self.acked = max(self.acked, int(line.split()[1]))
                self.lines += 1
                self.changed.notify_all()
        with self.changed:
            self.lines = float("inf")
            self.changed.notify_all()

    def wait_for(self, lines, deadline):
        with self.changed:
            while self.lines < lines and time.monotonic() < deadline:
                self.changed.wait(max(0.0, deadline - time.monotonic()))


def run(walctl, *args):
    return subprocess.run([walctl, *args], capture_output=True, text=True, timeout=300)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "little"))
    parser.add_argument("--walctl", default=os.path.join(ROOT, ".build", "debug", "walctl"))
    options = parser.parse_args()
    rng = random.Random(options.seed)
    print(f"crash loop: seed {options.seed} (--seed {options.seed} replays it), {options.kills} kills per scenario")
    failures = 0
    work = tempfile.mkdtemp(prefix="walctl-crash-loop.")
    try:
        for name, arguments, hold_cursor in SCENARIOS:
            log = os.path.join(work, name)
            highest_seen = 0
            for kill in range(options.kills):
                if hold_cursor:
                    write_cursor(log, "held", 0)  # a sink that never catches up: the size limit drops records
                child = subprocess.Popen(
                    [options.walctl, "emit", "--dir", log, "--count", "100000000", *arguments],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                reader = AckReader(child.stdout)
                # Up to 6 acknowledgements, or 2 s: a writer that only drops (log full) prints almost none.
                reader.wait_for(rng.randint(0, 6), deadline=time.monotonic() + 2)
                time.sleep(rng.uniform(0, 0.4))
                child.send_signal(signal.SIGKILL)
                child.wait()
                reader.join()
                acked = reader.acked
                label = f"{name} kill {kill} (seed {options.seed})"
                # The next writer: recovery, one record, close.
                one = run(options.walctl, "emit", "--dir", log, "--metric", "routing_decision_time_ms", "--value",
                          "1", *(["--segment-size", "1048576", "--max-bytes", "4300000"] if hold_cursor else []))
                recorded = int(one.stdout.split()[1]) if one.returncode == 0 and one.stdout.startswith("recorded") \
                    else None
                if one.returncode != 0 and "dropped" not in one.stderr + one.stdout:
                    print(f"FAIL {label}: the next writer could not append: {one.stderr.strip()}")
                    failures += 1
                    continue
                verify = run(options.walctl, "verify", log)
                summary = json.loads(run(options.walctl, "inspect", log, "--json").stdout)
                first, last = summary.get("first_seq"), summary.get("last_seq")
                gap_seqs = sum(g["to_seq"] - g["from_seq"] + 1 for g in summary["gaps"])
                problems = []
                if verify.returncode != 0:
                    problems.append("verify: " + verify.stdout.strip().splitlines()[-1])
                if summary["damage"]:
                    problems.append(f"damage: {summary['damage'][:2]}")
                if first is not None and last is not None:
                    start = min([first] + [g["from_seq"] for g in summary["gaps"]])
                    if summary["records"] + gap_seqs != last - start + 1:
                        problems.append(f"records {summary['records']} + gap seqs {gap_seqs} != {last} - {start} + 1")
                if last is None or last < acked:
                    problems.append(f"acknowledged up to {acked}, log ends at {last}")
                if recorded is not None and recorded <= highest_seen:
                    problems.append(f"seq {recorded} reused (seen up to {highest_seen})")
                highest_seen = max(highest_seen, last or 0, recorded or 0)
                if problems:
                    failures += 1
                    print(f"FAIL {label}: " + "; ".join(problems))
            print(f"crash loop: {name}: {options.kills} kills, log ends at seq {highest_seen}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = options.kills * len(SCENARIOS)
    print(f"{total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
