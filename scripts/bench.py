"""The benchmark behind scripts/bench: speed and memory of the release binary on a private
MariaDB and the ministack emulator, written to docs/benchmarks.md. Not a test: nothing here
passes or fails on a number.

Each workload is written to the binlog first; then the daemon replays it from the position
before it (`run --start-position`) until its checkpoint reaches the position after it, so the
figures are the pipeline's, not MariaDB's write speed. Peak RSS is the daemon's VmHWM.
"""

import argparse
import base64
import datetime
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "binlog-kinesis")
EMU = os.path.join(ROOT, ".emu", "venv", "bin")
PERF_DIR = None  # set by --perf
PIN = []  # `taskset -c LIST` with --cpus

import botocore.session  # noqa: E402  (from the emulator's virtualenv)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


class World:
    """A private MariaDB, ministack and the quota proxy, stopped at exit."""

    def __init__(self, work):
        self.work = work
        self.children = []
        self.db_port = free_port()
        self.emu_port = free_port()
        data = os.path.join(work, "data")
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True)
        self.socket = os.path.join(work, "mysqld.sock")
        self.spawn(["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}",
                    "--bind-address=127.0.0.1", f"--port={self.db_port}", f"--socket={self.socket}",
                    f"--log-error={work}/mariadb.log", f"--log-bin={work}/binlog/mariadb-bin",
                    "--server-id=1", "--binlog-format=ROW", "--binlog-row-image=FULL",
                    "--binlog-row-metadata=FULL", "--max-allowed-packet=1G",
                    "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
                    "--innodb-buffer-pool-size=1G", "--max-binlog-size=1G"])
        os.makedirs(os.path.join(work, "binlog"), exist_ok=True)
        wait_port(self.db_port)
        self.sql("CREATE USER 'cdc'@'%' IDENTIFIED BY 'bench'; "
                 "GRANT ALL ON *.* TO 'cdc'@'%'; CREATE DATABASE bench;", database=None)
        self.spawn([os.path.join(EMU, "ministack")],
                   env={**os.environ, "GATEWAY_PORT": str(self.emu_port), "BIND_HOST": "127.0.0.1",
                        "SERVICES": "kinesis,cloudwatch", "TMPDIR": work})
        wait_port(self.emu_port)
        session = botocore.session.get_session()
        self.kinesis = session.create_client(
            "kinesis", endpoint_url=f"http://127.0.0.1:{self.emu_port}", region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench")

    def spawn(self, argv, **kwargs):
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 **kwargs)
        self.children.append(child)
        return child

    def close(self):
        for child in reversed(self.children):
            child.kill()
            child.wait()

    def sql(self, statements, database="bench"):
        # The Sequence engine's seq_1_to_N tables exist in whatever database is current.
        use = f"USE {database};" if database else ""
        subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot"],
                       input=use + statements + ";", text=True, check=True)

    def query(self, statement):
        out = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot",
                              "-N", "-B", "-e", statement], check=True, capture_output=True,
                             text=True).stdout
        return [line.split("\t") for line in out.splitlines()]

    def position(self):
        file, pos = self.query("SHOW MASTER STATUS")[0][:2]
        return f"{file}:{pos}"

    def stream(self, name, shards):
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        return name


def offset(position):
    file, pos = position.rsplit(":", 1)
    return (int(file.rsplit(".", 1)[1]), int(pos))


# ---------------------------------------------------------------------------- workloads


def workload_inserts(world):
    """1,000,000 single-row inserts, in 1,000-row transactions."""
    world.sql("CREATE TABLE bench.w (id INT PRIMARY KEY, a INT, b VARCHAR(32), c DATETIME(6))")
    start = world.position()
    batch = ";".join(
        f"INSERT INTO bench.w SELECT seq, seq % 97, MD5(seq), NOW(6) FROM seq_{lo}_to_{lo + 999}"
        for lo in range(1, 1_000_001, 1000))
    world.sql(batch)
    return start, world.position(), 1_000_000, "bench.w"


def workload_updates(world, table="bench.u"):
    """1,000,000 updates of a 10-column table (1,000 rows per transaction)."""
    cols = ", ".join(f"c{i} INT" for i in range(1, 10))
    world.sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, {cols}); "
              f"INSERT INTO {table} SELECT seq, seq, seq, seq, seq, seq, seq, seq, seq, seq "
              "FROM seq_1_to_1000000")
    start = world.position()
    world.sql(";".join(f"UPDATE {table} SET c1 = c1 + 1, c5 = c5 * 2 WHERE id BETWEEN {lo} AND {lo + 999}"
                       for lo in range(1, 1_000_001, 1000)))
    return start, world.position(), 1_000_000, table


def workload_one_transaction(world):
    """One transaction of 1,000,000 rows."""
    world.sql("CREATE TABLE bench.big (id INT PRIMARY KEY, a INT, b VARCHAR(32))")
    start = world.position()
    world.sql("INSERT INTO bench.big SELECT seq, seq % 97, MD5(seq) FROM seq_1_to_1000000")
    return start, world.position(), 1_000_000, "bench.big"


def workload_mixed(world):
    """20 tables, 1,000,000 rows in 1,000-row transactions, the tables interleaved."""
    world.sql(";".join(f"CREATE TABLE bench.m{t} (id INT PRIMARY KEY, a INT, b VARCHAR(32))"
                       for t in range(20)))
    start = world.position()
    statements = []
    for lo in range(1, 50_001, 1000):
        for t in range(20):
            statements.append(f"INSERT INTO bench.m{t} SELECT seq, seq % 97, MD5(seq) "
                              f"FROM seq_{lo}_to_{lo + 999}")
    world.sql(";".join(statements))
    return start, world.position(), 1_000_000, "bench.m*"


def workload_big_row(world):
    """One 64 MiB row (a LONGBLOB), larger than any Kinesis record: skipped as oversize."""
    world.sql("CREATE TABLE bench.blob (id INT PRIMARY KEY, b LONGBLOB); "
              "INSERT INTO bench.blob VALUES (0, 'small')")
    start = world.position()
    world.sql("INSERT INTO bench.blob VALUES (1, REPEAT('x', 64 * 1024 * 1024)); "
              "INSERT INTO bench.blob VALUES (2, 'small')")
    return start, world.position(), 2, "bench.blob"


def workload_ten_columns(world):
    """1,000,000 inserts into a 10-column table of common types (1,000-row transactions)."""
    world.sql("CREATE TABLE bench.ten (id INT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(32), "
              "d DECIMAL(12,2), e DATETIME(6), f DOUBLE, g TINYINT, h INT UNSIGNED, "
              "i VARCHAR(16))")
    start = world.position()
    world.sql(";".join(
        f"INSERT INTO bench.ten SELECT seq, seq % 1000, seq * 7919, MD5(seq), seq / 100, "
        f"NOW(6), seq / 3, seq % 100, seq, 'status' FROM seq_{lo}_to_{lo + 999}"
        for lo in range(1, 1_000_001, 1000)))
    return start, world.position(), 1_000_000, "bench.ten"


WORKLOADS = [
    ("1M inserts, 1,000-row transactions", workload_inserts),
    ("1M updates of a 10-column table", workload_updates),
    ("one 1M-row transaction", workload_one_transaction),
    ("20 tables, 1M rows", workload_mixed),
    ("one 64 MiB row (skipped as oversize) and a small one", workload_big_row),
]

# ---------------------------------------------------------------------------- the daemon


def env_for(world, stream, tables, work, extra):
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "BINLOG_KINESIS__MYSQL__PORT": str(world.db_port),
        "BINLOG_KINESIS__MYSQL__PASSWORD": "bench",
        "BINLOG_KINESIS__KINESIS__STREAM": stream,
        "BINLOG_KINESIS__KINESIS__REGION": "us-east-1",
        "BINLOG_KINESIS__KINESIS__ENDPOINT_URL": f"http://127.0.0.1:{world.emu_port}",
        "BINLOG_KINESIS__METRICS__CLOUDWATCH": "false",
        "BINLOG_KINESIS__HTTP__LISTEN": "",
        "BINLOG_KINESIS__FILTER__INCLUDE": tables,
        "BINLOG_KINESIS__CHECKPOINT__PATH": os.path.join(work, f"checkpoint-{stream}.json"),
        # Every 20 ms, so that a replay's end is seen within a few milliseconds.
        "BINLOG_KINESIS__CHECKPOINT__INTERVAL_MS": "20",
        # Replays measure the binlog path: a first start would also snapshot the tables'
        # current rows (the snapshot benchmark turns it back on).
        "BINLOG_KINESIS__SNAPSHOT__MODE": "never",
        # The app's "replicating" line marks the end of startup (see `replay`).
        "RUST_LOG": "warn,binlog_kinesis::app=info",
    }
    env.update(extra)
    return env


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def perf_child(perf):
    """The pid of the process `perf record -- command` started."""
    for _ in range(500):
        try:
            with open(f"/proc/{perf.pid}/task/{perf.pid}/children") as f:
                children = f.read().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        if perf.poll() is not None:
            raise SystemExit(f"perf exited with {perf.returncode}")
        time.sleep(0.01)
    raise SystemExit("perf did not start the daemon")


def replay(world, work, start, end, tables, stream, extra=None, measure=None, cpus=None):
    """Runs the daemon from `start` until its checkpoint reaches `end`; returns (seconds,
    peak RSS in MiB, seconds of startup: until the daemon logs that it is replicating).
    With a `measure` dict, also its CPU seconds (user + system) until then, as "cpu_s".
    `cpus` pins the daemon to those CPUs (taskset) instead of `--cpus`."""
    env = env_for(world, stream, tables, work, extra or {})
    checkpoint = env["BINLOG_KINESIS__CHECKPOINT__PATH"]
    if os.path.exists(checkpoint):
        os.remove(checkpoint)
    began = time.monotonic()
    # `--perf DIR`: a CPU profile of the measured runs. perf starts the daemon, so threads
    # the daemon starts later (the encoding pool, blocking tasks) are recorded too, which
    # attaching with `perf record -p` misses.
    perf = None
    command = (["taskset", "-c", cpus] if cpus else PIN) + [BIN, "run", "--start-position", start]
    if PERF_DIR and measure is not None:
        command = ["perf", "record", "-F", os.environ.get("BENCH_PERF_HZ", "499"), "--call-graph", "dwarf,16384", "-o",
                   os.path.join(PERF_DIR, f"{stream}.data"), "--"] + command
    daemon = subprocess.Popen(command, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pid = daemon.pid
    if command[0] == "perf":
        perf, pid = daemon, perf_child(daemon)
    started = []

    def watch():
        for line in daemon.stderr:
            if not started and "replicating" in line and "starting" not in line:
                started.append(time.monotonic() - began)
            if "WARN" in line or "ERROR" in line or '"level":"WARN"' in line:
                sys.stderr.write(line)

    threading.Thread(target=watch, daemon=True).start()
    target = offset(end)
    peak = 0
    while True:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited with {daemon.returncode}")
        peak = max(peak, vm_hwm_kib(pid))
        try:
            with open(checkpoint) as f:
                if offset(json.load(f)["position"]) >= target:
                    break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    elapsed = time.monotonic() - began
    peak = max(peak, vm_hwm_kib(pid))
    if measure is not None:
        measure["cpu_s"] = cpu_seconds(pid)
    os.kill(pid, signal.SIGTERM)
    daemon.wait()
    return elapsed, peak / 1024, (started or [float("nan")])[0]


def binlog_bytes(world, start, end):
    """Bytes of binlog between two positions (same file in these workloads)."""
    (sf, so), (ef, eo) = offset(start), offset(end)
    if sf != ef:
        sizes = {int(name.rsplit(".", 1)[1]): int(size)
                 for name, size, *_ in world.query("SHOW BINARY LOGS")}
        return sizes[sf] - so + sum(sizes[f] for f in range(sf + 1, ef)) + eo
    return eo - so


# ---------------------------------------------------------------------------- the runs


def throughput(world, work, rows):
    comparison = None
    for name, make in WORKLOADS:
        start, end, n, tables = make(world)
        size = binlog_bytes(world, start, end)
        stream = world.stream(f"s{len(rows)}", 4)
        skip = {"BINLOG_KINESIS__KINESIS__OVERSIZE": "skip"}
        kinesis_s, kinesis_rss, _ = replay(world, work, start, end, tables, stream, skip)
        file_s, file_rss, file_startup = replay(world, work, start, end, tables, f"f{len(rows)}",
                                  {**skip, "BINLOG_KINESIS__SINK__KIND": "file",
                                   "BINLOG_KINESIS__SINK__PATH": "/dev/null"})
        rows.append({"workload": name, "rows": n, "binlog_mb": size / 1e6,
                     "kinesis": (n / kinesis_s, size / 1e6 / kinesis_s, kinesis_rss),
                     "file": (n / file_s, size / 1e6 / file_s, file_rss),
                     "start": start, "end": end, "tables": tables, "file_s": file_s,
                     "file_startup": file_startup})
        print(f"{name}: kinesis {n / kinesis_s:,.0f} rows/s, {kinesis_rss:.0f} MiB; "
              f"file sink {n / file_s:,.0f} rows/s ({n / (file_s - file_startup):,.0f} after "
              f"{file_startup:.2f} s of startup), {file_rss:.0f} MiB", flush=True)
        if comparison is None:
            # While the binlog holds only this workload (and the setup before it).
            comparison = compare(world, work, rows[0])
    return comparison


def proxy_stats(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_quota") as answer:
        return json.load(answer)


QUOTA_RUNS = {
    "table, no limit": ("table", 0),
    "table": ("table", 500),
    "primary_key": ("primary_key", 500),
}


def quota(world, work):
    """The 20-table workload through the shard-quota proxy (Kinesis's real quotas, 4 shards)."""
    world.sql(";".join(f"CREATE TABLE bench.q{t} (id INT PRIMARY KEY, a INT, b VARCHAR(32))"
                       for t in range(20)))
    start = world.position()
    world.sql(";".join(f"INSERT INTO bench.q{t} SELECT seq, seq % 97, MD5(seq) FROM seq_{lo}_to_{lo + 999}"
                       for lo in range(1, 10_001, 1000) for t in range(20)))
    end = world.position()
    shards, port = 4, free_port()
    proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "quota_proxy.py"),
                              "--port", str(port), "--target", f"http://127.0.0.1:{world.emu_port}",
                              "--shards", str(shards)], stdout=subprocess.PIPE, text=True)
    assert proxy.stdout.readline().strip() == "ready"
    stream = world.stream("quota", shards)
    try:
        results = {}
        # max_events_per_record: 0 (no limit, the default before issue 16) against 500 (the
        # default since: what Firehose deaggregates), to show what the cap costs.
        for run, (partition_by, per_record) in QUOTA_RUNS.items():
            before = proxy_stats(port)
            seconds, rss, _ = replay(world, work, start, end, "bench.q*", stream, {
                "BINLOG_KINESIS__KINESIS__ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "BINLOG_KINESIS__KINESIS__PARTITION_BY": partition_by,
                "BINLOG_KINESIS__KINESIS__MAX_EVENTS_PER_RECORD": str(per_record)})
            after = proxy_stats(port)
            delta = {k: after[k] - before.get(k, 0) for k in after if k != "streams"}
            events = 200_000
            results[run] = {
                "seconds": seconds, "rss": rss,
                "records_per_s": delta["accepted_records"] / seconds,
                "mb_per_s": delta["accepted_bytes"] / 1e6 / seconds,
                "quota_fraction": (delta["accepted_bytes"] / seconds) / (shards * 1024 * 1024),
                "records_per_1000": delta["accepted_records"] * 1000 / events,
                "units_per_1000": delta["put_payload_units"] * 1000 / events,
                "throttled": delta["throttled_records"],
            }
            print(f"quota proxy, {run}: {results[run]}", flush=True)
        results["hot"] = hot_table(world, work, port)
        return results
    finally:
        proxy.kill()
        proxy.wait()


def hot_table(world, work, port):
    """One hot table on a 1-shard stream through the quota proxy: how much of the shard's byte
    quota one partition key gets, one record in flight at a time."""
    world.sql("CREATE TABLE bench.hot (id INT PRIMARY KEY, a INT, b VARCHAR(32))")
    start = world.position()
    world.sql(";".join(f"INSERT INTO bench.hot SELECT seq, seq % 97, MD5(seq) FROM seq_{lo}_to_{lo + 999}"
                       for lo in range(1, 60_001, 1000)))
    end = world.position()
    stream = world.stream("hot", 1)
    seconds, rss, _ = replay(world, work, start, end, "bench.hot", stream, {
        "BINLOG_KINESIS__KINESIS__ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    window = proxy_stats(port)["streams"][stream]
    # The shard's bucket starts full (1 MiB of burst); the rate after it is the shard's.
    burst = 1024 * 1024
    active = window["last"] - window["first"]
    result = {"seconds": seconds, "active_s": active, "mb": window["bytes"] / 1e6,
              "quota_fraction": (window["bytes"] - burst) / active / (1024 * 1024)}
    print(f"quota proxy, one hot table: {result}", flush=True)
    return result


def latency(world, work, seconds=20, rate=1000):
    """Commit-to-visible latency at a steady `rate` single-row transactions per second."""
    import pymysql
    world.sql("CREATE TABLE bench.lat (id INT PRIMARY KEY, committed_us BIGINT)")
    stream = world.stream("latency", 1)
    env = env_for(world, stream, "bench.lat", work, {})
    daemon = subprocess.Popen([BIN, "run", "--from-end"], env=env, stdout=subprocess.DEVNULL)
    time.sleep(2)
    shard = world.kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = world.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                                ShardIteratorType="LATEST")["ShardIterator"]
    latencies, stop = [], threading.Event()

    def consume():
        nonlocal iterator
        while not stop.is_set():
            answer = world.kinesis.get_records(ShardIterator=iterator, Limit=10000)
            now = time.time()
            iterator = answer["NextShardIterator"]
            for record in answer["Records"]:
                for line in record["Data"].decode().splitlines():
                    after = json.loads(line)["after"]
                    latencies.append(now - after["committed_us"] / 1e6)
            if not answer["Records"]:
                time.sleep(0.01)

    consumer = threading.Thread(target=consume)
    consumer.start()
    conn = pymysql.connect(unix_socket=world.socket, user="root", autocommit=True)
    with conn.cursor() as cursor:
        began = time.monotonic()
        for n in range(seconds * rate):
            due = began + n / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            # The wall clock just before COMMIT: the row carries its own commit time.
            cursor.execute("INSERT INTO bench.lat VALUES (%s, %s)", (n, int(time.time() * 1e6)))
        achieved = seconds * rate / (time.monotonic() - began)
    deadline = time.time() + 30
    while len(latencies) < seconds * rate and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    consumer.join()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait()
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
    result = {"rate": achieved, "n": len(ordered), "p50_ms": pick(0.50), "p99_ms": pick(0.99)}
    print(f"latency: {result}", flush=True)
    return result


def compare(world, work, row):
    """mariadb-binlog on the same binlog as the first workload: transfer only, and its decoder."""
    first = row["start"].rsplit(":", 1)[0]
    raw = os.path.join(work, "raw") + "/"
    os.makedirs(raw, exist_ok=True)
    began = time.monotonic()
    subprocess.run(["mariadb-binlog", "--no-defaults", "--read-from-remote-server", "--raw",
                    "--host=127.0.0.1", f"--port={world.db_port}", "--user=cdc", "--password=bench",
                    f"--result-file={raw}", first],
                   check=True, capture_output=True)
    transfer = time.monotonic() - began
    began = time.monotonic()
    with open(os.devnull, "w") as null:
        subprocess.run(["mariadb-binlog", "--no-defaults", "-v", "--base64-output=DECODE-ROWS",
                        f"--start-position={row['start'].rsplit(':', 1)[1]}",
                        f"--stop-position={row['end'].rsplit(':', 1)[1]}", raw + first],
                       check=True, stdout=null)
    decode = time.monotonic() - began
    result = {"transfer_s": transfer, "decode_s": decode, "daemon_file_s": row["file_s"],
              "daemon_startup_s": row["file_startup"]}
    print(f"mariadb-binlog: {result}", flush=True)
    return result


# ---------------------------------------------------------------------------- column rules


COLUMN_RULES = '[{tables = ["bench.cu"], exclude = ["c2", "c3", "c4"], hash = ["c1", "c5"]}]'


def columns_bench(world, work, runs=3):
    """The 10-column update workload replayed into /dev/null without column rules and with 3
    columns excluded and 2 hashed, alternating, `runs` times each."""
    start, end, n, table = workload_updates(world, "bench.cu")
    times = {"none": [], "rules": []}
    for run in range(runs):
        for name, extra in [("none", {}),
                            ("rules", {"BINLOG_KINESIS__COLUMNS__RULES": COLUMN_RULES,
                                       "BINLOG_KINESIS__COLUMNS__HASH_KEY": "bench-key-0123456789abcdef"})]:
            elapsed, _, startup = replay(world, work, start, end, table, f"cols-{name}-{run}",
                                         {**extra, "BINLOG_KINESIS__SINK__KIND": "file",
                                          "BINLOG_KINESIS__SINK__PATH": "/dev/null",
                                          "BINLOG_KINESIS__CHECKPOINT__INTERVAL_MS": "20"})
            times[name].append(elapsed - startup)
    result = {"rows": n, "none": sorted(times["none"]), "rules": sorted(times["rules"])}
    print(f"columns: {result}", flush=True)
    return result


def columns_section(result):
    rows = result["rows"]
    median = lambda xs: xs[len(xs) // 2]
    line = lambda name, xs: (f"| {name} | {', '.join(f'{x:.2f}' for x in xs)} | {median(xs):.2f} | "
                             f"{rows / median(xs):,.0f} |")
    return [
        "## Column rules",
        "",
        "The 1M-update, 10-column workload of the table above (`bench.cu`, 1,000-row transactions, "
        "two images per row) replayed into /dev/null (file sink, checkpoint every 20 ms), "
        "alternately without `[columns]` rules and with 3 of the 10 columns excluded "
        "(`c2`, `c3`, `c4`) and 2 hashed (`c1`, `c5`: HMAC-SHA256, in both images); seconds after "
        "startup.",
        "",
        "| rules | runs (seconds) | median | rows/s |",
        "| --- | --- | --- | --- |",
        line("none", result["none"]),
        line("3 excluded, 2 hashed", result["rules"]),
        "",
        COLUMNS_PARAGRAPH,
        "",
    ]


COLUMNS_PARAGRAPH = """Without rules, the only new work on the hot path is one check per column of whether it has a rule (the rules are resolved once per table definition, not per row). Measured against the commit before column rules existed (`084f0b3`), same workload and settings, four runs each alternating: 1.05, 1.05, 1.15, 1.20 s before, 1.05, 1.15, 1.15, 1.19 s after: no difference beyond the noise. With rules, an excluded column's bytes are read past without being converted, and a hashed one costs an HMAC-SHA256 per value per image (here four per row, 4M in all): the keyed state is computed once and cloned per value, so each costs the two SHA-256 compressions of its own blocks, about 0.1 µs here. Re-keying per value, as the first version did, made the hashed run about 1.95 s."""


# ---------------------------------------------------------------------------- snapshots


def snapshot_bench(world, work):
    """A 1,000,000-row, 10-column table read by a snapshot (the first start of a daemon with
    `snapshot.mode = "initial"`): into a file and into the emulator, with peak RSS; and
    `mariadb-dump --single-transaction --quick` of the same table as the reference."""
    world.sql("CREATE TABLE bench.snap (id INT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(32), "
              "d VARCHAR(64), e DATETIME(6), f DECIMAL(12,2), g DOUBLE, h TINYINT, i TEXT)")
    world.sql(";".join(
        "INSERT INTO bench.snap SELECT seq, seq % 97, seq * 7, MD5(seq), CONCAT(MD5(seq), MD5(seq + 1)), "
        f"NOW(6), seq / 3, seq * 1.5, seq % 2, REPEAT('x', 20) FROM seq_{lo}_to_{lo + 99_999}"
        for lo in range(1, 1_000_001, 100_000)))
    rows = 1_000_000
    out = os.path.join(work, "snapshot.jsonl")
    results = {}
    for sink, extra in [("file", {"BINLOG_KINESIS__SINK__KIND": "file",
                                  "BINLOG_KINESIS__SINK__PATH": out}),
                        ("kinesis", {})]:
        stream = world.stream(f"snap-{sink}", 4) if sink == "kinesis" else f"snap-{sink}"
        # The end is seen in the checkpoint: write it often, so that its interval does not
        # add up to 200 ms to a run of about a second.
        extra = dict(extra, BINLOG_KINESIS__CHECKPOINT__INTERVAL_MS="20",
                     BINLOG_KINESIS__SNAPSHOT__MODE="initial")
        env = env_for(world, stream, "bench.snap", work, extra)
        checkpoint = env["BINLOG_KINESIS__CHECKPOINT__PATH"]
        if os.path.exists(checkpoint):
            os.remove(checkpoint)
        began = time.monotonic()
        daemon = subprocess.Popen([BIN, "run"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        started = []

        def watch(daemon=daemon, started=started, began=began):
            for line in daemon.stderr:
                if not started and "replicating" in line and "starting" not in line:
                    started.append(time.monotonic() - began)
                if "WARN" in line or "ERROR" in line:
                    sys.stderr.write(line)

        threading.Thread(target=watch, daemon=True).start()
        peak = 0
        while True:
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited with {daemon.returncode}")
            peak = max(peak, vm_hwm_kib(daemon.pid))
            try:
                with open(checkpoint) as f:
                    saved = json.load(f)
                if "snapshot" in saved and "pending" not in saved["snapshot"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        peak = max(peak, vm_hwm_kib(daemon.pid))
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        startup = (started or [0.0])[0]
        results[sink] = {"s": elapsed, "after_startup_s": elapsed - startup, "rss_mib": peak / 1024}
    results["json_mb"] = os.path.getsize(out) / 1e6
    os.remove(out)
    began = time.monotonic()
    with open(os.devnull, "w") as null:
        subprocess.run(["mariadb-dump", "--no-defaults", f"--socket={world.socket}", "-uroot",
                        "--single-transaction", "--quick", "bench", "snap"], check=True, stdout=null)
    results["dump_s"] = time.monotonic() - began
    # The floor: the server sending the rows and the plainest client taking them (tab-separated
    # text to /dev/null), over the daemon's transport (TCP).
    began = time.monotonic()
    with open(os.devnull, "w") as null:
        subprocess.run(["mariadb", "--no-defaults", "--protocol=tcp", "-h127.0.0.1",
                        f"-P{world.db_port}", "-uroot", "--quick", "-N",
                        "-e", "SELECT * FROM bench.snap"], check=True, stdout=null)
    results["select_s"] = time.monotonic() - began
    results["rows"] = rows
    print(f"snapshot: {results}", flush=True)
    return results


def snapshot_section(result):
    rows, mb = result["rows"], result["json_mb"]
    met = lambda ok: "met" if ok else "**missed**"
    line = lambda name, r: (f"| {name} | {r['s']:.2f} | {r['after_startup_s']:.2f} | "
                            f"{rows / r['after_startup_s']:,.0f} | {mb / r['after_startup_s']:,.0f} | "
                            f"{r['rss_mib']:.0f} |")
    file_rate = rows / result["file"]["after_startup_s"]
    dump_rate = rows / result["dump_s"]
    peak = max(result["file"]["rss_mib"], result["kinesis"]["rss_mib"])
    return [
        "## Snapshot",
        "",
        f"A 1,000,000-row, 10-column InnoDB table (`bench.snap`: INT key, INT, BIGINT, two VARCHARs, "
        f"DATETIME(6), DECIMAL, DOUBLE, TINYINT, TEXT), {mb:,.0f} MB as JSON lines, read by the "
        "first start of a daemon (`snapshot.mode = \"initial\"`, default `chunk_rows` 10,000) until its "
        "checkpoint (written every 20 ms here) says the snapshot is done; MB/s counts the JSON written.",
        "",
        "| run | seconds | after startup | rows/s | MB/s | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- |",
        line("file sink", result["file"]),
        line("Kinesis (ministack, 4 shards, `partition_by = \"table\"`)", result["kinesis"]),
        f"| `mariadb-dump --single-transaction --quick` to /dev/null | {result['dump_s']:.2f} | | {dump_rate:,.0f} | | |",
        f"| `mariadb --quick -e 'SELECT * FROM bench.snap'` to /dev/null (TCP, as the daemon) | {result['select_s']:.2f} | | {rows / result['select_s']:,.0f} | | |",
        "",
        "| target | this run | |",
        "| --- | --- | --- |",
        f"| file sink at least 500,000 rows/s | {file_rate:,.0f} rows/s | {met(file_rate >= 500_000)} |",
        f"| at least as fast as `mariadb-dump` on the same table | {file_rate / dump_rate:.2f}x its speed | {met(file_rate >= dump_rate)} |",
        f"| peak RSS under 128 MiB | {peak:.0f} MiB | {met(peak < 128)} |",
        "",
        SNAPSHOT_PARAGRAPH,
        "",
    ]


SNAPSHOT_PARAGRAPH = """One table is read one chunk at a time on one connection, each chunk in its own consistent read, the next one while the current one is emitted; the reader holds at most the chunk it is placing and the driver the next one, so memory does not grow with the table. Several tables are read at once (`snapshot.parallel_tables`, one connection each), which this one-table run does not use. The table's definition is read from `information_schema` once per table (again only after a DDL statement), not per chunk.

What bounds the rate. The `mariadb --quick` row is the floor of this machine: the server sending the rows and the plainest client throwing them away; `mariadb-dump` runs at that floor, its client formatting the server's text rows while the server sends the next ones. The daemon's snapshot reader (one task: `mysql_async` reading and splitting each row, then the encoding into the row's JSON) is its critical path: timing each chunk's read showed it busy about 80 % of the run, with the binlog reader emitting chunks and the producer writing them on the other core beside the server. From `perf record` (DWARF call graphs) of the file-sink run, the snapshot reader's task holds about 60 % of the daemon's samples, half in `mysql_async` (a `Value` and an allocation per text column, a clock read per packet) and half in the encoding. Earlier revisions of this section: values written straight into the row's JSON instead of through `serde_json::Value` (2.81 s to 1.45 s), then ASCII values of latin1 columns (this table's default character set) written as they come, text without anything to escape copied without `serde_json`, and the per-row scratch buffers kept: about 5 % less time and CPU (into /dev/null, three runs each: 1.33 to 1.39 s before, 1.28 to 1.29 s after; the file-sink runs here vary by more than that). Handing the rows to a second task or thread for encoding was tried and was slower (about 1.45 to 1.6 s, more CPU in all): on two cores shared with the server there is no idle core to win, and the hand-off and cross-thread frees cost more than they save. Reaching `mariadb-dump` would take a row decoder that reads the binary-protocol packet in place (no `Value` per column) and lines built once into the record buffer."""


def write_section(path, lines):
    """Replaces the report's section that `lines` starts with, in place, or appends it."""
    title = lines[0]
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    parts = text.split("\n## ")
    new = "\n".join(lines)[3:].rstrip("\n") + "\n"
    found = [i for i, p in enumerate(parts) if i > 0 and ("## " + p).startswith(title)]
    if found:
        parts[found[0]] = new
    else:
        parts[-1] = parts[-1].rstrip("\n") + "\n"
        parts.append(new)
    with open(path, "w") as f:
        f.write("\n## ".join(parts).rstrip("\n") + "\n")


def head_commit():
    """The commit measured, marked when the tree had changes not yet committed."""
    run = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = run("status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock").strip()
    return run("rev-parse", "--short", "HEAD").strip() + (" plus uncommitted changes" if dirty else "")


COST_WORKLOADS = [
    ("1M inserts, 1,000-row transactions", workload_inserts),
    ("1M updates of a 10-column table", workload_updates),
    ("one 1M-row transaction", workload_one_transaction),
    ("20 tables, 1M rows", workload_mixed),
    ("1M inserts into a 10-column table of common types", workload_ten_columns),
]


def cost(world, work):
    """Each workload through the file sink (to /dev/null) and through the real Kinesis path
    against tests/instant_kinesis.py, which accepts everything at once: rows/s and the
    daemon's CPU seconds (user + system) per million rows, startup included."""
    port = free_port()
    endpoint = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "instant_kinesis.py"),
                                 "--port", str(port), "--shards", "4"],
                                stdout=subprocess.PIPE, text=True)
    assert endpoint.stdout.readline().strip() == "ready"
    results = []
    try:
        for name, make in COST_WORKLOADS:
            # The workloads' tables may exist already (a full run measured them before).
            world.sql("DROP DATABASE IF EXISTS bench; CREATE DATABASE bench", database=None)
            start, end, n, tables = make(world)
            row = {"workload": name}
            instant = {"BINLOG_KINESIS__KINESIS__ENDPOINT_URL": f"http://127.0.0.1:{port}"}
            # One replay not measured: right after writing the workload the server is still
            # busy with it (purge, flushing), which slows what it sends and makes the first
            # measured run's CPU figure an outlier.
            replay(world, work, start, end, tables, f"c{len(results)}warm",
                   {"BINLOG_KINESIS__SINK__KIND": "file", "BINLOG_KINESIS__SINK__PATH": "/dev/null"})
            for sink, extra, cpus in [
                ("file", {"BINLOG_KINESIS__SINK__KIND": "file",
                          "BINLOG_KINESIS__SINK__PATH": "/dev/null"}, None),
                ("instant", instant, None),
                # One core, as a Fargate task of 1 vCPU or less sees it: no encoding pool,
                # one runtime thread.
                ("instant1", instant, "0"),
            ]:
                # The median of three replays: one run's CPU time varies by a tenth of a second.
                runs = []
                for attempt in range(3):
                    measure = {}
                    # The endpoint's own CPU (Python: JSON and base64 of every record) shares
                    # the machine with the daemon and the server.
                    endpoint_before = cpu_seconds(endpoint.pid)
                    seconds, rss, startup = replay(world, work, start, end, tables,
                                                   f"c{len(results)}{sink}{attempt}", extra, measure,
                                                   cpus)
                    endpoint_cpu = cpu_seconds(endpoint.pid) - endpoint_before
                    runs.append((measure["cpu_s"], seconds, rss, startup, endpoint_cpu))
                cpu, seconds, rss, startup, endpoint_cpu = sorted(runs)[1]
                row[sink] = {"rows_s": n / seconds, "cpu_per_m": cpu * 1e6 / n,
                             "rss": max(r[2] for r in runs), "startup": startup, "seconds": seconds,
                             "endpoint_cpu_per_m": endpoint_cpu * 1e6 / n}
            results.append(row)
            print(f"cost, {name}: {row}", flush=True)
    finally:
        endpoint.kill()
        endpoint.wait()
    return results


def cost_section(results):
    """The "Cost per row" section."""
    lines = [
        "## Cost per row",
        "",
        "The daemon's own cost on its real output path (issue 18): each workload replayed "
        "through the file sink (to /dev/null) and through the Kinesis client against "
        "`tests/instant_kinesis.py`, a local endpoint that decodes every record and answers "
        "PutRecords at once (so request building, JSON, base64 and HTTP are measured, not an "
        "emulator). CPU is the daemon process's user + system time until its checkpoint "
        "reached the end (checkpoints every 20 ms), startup included, per million rows (the median of three replays; peak RSS the largest). "
        f"Measured on {datetime.date.today()} at commit `{head_commit()}`.",
        "",
        "| workload | file sink: rows/s | CPU s per 1M rows | instant Kinesis: rows/s | CPU s per 1M rows "
        "| instant Kinesis on one core: rows/s | CPU s per 1M rows | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        f, k, one = r["file"], r["instant"], r["instant1"]
        lines.append(f"| {r['workload']} | {f['rows_s']:,.0f} | {f['cpu_per_m']:.2f} "
                     f"| {k['rows_s']:,.0f} | {k['cpu_per_m']:.2f} "
                     f"| {one['rows_s']:,.0f} | {one['cpu_per_m']:.2f} "
                     f"| {max(f['rss'], k['rss'], one['rss']):.0f} |")
    worst = max(r["instant1"]["cpu_per_m"] for r in results)
    many = next(r for r in results if r["workload"].startswith("20 tables"))
    endpoint = many["instant"]["endpoint_cpu_per_m"]
    slowest = min(r["instant1"]["rows_s"] for r in results)
    follows = lambda vcpu: f"{round(vcpu * 1e6 / worst, -3):,.0f}"
    lines += [
        "",
        "\"On one core\" is the daemon pinned to one CPU (`taskset -c 0`), as a Fargate task of "
        "1 vCPU or less sees the machine: one runtime thread and no encoding pool "
        "(`mysql.encode_threads = -1` starts none with one core). With two cores the pool "
        "encodes rows beside the reader: faster, at some CPU for handing rows between threads.",
        "",
        "The single-table workloads' Kinesis rows/s are bound by one record in flight per "
        "partition key (500 events a record, one round trip to the endpoint each), not by CPU; "
        "the 20-table workload keeps several keys in flight. That one is bound by the machine: "
        f"the endpoint itself (Python) used {endpoint:.2f} CPU seconds per million rows there, "
        f"the daemon {many['instant']['cpu_per_m']:.2f}, and the MariaDB server sending the binlog "
        "shares the same two cores; pinned to one core, the daemon leaves the other to them "
        f"({many['instant1']['rows_s']:,.0f} rows/s).",
        "",
        "What one Fargate task can follow: with 1 vCPU at least the one-core rate above "
        f"({slowest:,.0f} rows/s on the slowest workload, measured); from CPU alone, at the "
        f"one-core Kinesis path's {worst:.2f} CPU seconds per million rows (the costliest "
        f"workload here), about {follows(0.25)} rows/s with 0.25 vCPU, {follows(0.5)} with "
        f"0.5 vCPU and {follows(1)} with 1 vCPU (computed, not measured under a CPU quota). "
        "Kinesis binds first for a hot table: one partition key is one shard, 1 MiB/s, a few "
        "thousand rows a second (see \"Against Kinesis's shard quotas\").",
    ]
    return lines


def quota_section(quota_results):
    """The "Against Kinesis's shard quotas" section."""
    lines = [
        "## Against Kinesis's shard quotas",
        "",
        "200,000 rows in 20 tables through `tests/quota_proxy.py` enforcing 1 MiB/s and 1,000 "
        "records/s per shard on a 4-shard stream, routed by the MD5 of the partition key. "
        "A PUT payload unit is what Kinesis bills per started 25 KB of each record (key "
        f"included). Measured on {datetime.date.today()} at commit `{head_commit()}`.",
        "",
        "| partition_by | max_events_per_record | seconds | records/s | of the record quota | MB/s | of the byte quota | records per 1,000 events | 25 KB PUT payload units per 1,000 events | throttled record attempts |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run, (by, per_record) in QUOTA_RUNS.items():
        q = quota_results[run]
        shown = "0 (no limit)" if per_record == 0 else f"{per_record} (default)"
        lines.append(f"| {by} | {shown} | {q['seconds']:.1f} | {q['records_per_s']:,.0f} | {q['records_per_s'] / 4000:.0%} "
                     f"| {q['mb_per_s']:.2f} | {q['quota_fraction']:.0%} "
                     f"| {q['records_per_1000']:.1f} | {q['units_per_1000']:.1f} | {q['throttled']:,} |")
    before, after = quota_results["table, no limit"], quota_results["table"]
    lines += [
        "",
        "With `partition_by = \"table\"` records are full and the binding quota is bytes, on the "
        "shards the 20 tables hash to; with `\"primary_key\"` every row is its own key, so each "
        "event is its own record and the binding quota is records. Throttled attempts are "
        "retried in order per key.",
        "",
        "The cost of the Firehose-safe default (`max_events_per_record = 500`, issue 16) with "
        f"`partition_by = \"table\"`: {after['units_per_1000']:.1f} PUT payload units per 1,000 "
        f"events instead of {before['units_per_1000']:.1f} without a limit "
        f"({after['units_per_1000'] / before['units_per_1000'] - 1:+.0%}), and "
        f"{after['records_per_1000']:.1f} records per 1,000 events instead of "
        f"{before['records_per_1000']:.1f}. Units follow bytes, not records, once records are "
        "this full: a record of 500 such events is several units already, so the cap only adds "
        "each record's last, partly used unit. The record quota (1,000 records/s per shard) "
        "stays far away: at the byte quota's 1 MiB/s, records of 500 events of this size are "
        "fewer than 10 per second per shard.",
    ]
    hot = quota_results.get("hot")
    if hot:
        lines += [
            "",
            f"One hot table (60,000 rows, {hot['mb']:.1f} MB of records) on a 1-shard stream, "
            "`partition_by = \"table\"`: one partition key, one record in flight at a time. "
            f"It was written in {hot['active_s']:.1f} s at **{hot['quota_fraction']:.0%} of the "
            "shard's 1 MiB/s byte quota** (the bucket's initial 1 MiB burst left out). After "
            "the first throttle the producer paces the key to its shard's refill rate (the "
            "next record waits for the quota the last one used) instead of backing off "
            "blindly.",
        ]
    return lines


def report(rows, quota_results, latency_result, comparison, cost_results, path):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    lines = [
        "# Benchmarks",
        "",
        f"Written by `scripts/bench` on {datetime.date.today()} at commit `{commit}`: "
        f"{os.cpu_count()} cores ({cpu}), release build, a private MariaDB "
        f"{world_version} and ministack on loopback. Each workload is written to the binlog "
        "first, then the daemon replays it from the position before it until its checkpoint "
        "reaches the position after it (startup included). Peak RSS is the daemon's VmHWM. "
        "These are measurements of one run on a shared machine, not guarantees.",
        "",
        "## Throughput and memory",
        "",
        "| workload | binlog MB | Kinesis (ministack): seconds | rows/s | MB/s | peak RSS MiB | file sink: seconds | rows/s | rows/s after startup | MB/s | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        k, f = r["kinesis"], r["file"]
        rate = lambda x: f"{x:,.0f}" if r["rows"] >= 1000 else "-"
        lines.append(f"| {r['workload']} | {r['binlog_mb']:.0f} | {r['rows'] / k[0]:.2f} | {rate(k[0])} | {k[1]:.1f} | {k[2]:.0f} "
                     f"| {r['rows'] / f[0]:.2f} | {rate(f[0])} | {rate(r['rows'] / (r['file_s'] - r['file_startup']))} "
                     f"| {f[1]:.1f} | {f[2]:.0f} |")
    lines += [
        "",
        "The file sink (`[sink] kind = \"file\"`, to /dev/null) goes through the same producer, "
        "ordering and checkpoints: it is the pipeline's own limit. Against ministack the "
        "emulator's own speed is part of the figure.",
        "",
        "Memory is bounded by configuration, not by transaction size: the producer holds at "
        "most `kinesis.max_buffered_bytes` (32 MiB by default), counting each queued event's "
        "line, its bookkeeping and the copies of records in flight; a transaction's lookahead "
        "holds at most `mysql.transaction_lookahead_bytes` (8 MiB); the channel between them "
        "32 messages, each one event or a batch of at most 64 KiB of lines; rows waiting for "
        "the encoding threads at most 32 events and 4 MiB. The one-million-row transaction "
        "stays within those bounds. The AWS SDK's "
        "request bodies (base64 JSON of up to four 5 MiB PutRecords calls) come on top.",
        "",
        "One row event is the unit the MySQL driver reads: `mysql_async` holds the whole event "
        "packet (its read buffer grows to the next power of two) and `mysql_common` a copy of "
        "the event, so a single huge row costs about three times its size there, bounded by "
        "the largest row event the server writes (`max_allowed_packet`). The daemon's own part "
        "does not grow with it: a row whose values are larger than a record is read past "
        "without encoding those values, then skipped (`kinesis.oversize = \"skip\"`, the "
        "64 MiB row line) or stops the daemon (`\"fail\"`).",
        "",
    ]
    lines += quota_section(quota_results)
    lines += [
        "",
        "## Latency",
        "",
        f"Commit to record visible in the stream (a GetRecords poller), at a steady "
        f"{latency_result['rate']:,.0f} single-row transactions per second, "
        f"{latency_result['n']:,} samples, default settings (`linger_ms` 50): "
        f"p50 {latency_result['p50_ms']:.0f} ms, p99 {latency_result['p99_ms']:.0f} ms.",
        "",
        "## Compared with mariadb-binlog on the same binlog",
        "",
        f"The first workload's binlog ({rows[0]['binlog_mb']:.0f} MB):",
        "",
        "| tool | seconds | daemon (file sink) / tool |",
        "| --- | --- | --- |",
        f"| `mariadb-binlog --read-from-remote-server --raw` (transfer only, the floor) | {comparison['transfer_s']:.2f} | {comparison['daemon_file_s'] / comparison['transfer_s']:.1f}x |",
        f"| `mariadb-binlog -v --base64-output=DECODE-ROWS` (MariaDB's C++ decoder, to /dev/null) | {comparison['decode_s']:.2f} | {comparison['daemon_file_s'] / comparison['decode_s']:.1f}x |",
        f"| binlog-kinesis, file sink (decode, JSON, producer, checkpoints; startup included) | {comparison['daemon_file_s']:.2f} | 1.0x |",
        f"| binlog-kinesis, file sink, from the moment it is replicating | {comparison['daemon_file_s'] - comparison['daemon_startup_s']:.2f} | {(comparison['daemon_file_s'] - comparison['daemon_startup_s']) / comparison['decode_s']:.1f}x of `-v` |",
        "",
        PARAGRAPH,
        "",
    ]
    lines += targets(rows, quota_results, latency_result, comparison, cost_results)
    # Sections this function does not write (the other parts', and any written by hand) stay.
    kept = []
    if os.path.exists(path):
        written = {l for l in lines if l.startswith("## ")}
        for part in open(path).read().split("\n## ")[1:]:
            if "## " + part.split("\n", 1)[0] not in written:
                kept.append("## " + part.rstrip("\n"))
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n" + "".join("\n" + k + "\n" for k in kept))
    print("\n".join(lines))


def targets(rows, quota_results, latency_result, comparison, cost_results):
    """Issue 18's targets, each with this run's figure and whether it was met."""
    big = [r for r in rows if r["rows"] >= 1000]
    after_startup = [r["rows"] / (r["file_s"] - r["file_startup"]) for r in big]
    peak = max([max(r["kinesis"][2], r["file"][2]) for r in big]
               + [max(c["file"]["rss"], c["instant"]["rss"], c["instant1"]["rss"]) for c in cost_results])
    ratio = comparison["decode_s"] / (comparison["daemon_file_s"] - comparison["daemon_startup_s"])
    hot = quota_results["hot"]["quota_fraction"]
    p99 = latency_result["p99_ms"]
    twenty = next(c for c in cost_results if c["workload"].startswith("20 tables"))
    many, many1 = twenty["instant"]["rows_s"], twenty["instant1"]["rows_s"]
    cpu = [c["instant"]["cpu_per_m"] for c in cost_results]
    cpu1 = [c["instant1"]["cpu_per_m"] for c in cost_results]
    met = lambda ok: "met" if ok else "**missed**"
    return [
        "## Targets",
        "",
        "| target | this run | |",
        "| --- | --- | --- |",
        f"| file sink at least 2,000,000 row events/s | {min(after_startup):,.0f}-{max(after_startup):,.0f} "
        f"rows/s after startup | {met(min(after_startup) >= 2e6)} |",
        f"| at least 1.5x faster than `mariadb-binlog -v` on the same binlog | {ratio:.2f}x its speed (after startup) | {met(ratio >= 1.5)} |",
        f"| Kinesis path (instant endpoint) at least 1,000,000 rows/s on the 20-table workload | {many:,.0f} rows/s "
        f"(the daemon on one core, the endpoint and server on the other: {many1:,.0f}) | {met(many >= 1e6)} |",
        f"| Kinesis path at most 1 CPU second per million rows on every workload | {min(cpu):.2f}-{max(cpu):.2f} "
        f"(on one core {min(cpu1):.2f}-{max(cpu1):.2f}) | {met(max(cpu) <= 1)} |",
        f"| at least 90% of the shard byte quota for one hot table | {hot:.0%} | {met(hot >= 0.9)} |",
        f"| commit-to-visible p99 under 250 ms at 1,000 transactions/s | {p99:.0f} ms | {met(p99 < 250)} |",
        f"| peak RSS under 128 MiB for every workload (throughput and cost runs) | {peak:.0f} MiB at most | {met(peak < 128)} |",
        "",
        "Where a target is missed, \"What bounds the daemon\" above says why, from the profile.",
        "",
    ]


world_version = ""

PARAGRAPH = """Reading the comparison: the transfer is the floor; MariaDB's decoder reads a local copy of the file and prints rows as text, nothing else. The daemon's time includes its startup (connection, preflight checks, instance lock, and MariaDB's `BINLOG_GTID_POS`, which scans the binlog file up to the start position: the later in a large file, the longer) and up to one checkpoint interval (20 ms here) before the run counts as done; the "after startup" figures leave the startup out.

What bounds the daemon, from `perf record` of the cost workloads (`scripts/bench --only cost --perf DIR`: DWARF call graphs of the whole process, the encoding thread included) at commit `c3fe483`. On the Kinesis path, on every workload: the SHA-256 of each PutRecords body about 15 % of the samples (SigV4 signs a hash of the body, here the base64 of every line, 4/3 of its bytes; Kinesis has no unsigned-payload option), HTTP (hyper and the kernel's TCP) 8-10 %, base64 about 2 %, the rest of the SDK's call a few %. That output path costs the difference between the two sinks in "Cost per row": about 0.45 (20 tables) to 0.75 (updates, whose lines carry two images) CPU seconds per million rows, growing with the bytes sent, whatever the daemon does before it. The kernel has 21-32 % of the samples, most of it threads waking each other (futex, eventfd, scheduling: the reader, the encoding thread, the producer and the HTTP calls hand work across threads); allocation and freeing about 11 % (a buffer per line, the records, the SDK's request). In the daemon's own code, encoding the values is the largest part (integer formatting alone 7 % on the updates workload); the producer's intake and dispatch a few %. Since the profile above at `9084cc1`: batches between the stages, one tracker range per run of events between boundaries, one key lookup and one clock reading per run of events on one key, a transaction's lookahead held in the batches it is sent in, fast paths for FLOAT, DOUBLE, DECIMAL and DATETIME: 0.1-0.2 CPU seconds less per million rows on each workload. One copy of each line is left, into its record: the SDK's record data is an owned buffer, a record joins the lines of several events, and the `xid` and `commit` fields, known only at the transaction's end, are spliced in there (about 3 % of the samples). Tried and reverted: handing rows events to the encoding thread four at a time (no measurable change). Without the pool (`mysql.encode_threads = 0`) the daemon used 0.01-0.2 CPU seconds less per million rows at about the same rows/s here, where the MariaDB server shares the two cores; see "Encoding threads". Reaching 1 CPU second per million rows on every workload would take the output path's 0.45-0.75 plus a pipeline of 0.25-0.55, about half of today's; 1.5x `mariadb-binlog -v` (which prints text from a local file in one thread and nothing else) about 6M rows/s: this version does neither."""


def compressed_bench(work):
    """A 1,000,000-row MySQL 8 compressed transaction (scripts/compressed_binlog.py) through
    `decode`, which reads it with the same reader code as `run`: time, CPU and peak RSS."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import compressed_binlog

    path = os.path.join(work, "transaction_compression.000001")
    rows, uncompressed, compressed = compressed_binlog.build(path, 1000, 1000, 2000)
    began = time.monotonic()
    with open(os.devnull, "wb") as null:
        child = subprocess.Popen([BIN, "decode", path], stdout=null)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - began
    if status != 0:
        raise RuntimeError(f"decode failed: {status}")
    result = {"rows": rows, "uncompressed_mib": uncompressed / 2**20, "compressed_kib": compressed / 1024,
              "seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}
    print(f"compressed: {result}", flush=True)
    return result


def compressed_section(r):
    """The "Compressed transactions" section."""
    return [
        "## Compressed transactions",
        "",
        "One MySQL 8 compressed transaction (TRANSACTION_PAYLOAD, zstd) of "
        f"{r['rows']:,} rows, {r['uncompressed_mib']:.0f} MiB uncompressed and "
        f"{r['compressed_kib']:.0f} KiB compressed, built from the real fixture by "
        "`scripts/compressed_binlog.py`, read by `decode` (the reader code `run` uses) into "
        f"/dev/null. Measured on {datetime.date.today()} at commit `{head_commit()}`.",
        "",
        "| rows | seconds | rows/s | CPU s per 1M rows | peak RSS MiB |",
        "| --- | --- | --- | --- | --- |",
        f"| {r['rows']:,} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} "
        f"| {r['cpu_s'] * 1e6 / r['rows']:.2f} | {r['rss_mib']:.0f} |",
        "",
        "Peak RSS is the process's whole footprint; the transaction is decompressed as a stream "
        "and never held whole (the test `a_million_row_compressed_transaction_streams_in_bounded_memory` "
        "asserts the bound).",
    ]


def main():
    global world_version
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--only", choices=["snapshot", "columns", "quota", "cost", "compressed"],
                        help="run one part and rewrite only its section of the report")
    parser.add_argument("--perf", metavar="DIR",
                        help="record a flat CPU profile (perf) of each measured run into DIR")
    parser.add_argument("--cpus", metavar="LIST",
                        help="run the daemon on these CPUs only (taskset -c LIST), e.g. 0 for one core; "
                             "the report is printed, not written")
    args = parser.parse_args()
    global PERF_DIR, PIN
    PERF_DIR = args.perf
    PIN = ["taskset", "-c", args.cpus] if args.cpus else []
    work = tempfile.mkdtemp(prefix="binlog-kinesis-bench-")
    if args.cpus:
        # Pinned runs are for comparison: printed, never written over the report.
        args.report = os.path.join(tempfile.gettempdir(), f"benchmarks-cpus-{args.cpus}.md")
        print(f"pinned to CPUs {args.cpus}: the report goes to {args.report}", flush=True)
    if args.only == "compressed":
        write_section(args.report, compressed_section(compressed_bench(work)))
        shutil.rmtree(work, ignore_errors=True)
        return
    world = World(work)
    try:
        world_version = world.query("SELECT VERSION()")[0][0]
        if args.only is None:
            rows = []
            comparison = throughput(world, work, rows)
            quota_results = quota(world, work)
            latency_result = latency(world, work)
            cost_results = cost(world, work)
            report(rows, quota_results, latency_result, comparison, cost_results, args.report)
            write_section(args.report, cost_section(cost_results))
            write_section(args.report, compressed_section(compressed_bench(work)))
        if args.only == "quota":
            write_section(args.report, quota_section(quota(world, work)))
        if args.only == "cost":
            write_section(args.report, cost_section(cost(world, work)))
        if args.only in (None, "columns"):
            write_section(args.report, columns_section(columns_bench(world, work)))
        if args.only in (None, "snapshot"):
            write_section(args.report, snapshot_section(snapshot_bench(world, work)))
    finally:
        world.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
