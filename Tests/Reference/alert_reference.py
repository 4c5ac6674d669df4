#!/usr/bin/env python3
"""An alert evaluator written from the README, independent of walctl's Swift code.

Usage: alert_reference.py THRESHOLDS.yaml RECORDS.jsonl
RECORDS.jsonl: one record per line, in log order:
  {"seq": 1, "name": "...", "value": "<float.hex>", "time_ns": 123, "tags": {"k": "v"}}
Prints one line per alert, in the order fired: {"seq": N, "rule": I, "severity": "...", "value": "<float.hex>"}

The rules, as the README states them:
- rules are numbered in file order (a metric with a list of rules numbers each);
- non-finite values are not evaluated;
- a rule applies to records of its metric carrying all of its tags;
- window "last" compares each value; an aggregate window holds the values emitted in the last `duration`
  (a value at time t0 leaves when a record at t >= t0 + duration arrives), at most 100000 of them, and is compared
  once it holds at least min_samples (default 1): avg = fsum(values) / n (fsum over values scaled by 2**-64 when the
  sum leaves the range of doubles), pNN = the value at 1-based rank ceil(NN * n / 100) of the sorted values;
- the highest severity whose threshold is strictly breached (above: value > t; below: value < t) fires, unless the
  same rule fired the same severity less than `cooldown` (default 60s) earlier, by emit time.
"""
import json
import math
import sys

import yaml

UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
SEVERITIES = ["critical", "warning", "info"]
MAX_WINDOW = 100_000


def duration(text):
    text = str(text)
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * UNITS[suffix]
    raise ValueError(f"duration {text!r}")


def rules_of(path):
    document = yaml.safe_load(open(path))
    rules = []
    for metric, body in document["metrics"].items():
        for rule in body if isinstance(body, list) else [body]:
            window = rule.get("window", "last")
            if window != "last":
                window = (window["aggregate"], duration(window["duration"]), int(window.get("min_samples", 1)))
            rules.append(
                {
                    "metric": metric,
                    "direction": rule.get("direction", "above"),
                    "levels": {s: float(rule[s]) for s in SEVERITIES if s in rule},
                    "window": window,
                    "tags": {str(k): str(v) for k, v in (rule.get("tags") or {}).items()},
                    "cooldown": duration(rule.get("cooldown", "60s")),
                }
            )
    return rules


def mean(values):
    try:
        return math.fsum(values) / len(values)
    except OverflowError:
        return math.ldexp(math.fsum(math.ldexp(v, -64) for v in values) / len(values), 64)


def aggregate(kind, values):
    if kind == "avg":
        return mean(values)
    p = int(kind[1:])
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[rank - 1]


def main():
    rules = rules_of(sys.argv[1])
    windows = {index: [] for index in range(len(rules))}
    last_fired = {}
    for line in open(sys.argv[2]):
        record = json.loads(line)
        value = float.fromhex(record["value"])
        if not math.isfinite(value):
            continue
        time = record["time_ns"]
        for index, rule in enumerate(rules):
            if rule["metric"] != record["name"]:
                continue
            if any(record["tags"].get(k) != v for k, v in rule["tags"].items()):
                continue
            if rule["window"] == "last":
                observed = value
            else:
                kind, span, min_samples = rule["window"]
                window = windows[index]
                window.append((time, value))
                while window and (window[0][0] <= time - span or len(window) > MAX_WINDOW):
                    window.pop(0)
                if len(window) < min_samples:
                    continue
                observed = aggregate(kind, [v for _, v in window])
            for severity in SEVERITIES:
                threshold = rule["levels"].get(severity)
                if threshold is None:
                    continue
                if (observed > threshold) if rule["direction"] == "above" else (observed < threshold):
                    break
            else:
                continue
            previous = last_fired.get((index, severity))
            if previous is not None and time - previous < rule["cooldown"] and time >= previous:
                continue
            last_fired[(index, severity)] = time
            print(json.dumps({"seq": record["seq"], "rule": index, "severity": severity, "value": observed.hex()}))


main()
