"""Attached viewers (`make bench-attach`): what they cost a running collector, and how soon
a commit reaches their screens. Results are appended to bench/RESULTS.md.

A collector runs as a service (its own process) on a local S3 emulator (moto, its own
process). Each round, the collector is paused (SIGSTOP) right after a poll, 1,000,000
default-format records in 200 objects and a CloudTrail object of 3 events are put, and it
is resumed: its next poll reads them all, and its own summary gives the poll's rate. Three
scenarios, side by side in each of 15 rounds: no viewer; three attached apps
(bench/viewer.py, the real app headless) idle; the same with one of them changing its
filter continuously. Idle viewers report, for each new alert, the time from the commit's
publication to their screen. A round's objects are deleted once read: every poll lists the
whole bucket (one day), and with them the rate fell by about 7% a round of three, which
ranked the scenarios in their order. Thirty rounds (about 28 minutes), not fewer: a round's
ratio varies by ±10% and more (72-132% in the 30 rounds of 2026-12-06 10:56), medians of 5
rounds of the same code differed by 5-8 points (bench/RESULTS.md, 2026-12-05 13:19 and 13:33)
and those of 15 rounds by up to 8 (89-97%), more than the distance to the 95% target.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from ingest import ACCOUNT, BUCKET, ENV, records_text, start_emulator  # noqa: E402
from results import publish  # noqa: E402

SCENARIOS = (("no viewer", 0, False), ("3 idle apps", 3, False),
             ("3 apps, one changing its filter", 3, True))


class Lines:
    """A child's stream, line by line, waited on with a timeout."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.put(line)

    def drain(self) -> None:
        """Forget the lines read so far (a wait then sees only what comes next)."""
        while not self.lines.empty():
            self.lines.get_nowait()

    def wait_for(self, text: str, timeout: float = 600) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if text in line:
                return line


def put_round(client, round_number: int, objects: int, per_object: int) -> None:  # type: ignore[no-untyped-def]
    """One round's objects. Each round's records are two hours after the last one's, so the
    rules' windows of one round never hold another's (their cost stays the same)."""
    day = datetime.now(UTC)
    base = int(day.timestamp()) - 86400 + 7200 * round_number

    def put(n: int) -> None:
        name = (f"{ACCOUNT}_vpcflowlogs_us-east-1_fl-0123456789abcdef0_{day:%Y%m%dT%H%M}Z_"
                f"r{round_number:03d}{n:05d}.log.gz")
        key = f"AWSLogs/{ACCOUNT}/vpcflowlogs/us-east-1/{day:%Y/%m/%d}/{name}"
        body = gzip.compress(records_text(per_object, 1000 * round_number + n, base),
                             compresslevel=1, mtime=0)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, range(objects)))
    events = [{"eventVersion": "1.09", "eventTime": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
               "eventSource": "ec2.amazonaws.com", "eventName": "CreateVpc",
               "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7",
               "errorCode": "Client.UnauthorizedOperation",
               "userIdentity": {"arn": f"arn:aws:iam::{ACCOUNT}:user/bench"},
               "eventID": f"bench-{round_number}-{n}"} for n in range(3)]
    client.put_object(
        Bucket=BUCKET, Key=f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{day:%Y/%m/%d}/"
        f"{ACCOUNT}_CloudTrail_us-east-1_{day:%Y%m%dT%H%M}Z_r{round_number:03d}.json.gz",
        Body=gzip.compress(json.dumps({"Records": events}).encode(), mtime=0))


def empty_bucket(client) -> None:  # type: ignore[no-untyped-def]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    os.environ.update(ENV)
    import boto3

    emulator, url = start_emulator()
    rates: dict[str, list[float]] = {name: [] for name, _, _ in SCENARIOS}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in SCENARIOS}
    latencies: list[float] = []
    arrived: queue.Queue[float] = queue.Queue()  # latencies as the viewers report them
    try:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="vpcwatch-attach-") as tmp:
            state = Path(tmp) / "state"
            config = Path(tmp) / "config.toml"
            config.write_text(
                f'[general]\nstate_dir = "{state}"\ninterval = "1s"\nlookback = "24h"\n'
                f'[[bucket]]\ntype = "vpcflow"\nname = "{BUCKET}"\nendpoint_url = "{url}"\n'
                f'[[bucket]]\ntype = "cloudtrail"\nname = "{BUCKET}"\nendpoint_url = "{url}"\n')
            config.chmod(0o600)
            collector = subprocess.Popen(
                [sys.executable, "-m", "tui.cli", "-v", "collect", "--config", str(config)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
            log = Lines(collector.stderr)
            log.wait_for("poll finished")
            round_number = 0
            try:  # the scenarios side by side, round after round (the machine drifts)
                for _ in range(args.rounds):
                    for name, viewers, churn in SCENARIOS:
                        apps = start_viewers(state, viewers, churn, arrived)
                        round_number += 1
                        # stopped right after a poll, in its pause: a poll that was under
                        # way when stopped would count the stop in its time (the lines of
                        # the polls made while the viewers started are old news)
                        log.drain()
                        log.wait_for("poll finished")
                        collector.send_signal(signal.SIGSTOP)
                        put_round(client, round_number, args.objects,
                                  args.records // args.objects)
                        before = cpu_seconds([collector]), cpu_seconds(apps)
                        collector.send_signal(signal.SIGCONT)
                        while True:  # the poll that read the round's records
                            summary = json.loads(log.wait_for("poll finished").split(
                                "poll finished: ", 1)[1])
                            if summary["records"]:
                                break
                        cpu[name].append((cpu_seconds([collector]) - before[0],
                                          cpu_seconds(apps) - before[1]))
                        rates[name].append(summary["records"] / summary["seconds"])
                        empty_bucket(client)
                        print(f"{name}: {rates[name][-1]:,.0f} records/s", flush=True)
                        # each idle app shows the round's new alerts (a viewer that shows
                        # them after the poll ended is counted too, however late)
                        for _ in range(viewers - (1 if churn else 0)):
                            latencies.append(arrived.get(timeout=120))
                        stop_viewers(apps)
                        while not arrived.empty():  # (a second rise of one app's count)
                            arrived.get_nowait()
            finally:
                collector.send_signal(signal.SIGTERM)
                collector.wait(timeout=60)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    report = render(rates, cpu, latencies, args)
    publish(report, write=not args.no_write)
    return 0


def start_viewers(state: Path, count: int, churn: bool, arrived: queue.Queue[float]
                  ) -> list[subprocess.Popen[str]]:
    apps = []
    for n in range(count):
        command = [sys.executable, str(HERE / "viewer.py"), "--state-dir", str(state)]
        if churn and n == 0:
            command.append("--churn")
        app = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, cwd=ROOT)
        lines = Lines(app.stdout)
        lines.wait_for("ready", timeout=300)
        threading.Thread(target=_collect_latencies, args=(lines, arrived),
                         daemon=True).start()
        apps.append(app)
    return apps


def _collect_latencies(lines: Lines, arrived: queue.Queue[float]) -> None:
    while True:
        line = lines.lines.get()
        if line.startswith("{"):
            arrived.put(json.loads(line)["latency"])


def cpu_seconds(processes: list[subprocess.Popen[str]]) -> float:
    """The CPU time (user and system, every thread) these processes have used so far."""
    from core.priority import process_cpu_seconds
    return sum(process_cpu_seconds(process.pid) or 0.0 for process in processes)


def stop_viewers(apps: list[subprocess.Popen[str]]) -> None:
    for app in apps:
        app.send_signal(signal.SIGTERM)
    for app in apps:
        app.wait(timeout=60)


def render(rates: dict[str, list[float]], cpu: dict[str, list[tuple[float, float]]],
           latencies: list[float], args: argparse.Namespace) -> str:
    lines = [f"## Attached viewers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Command: `make bench-attach` (`python bench/attach.py --objects {args.objects} "
             f"--records {args.records} --rounds {args.rounds}`) on {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}: a collector service reading "
             f"{args.records:,} records a round, median of {args.rounds} rounds.", "",
             "| measure | figure | target |", "|---|---|---|"]
    for name, values in rates.items():
        # each round's rate beside the same round's without viewers (rates drift by ±10%
        # from round to round), then the median of those ratios
        ratio = statistics.median(v / b for v, b in zip(values, rates["no viewer"], strict=True))
        verdict = "" if name == "no viewer" else f"≥ 95%: {'met' if ratio >= 0.95 else 'MISSED'}"
        lines.append(f"| collect rate, {name} | {statistics.median(values):,.0f} records/s "
                     f"(**{100 * ratio:.1f}%** of the same round's without viewers) "
                     f"| {verdict} |")
    for name, values in cpu.items():
        collector = statistics.median(c for c, _ in values)
        viewers = statistics.median(v for _, v in values)
        lines.append(f"| CPU during the round's poll, {name}: collector / viewers | "
                     f"{collector:.2f} s / {viewers:.2f} s | |")
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        lines.append(f"| commit to an idle attached app's screen, p95 of {len(ordered)} | "
                     f"**{p95 * 1000:.0f} ms** (median {statistics.median(ordered) * 1000:.0f}"
                     f" ms) | ≤ 1 s: {'met' if p95 <= 1.0 else 'MISSED'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
