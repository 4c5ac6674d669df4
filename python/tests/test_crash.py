"""SIGKILL of a Python agent in the middle of a stream, repeated on the same log: every record whose call returned is
in the log, once, with its value."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

from conftest import inspect_records, recover

AGENT = textwrap.dedent(
    """
    import sys, walctl
    directory, round_number, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    collector = walctl.MetricsCollector(directory, agent_id="crash-agent", use_environment=False)
    decide = collector.handle("routing_decision_time_ms", tags={"round": round_number})
    out = sys.stdout
    i = start
    while True:
        if i % 2:
            result = decide.record(i * 0.25, correlation_id=f"c-{i}")
        else:
            result = collector.record_timing("routing_decision_time_ms", i * 0.25, {"round": round_number}, f"c-{i}")
        assert result.recorded, result
        out.write(f"{i}\\n")   # acknowledged: the call returned
        out.flush()
        i += 1
    """
)


def test_sigkill_mid_stream_loses_no_acknowledged_record(log_dir):
    rng = random.Random(15)
    acknowledged: list[int] = []
    next_index = 0
    for round_number in range(6):
        agent = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(log_dir), str(round_number), str(next_index)],
            stdout=subprocess.PIPE,
            text=True,
        )
        # Kill after a random number of acknowledgements (the agent keeps emitting meanwhile).
        kill_after = rng.randrange(50, 5000)
        for _ in range(kill_after):
            line = agent.stdout.readline()
            assert line, "the agent stopped before it was killed"
            acknowledged.append(int(line))
        os.kill(agent.pid, signal.SIGKILL)
        # Lines written between the last read and the kill were acknowledged too.
        acknowledged.extend(int(line) for line in agent.stdout.read().split())
        assert agent.wait() == -signal.SIGKILL
        next_index = acknowledged[-1] + 1
        # Some records may have been appended after the last acknowledgement: skip past them next round.
        recover(log_dir)
        logged = [int(e["correlation_id"][2:]) for e in inspect_records(log_dir)]
        next_index = max(next_index, max(logged) + 1)

    envelopes = inspect_records(log_dir)
    indices = [int(e["correlation_id"][2:]) for e in envelopes]
    assert len(indices) == len(set(indices)), "a record is in the log twice"
    missing = set(acknowledged) - set(indices)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    for envelope in envelopes:
        index = int(envelope["correlation_id"][2:])
        assert envelope["payload"]["value"] == index * 0.25
        assert envelope["payload"]["agent_id"] == "crash-agent"
