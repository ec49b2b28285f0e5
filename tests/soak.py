"""The soak: many objects in two buckets, read through a faulty network by a collector that
is killed again and again, with late objects arriving meanwhile; then one clean poll. The
store must then hold exactly what one uninterrupted clean run stores: every record, event
and alert, none twice, none missing.

Used by ``tests/test_soak.py`` (a reduced run in ``make test``) and ``bench/soak.py``
(``make soak``: the full run, results in bench/RESULTS.md).

The buckets: ``org`` holds flow logs and CloudTrail behind an organization folder, read by
two ``[[bucket]]`` entries (as config.example.toml has); ``hive`` holds flow logs in the
Hive-compatible layout, some as Parquet. Objects are dated today, four days ago and six
days ago (a backfill from ``only_logs_after`` reads the old days); one in fifty holds only
flows two months old (pruned by retention at the end of each poll); a few are corrupt
(quarantined, in both runs). New objects keep arriving: some before each run of the
collector, so that every run has something to commit when it is killed. Late objects
arrive too: in today's folder under keys that sort before those already read, and four
days back, past the 48-hour lookback (found by the relist, which the harness makes due by
moving the entry's relist mark).
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from tests import flowgen, scenarios
from tests.conftest import LineReader, query, write_config
from tests.faultproxy import FaultProxy, Faults

ORG, ACCOUNTS, REGIONS = "o-abcdefghij", ("111111111111", "222222222222"), ("us-east-1",)
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAYS = (NOW, NOW - timedelta(days=4), NOW - timedelta(days=6))
WEATHER = Faults(get_rates={"slowdown": 0.05, "reset": 0.01, "stall": 0.002},
                 list_rates={"slowdown": 0.05}, stall_seconds=3, seed=11)
KILL_POINTS = ("segment-written", "compacting", "pruning")
SAMPLE_SECONDS = 0.5  # how often a running collector's peak memory is read


@dataclass
class SoakReport:
    objects: int = 0
    records: int = 0
    events: int = 0
    alerts: int = 0
    kills: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    seconds: float = 0.0
    mismatches: list[str] = field(default_factory=list)  # empty: the soak passed


class Buckets:
    """The two buckets, filled with a plain boto3 client."""

    def __init__(self, url: str, seed: int):
        self.client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        suffix = f"{seed}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        self.org, self.hive = f"soak-org-{suffix}", f"soak-hive-{suffix}"
        for name in (self.org, self.hive):
            self.client.create_bucket(Bucket=name)
        self.rng = random.Random(seed)
        self.put_count = 0

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body)
        self.put_count += 1

    def fill(self, objects: int) -> None:
        """``objects`` objects: 5% CloudTrail, the rest flow logs over both buckets."""
        detection_lines = [line for s in scenarios.detections() for line in s.lines]
        for n in range(objects):
            day = DAYS[n % len(DAYS)]
            account = ACCOUNTS[n % len(ACCOUNTS)]
            if n % 20 == 0:
                events = [flowgen.trail_event(self.rng.choice(
                    ["CreateVpc", "AuthorizeSecurityGroupIngress", "DeleteFlowLogs"]),
                    account=account, when=day) for _ in range(3)]
                self.put(self.org, flowgen.trail_key("", account, REGIONS[0], day, n, org=ORG),
                         flowgen.trail_object(events))
                continue
            self.put_flows(n, day, account, detection_lines[n % 97::97] if n % 7 == 0 else [])

    def put_flows(self, n: int, day: datetime, account: str, extra: list[str],
                  late: bool = False) -> None:
        ancient = n % 50 == 1
        start = int((NOW - timedelta(days=60)).timestamp()) if ancient else flowgen.BASE_TIME
        obj = flowgen.flow_object(flowgen.V2, 20, seed=n, account=account, start=start)
        obj.lines += extra
        in_hive = n % 3 == 0
        key = flowgen.flow_key("", account, REGIONS[0], day, n, hive=in_hive,
                               ext="log.parquet" if in_hive and n % 9 == 0 else "log.gz")
        if late:  # sorts before every key of its folder already read
            folder, _, name = key.rpartition("/")
            key = f"{folder}/0late-{name}"
        if not in_hive:
            key = key.replace("AWSLogs/", f"AWSLogs/{ORG}/", 1)
        if n % 401 == 5:
            body = b"\x1f\x8b" + b"corrupt" * 10
        elif key.endswith(".parquet"):
            body = flowgen.parquet_bytes(obj)
        else:
            body = obj.gz()
        self.put(self.hive if in_hive else self.org, key, body)

    def put_late(self, first: int, count: int, day: datetime) -> None:
        for n in range(first, first + count):
            self.put_flows(n, day, ACCOUNTS[n % len(ACCOUNTS)], [], late=True)


def config_for(directory: Path, buckets: Buckets, endpoint: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    after = (NOW - timedelta(days=7)).date().isoformat()
    entries: list[dict[str, Any]] = [
        {"type": "vpcflow", "name": buckets.org, "endpoint_url": endpoint,
         "only_logs_after": after},
        {"type": "cloudtrail", "name": buckets.org, "endpoint_url": endpoint,
         "only_logs_after": after},
        {"type": "vpcflow", "name": buckets.hive, "endpoint_url": endpoint,
         "only_logs_after": after},
    ]
    return write_config(directory, entries, default_rules=True, interval="2s",
                        lookback="48h", retention="30d", read_timeout="1s",
                        connect_timeout="1s", commit_interval="1s")


class Runner:
    """Collector processes, and their peak memory: VmHWM (the high-water mark of the
    process's own memory) read while each runs. (Not wait4's ru_maxrss: Linux carries the
    parent's resident size over a fork and exec into it, so a child of a large test process
    would report the test's memory.)"""

    def __init__(self, report: SoakReport):
        self.report = report

    def start(self, config: Path, kill_at: str | None = None, once: bool = False
              ) -> tuple[subprocess.Popen[str], LineReader]:
        env = os.environ.copy()
        env.pop("VPCWATCH_KILL_AT", None)
        if kill_at:
            env["VPCWATCH_KILL_AT"] = kill_at
        command = [sys.executable, "-m", "tui.cli", "-v", "collect", "--config", str(config)]
        command += ["--once", "--json"] if once else []
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        assert process.stderr is not None
        return process, LineReader(process.stderr)

    def wait(self, process: subprocess.Popen[str], timeout: float) -> int:
        """The exit code, once the process's pidfd says it has ended; its memory's
        high-water mark is read every SAMPLE_SECONDS meanwhile."""
        deadline = time.monotonic() + timeout
        pidfd = os.pidfd_open(process.pid)
        try:
            while True:
                self._sample(process.pid)
                ready, _, _ = select.select([pidfd], [], [], SAMPLE_SECONDS)
                if ready:
                    break
                if time.monotonic() > deadline:
                    process.kill()
                    raise AssertionError(f"collector still running after {timeout} s")
        finally:
            os.close(pidfd)
        return process.wait()

    def _sample(self, pid: int) -> None:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                megabytes = int(line.split()[1]) / 1024
                self.report.peak_rss_mb = max(self.report.peak_rss_mb, megabytes)


def run_soak(url: str, work: Path, objects: int, random_kills: int,
             kill_points: tuple[str, ...], seed: int = 7,
             say: Callable[[str], None] = lambda _: None) -> SoakReport:
    started = time.monotonic()
    report = SoakReport()
    rng = random.Random(seed)
    buckets = Buckets(url, seed)
    buckets.fill(objects)
    say(f"{buckets.put_count} objects put")
    proxy = FaultProxy(url, WEATHER).start()
    runner = Runner(report)
    try:
        faulty = config_for(work / "faulty", buckets, proxy.url)
        schedule = [("random", None)] * random_kills + [("point", p) for p in kill_points]
        rng.shuffle(schedule)
        arriving = objects + 10  # (the numbers of objects put while the collector runs)
        for number, (kind, point) in enumerate(schedule):
            # objects keep arriving: each run has new ones to commit when it is killed
            for n in range(arriving, arriving + max(20, objects // 50)):
                buckets.put_flows(n, NOW, ACCOUNTS[n % len(ACCOUNTS)], [])
            arriving += max(20, objects // 50)
            process, stderr = runner.start(faulty, kill_at=point)
            if kind == "random":  # after its first commit, and 0-3 more lines of its log
                stderr.wait_for("committed", timeout=300)
                for _ in range(rng.randint(0, 3)):
                    stderr.wait_for("", timeout=300)
                process.send_signal(signal.SIGKILL)
            code = runner.wait(process, timeout=300)
            if code != -signal.SIGKILL:
                raise AssertionError(f"run {number} ({point or 'random'}) ended with {code}")
            report.kills.append(point or "random")
            say(f"kill {number + 1}/{len(schedule)}: {point or 'random moment'}")
            if number == 0:  # late, behind keys already read
                buckets.put_late(objects, 5, NOW)
        # the weather goes on for one whole poll (its backfill done, its marks saved)...
        process, _ = runner.start(faulty, once=True)
        runner.wait(process, timeout=600)
        # ...then objects arrive past the lookback, for the relist only, and one clean poll
        buckets.put_late(objects + 5, 5, NOW - timedelta(days=4))
        _make_relist_due(work / "faulty" / "state", buckets)
        clean_final = config_for(work / "faulty", buckets, url)
        process, _ = runner.start(clean_final, once=True)
        runner.wait(process, timeout=600)
        report.faults = dict(proxy.injected)
    finally:
        proxy.stop()
    calm = config_for(work / "calm", buckets, url)
    process, _ = runner.start(calm, once=True)
    runner.wait(process, timeout=600)
    report.objects = buckets.put_count
    compare(work / "faulty" / "state", work / "calm" / "state", report)
    report.seconds = time.monotonic() - started
    return report


def _make_relist_due(state: Path, buckets: Buckets) -> None:
    """As if the last relist were a day ago (the harness cannot wait a day)."""
    from core.store import open_store

    with open_store(state) as store:
        for label in (f"vpcflow:{buckets.org}", f"cloudtrail:{buckets.org}",
                      f"vpcflow:{buckets.hive}"):
            marks = store.listing_marks(label)
            if marks.relisted_at is not None:
                from dataclasses import replace

                store.set_listing_marks(label, replace(marks, relisted_at=1.0))


# What both stores must agree on. Flows older than retention may survive in one store and
# not the other (a segment is pruned whole, and batches differ), so figures are compared
# for the flows and alerts retention keeps for certain.
CHECKS = {
    "flows per object": "SELECT object_key, count(*), sum(bytes) FROM flows "
                        "WHERE start >= {kept} GROUP BY 1",
    "duplicate flows": "SELECT object_key, srcaddr, dstaddr, srcport, dstport, start, bytes, "
                       "count(*) FROM flows GROUP BY ALL HAVING count(*) > 1",
    "events": "SELECT event_id, event_name, object_key FROM cloudtrail",
    "alerts": "SELECT id, rule_id, count, bytes, first_seen, last_seen FROM alerts "
              "WHERE window_start >= {kept} + 86400",
    "ledger": "SELECT bucket, key, status, records FROM objects "
              "WHERE status NOT IN ('done', 'skipped') OR records > 0",
}


def compare(faulty: Path, calm: Path, report: SoakReport) -> None:
    kept = int((NOW - timedelta(days=29)).timestamp())
    for name, sql in CHECKS.items():
        text = sql.format(kept=kept)
        mine = sorted(query(faulty, text), key=repr)
        theirs = sorted(query(calm, text), key=repr)
        if mine != theirs:
            missing = len(set(theirs) - set(mine))
            extra = len(set(mine) - set(theirs))
            report.mismatches.append(f"{name}: {missing} missing, {extra} extra "
                                     f"({len(mine)} against {len(theirs)})")
    [(report.records,)] = query(faulty, "SELECT count(*) FROM flows")
    [(report.events,)] = query(faulty, "SELECT count(*) FROM cloudtrail")
    [(report.alerts,)] = query(faulty, "SELECT count(*) FROM alerts")
    pending = query(faulty, "SELECT count(*) FROM objects WHERE status = 'pending'")
    if pending != [(0,)]:
        report.mismatches.append(f"objects still pending: {pending[0][0]}")
