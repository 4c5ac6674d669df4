#!/usr/bin/env python3
"""Load test of one host shipper (issue 16): many agents, each a process writing its own log, shipped by one
`walctl ship --root` to PostgreSQL and Kafka; then the same logs shipped by one `walctl ship` per log, side by side.

    tools/load-host.py [--agents 1000] [--alive 200] [--records 150] [--rate 50] [--walctl PATH] [--no-compare]

Starts a throwaway PostgreSQL (tools/pg.sh) and the librdkafka mock cluster (tools/kafka.sh) unless
WALCTL_LOAD_POSTGRES / KAFKA_BOOTSTRAP_SERVERS name servers. Uses the release build of walctl (built if missing).

Reports:
  live      agents start and end (at most --alive at once, each `walctl emit --rate`) while one `walctl ship --root`
            runs: records/s end to end, lag from emit to the committing transaction (created_at - timestamp) p50/p99,
            the shipper's peak RSS, open descriptors and threads, PostgreSQL connections used, CPU;
  host      the same logs drained again into a fresh database and Kafka prefix by one `walctl ship --root --drain`;
  per-log   the same logs drained by one `walctl ship --dir --drain` per log, at most 90 at once (PostgreSQL's
            default max_connections is 100: 1,000 at once cannot even connect).
and checks: every record in PostgreSQL exactly once (per log: rows = distinct seqs = records), and in Kafka at least
once with distinct event ids equal to the record count.
"""
import argparse
import os
import random
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = [f"agent_{category}_metrics" for category in
          ("routing", "state", "coordination", "workflow", "quorum", "custom")]


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs).stdout.strip()


def psql(conninfo, sql):
    return run(["psql", conninfo, "-XAtqc", sql])


def with_db(conninfo, name):
    return conninfo.replace("dbname=postgres", f"dbname={name}")


class Sampler(threading.Thread):
    """Samples a process's RSS, descriptors and threads, and PostgreSQL's walctl connections, every 200 ms."""

    def __init__(self, pids, conninfo, database):
        super().__init__(daemon=True)
        self.pids, self.conninfo, self.database = pids, conninfo, database
        self.rss = self.fds = self.threads = self.connections = 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            rss = fds = threads = 0
            for pid in list(self.pids()):
                try:
                    with open(f"/proc/{pid}/status") as status:
                        for line in status:
                            if line.startswith("VmRSS:"):
                                rss += int(line.split()[1]) * 1024
                            elif line.startswith("Threads:"):
                                threads += int(line.split()[1])
                    fds += len(os.listdir(f"/proc/{pid}/fd"))
                except (FileNotFoundError, ProcessLookupError, PermissionError):
                    pass
            self.rss, self.fds, self.threads = max(self.rss, rss), max(self.fds, fds), max(self.threads, threads)
            try:
                count = int(psql(self.conninfo, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 f"'{self.database}' AND application_name LIKE 'walctl-%'"))
                self.connections = max(self.connections, count)
            except subprocess.CalledProcessError:
                pass
            self.stopped.wait(0.2)


def rusage_of(process):
    """Waits for a child and returns (status, user+system CPU seconds)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def check_postgres(conninfo, expected_per_log):
    union = " UNION ALL ".join(f"SELECT log_id, wal_seq FROM {table}" for table in TABLES)
    rows = psql(conninfo, f"SELECT log_id, count(*), count(DISTINCT wal_seq) FROM ({union}) r GROUP BY log_id")
    stored = {}
    for line in rows.splitlines():
        log_id, count, distinct = line.split("|")
        stored[log_id] = (int(count), int(distinct))
    bad = [log for log, count in expected_per_log.items() if stored.get(log) != (count, count)]
    return len(stored), bad


def check_kafka(servers, prefix, total):
    categories = ["routing", "state", "coordination", "workflow", "quorum", "custom"]
    messages, event_ids = 0, set()
    for category in categories:
        topic = f"{prefix}.{category}.v1"
        out = subprocess.run(["kcat", "-C", "-b", servers, "-t", topic, "-o", "beginning", "-e", "-q", "-f",
                              "%h\n"], text=True, capture_output=True).stdout
        for line in out.splitlines():
            for pair in line.split(","):
                if pair.startswith("event_id="):
                    messages += 1
                    event_ids.add(pair[len("event_id="):])
    return messages, len(event_ids)


def lag_percentiles(conninfo):
    union = " UNION ALL ".join(f"SELECT created_at - timestamp AS lag FROM {table}" for table in TABLES)
    row = psql(conninfo, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM lag)), "
               f"percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM lag)) FROM ({union}) r")
    p50, p99 = (float(value) for value in row.split("|"))
    return p50, p99


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--alive", type=int, default=200, help="agents alive at once")
    parser.add_argument("--records", type=int, default=150, help="records per agent")
    parser.add_argument("--rate", type=int, default=50, help="records per second per agent")
    parser.add_argument("--walctl")
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    random.seed(args.seed)

    walctl = args.walctl
    if not walctl:
        run(["swift", "build", "-c", "release", "--product", "walctl"], cwd=ROOT)
        run(["swift", "build", "-c", "release", "--product", "kafka-mock"], cwd=ROOT)
        walctl = os.path.join(run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT), "walctl")
    work = tempfile.mkdtemp(prefix="walctl-load-")
    cleanups = []
    conninfo = os.environ.get("WALCTL_LOAD_POSTGRES")
    if not conninfo:
        # Its own folder: the server runs as the postgres user, who cannot enter a 0700 temporary folder.
        pgdir = tempfile.mkdtemp(prefix="walctl-load-pg-")
        os.chmod(pgdir, 0o755)
        conninfo = run([os.path.join(ROOT, "tools/pg.sh"), "start", pgdir])
        cleanups.append(lambda: subprocess.run(["rm", "-rf", pgdir]))
        cleanups.append(lambda: run([os.path.join(ROOT, "tools/pg.sh"), "stop", pgdir]))
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        kafkadir = os.path.join(work, "kafka")
        env = dict(os.environ, KAFKA_MOCK_BIN=os.path.join(os.path.dirname(walctl), "kafka-mock"))
        servers = run([os.path.join(ROOT, "tools/kafka.sh"), "start", kafkadir, "3"], env=env)
        cleanups.append(lambda: run([os.path.join(ROOT, "tools/kafka.sh"), "stop", kafkadir]))
    try:
        report(args, walctl, work, conninfo, servers)
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except subprocess.CalledProcessError:
                pass
        subprocess.run(["rm", "-rf", work])


def report(args, walctl, work, conninfo, servers):
    stamp = str(int(time.time()))
    root = os.path.join(work, "agents")
    os.makedirs(root, mode=0o700)
    total = args.agents * args.records

    # 1. Live: agents come and go while one host shipper runs.
    live_db = f"load_live_{stamp}"
    psql(conninfo, f"CREATE DATABASE {live_db}")
    live = with_db(conninfo, live_db)
    run([walctl, "pg", "init", "--postgres", live])
    log = open(os.path.join(work, "ship-live.log"), "w")
    shipper = subprocess.Popen([walctl, "ship", "--root", root, "--postgres", live, "--kafka", servers,
                                "--kafka-topic-prefix", f"load.live{stamp}", "--kafka-group-prefix",
                                f"load.live{stamp}-"], stderr=log, stdout=log)
    sampler = Sampler(lambda: [shipper.pid], conninfo, live_db)
    sampler.start()
    started = time.monotonic()
    running, next_agent, failures = [], 0, 0
    while next_agent < args.agents or running:
        while next_agent < args.agents and len(running) < args.alive:
            folder = os.path.join(root, f"agent-{next_agent:04d}")
            os.mkdir(folder, 0o700)
            running.append(subprocess.Popen([walctl, "emit", "--dir", os.path.join(folder, "metrics"), "--count",
                                             str(args.records), "--rate", str(args.rate)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            next_agent += 1
        time.sleep(0.02)
        still = []
        for agent in running:
            if agent.poll() is None:
                still.append(agent)
            elif agent.returncode != 0:
                failures += 1
        running = still
    agents_done = time.monotonic()
    # Everything committed: every log's cursor at its last seq (each log holds exactly --records seqs).
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        row = psql(live, "SELECT count(*), coalesce(sum(wal_seq), 0) FROM walctl_cursors WHERE shipper = 'postgres'")
        logs, seqs = (int(value) for value in row.split("|"))
        if logs == args.agents and seqs == total:
            break
        time.sleep(0.05)
    committed = time.monotonic()
    # Kafka: the host shipper's cursors, read by walctl inspect would do; the shipper is stopped once Kafka holds
    # every event id (checked below), after a short settle.
    kafka_deadline = time.monotonic() + 300
    while time.monotonic() < kafka_deadline:
        messages, distinct = check_kafka(servers, f"load.live{stamp}", total)
        if distinct >= total:
            break
        time.sleep(1)
    sampler.stopped.set()
    shipper.terminate()
    status, cpu = rusage_of(shipper)
    p50, p99 = lag_percentiles(live)
    logs_found, bad = check_postgres(live, expected_counts(root, args.records))
    messages, distinct = check_kafka(servers, f"load.live{stamp}", total)
    print(f"agents: {args.agents} processes ({args.alive} alive at once, {args.records} records each at "
          f"{args.rate}/s; {failures} failed), {total} records")
    print(f"live host shipper: agents ran {agents_done - started:.1f} s, last commit {committed - started:.1f} s "
          f"after the first agent started: {total / (committed - started):,.0f} records/s end to end")
    print(f"  lag emit -> committing transaction p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(f"  shipper: peak RSS {sampler.rss / 1e6:.1f} MB, peak open fds {sampler.fds}, peak threads "
          f"{sampler.threads}, CPU {cpu:.1f} s, exit {status}; PostgreSQL connections used: {sampler.connections}")
    print(f"  PostgreSQL: {logs_found} logs, {len(bad)} with missing or duplicated rows -> "
          f"{'exactly once' if not bad and logs_found == args.agents else 'FAILED'}")
    print(f"  Kafka: {messages} messages, {distinct} distinct event ids of {total} -> "
          f"{'at least once' if distinct == total else 'FAILED'}")
    if args.no_compare:
        return

    # 2. The same logs, drained by one host shipper, and by one shipper per log.
    for mode in ("host", "per-log"):
        database = f"load_{mode.replace('-', '')}_{stamp}"
        psql(conninfo, f"CREATE DATABASE {database}")
        target = with_db(conninfo, database)
        run([walctl, "pg", "init", "--postgres", target])
        prefix = f"load.{mode.replace('-', '')}{stamp}"
        common = ["--postgres", target, "--kafka", servers, "--kafka-topic-prefix", prefix,
                  "--kafka-group-prefix", f"{prefix}-", "--drain"]
        started = time.monotonic()
        if mode == "host":
            process = subprocess.Popen([walctl, "ship", "--root", root] + common, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            pids = lambda: [process.pid]
            sampler = Sampler(pids, conninfo, database)
            sampler.start()
            status, cpu = rusage_of(process)
            failed = int(status != 0)
        else:
            logs = sorted(os.path.join(root, name, "metrics") for name in os.listdir(root))
            active, cpu, failed = [], 0.0, 0
            sampler = Sampler(lambda: [p.pid for p in active], conninfo, database)
            sampler.start()
            first_failure = None
            while logs or active:
                while logs and len(active) < 90:
                    errors = tempfile.TemporaryFile(mode="w+")
                    process = subprocess.Popen([walctl, "ship", "--dir", logs.pop()] + common,
                                               stdout=subprocess.DEVNULL, stderr=errors)
                    process.errors = errors
                    active.append(process)
                pid, wait_status, usage = os.wait4(-1, 0)
                cpu += usage.ru_utime + usage.ru_stime
                ended = next((p for p in active if p.pid == pid), None)
                if os.waitstatus_to_exitcode(wait_status) != 0:
                    failed += 1
                    if first_failure is None and ended is not None:
                        ended.errors.seek(0)
                        first_failure = ended.errors.read()[-600:]
                if ended is not None:
                    ended.errors.close()
                active = [p for p in active if p.pid != pid]
            if first_failure:
                print(f"  (first failed per-log shipper said: {first_failure.strip()})")
        elapsed = time.monotonic() - started
        sampler.stopped.set()
        sampler.join()
        logs_found, bad = check_postgres(target, expected_counts(root, args.records))
        messages, distinct = check_kafka(servers, prefix, total)
        print(f"{mode} drain: {elapsed:.1f} s, {total / elapsed:,.0f} records/s to PostgreSQL and Kafka; peak RSS "
              f"{sampler.rss / 1e6:.1f} MB, peak fds {sampler.fds}, peak threads {sampler.threads}, CPU {cpu:.1f} s, "
              f"PostgreSQL connections {sampler.connections}; {failed} shippers failed; PostgreSQL "
              f"{'exactly once' if not bad and logs_found == args.agents else 'FAILED'}; Kafka {distinct} distinct "
              f"event ids of {total} ({messages} messages)")


def expected_counts(root, records):
    """Log id -> records, from each log's wal.meta (bytes 16..32 hold the id; wal-format.md section 2)."""
    counts = {}
    for name in os.listdir(root):
        with open(os.path.join(root, name, "metrics", "wal.meta"), "rb") as meta:
            data = meta.read()
        raw = data[16:32].hex()
        log_id = f"{raw[0:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:32]}"
        counts[log_id] = records
    return counts


if __name__ == "__main__":
    main()
