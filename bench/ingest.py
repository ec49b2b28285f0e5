"""Ingest benchmark (`make bench`): vpcwatch against flowlogs-reader and bare GETs.

1,000,000 default-format records in 200 gzip objects on a local S3 emulator (moto, in its own
process so that it does not share the GIL with the reader under test). Measured:
- bare aiobotocore GETs of every object, 8 at a time (the I/O ceiling);
- `vpcwatch collect --once` into a fresh store (its own process; the poll's own time and the
  process's wall time, peak RSS);
- flowlogs-reader's S3 reader over the same objects;
- `scan` of one local 1,000,000-record .log.gz;
- the rule work of a 10-record commit (flows, CloudTrail events) with the default ruleset.
Results are appended to bench/RESULTS.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from results import publish

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUCKET = "bench-flowlogs"
ACCOUNT = "123456789012"
HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets "
          "bytes start end action log-status")
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


def records_text(n: int, seed: int, start: int) -> bytes:
    """``n`` records of a two-tier estate over five minutes: internet clients and a web tier
    (requests to 443 and their replies to ephemeral ports), web to database, and the
    internet's background of refused probes. Every object draws from the same hosts."""
    estate = random.Random(2026)
    clients = [f"{estate.choice((3, 18, 34, 52, 54))}.{estate.randrange(256)}."
               f"{estate.randrange(256)}.{estate.randrange(1, 255)}" for _ in range(5000)]
    web = [(f"eni-{estate.getrandbits(68):017x}", f"10.0.1.{h}") for h in range(1, 21)]
    db = [(f"eni-{estate.getrandbits(68):017x}", f"10.0.2.{h}") for h in range(1, 6)]
    rng = random.Random(seed)
    lines = [HEADER]
    for i in range(n):
        t = start + i % 300
        kind = i % 10
        eni, server = web[i % 20]
        client = clients[rng.randrange(5000)]
        ephemeral = rng.randrange(32768, 61000)
        if kind < 4:  # a request
            flow = (eni, client, server, ephemeral, 443, rng.randrange(300, 9000), "ACCEPT")
        elif kind < 7:  # its reply
            flow = (eni, server, client, 443, ephemeral, rng.randrange(900, 90000), "ACCEPT")
        elif kind < 9:  # web to database
            db_eni, db_address = db[i % 5]
            flow = (db_eni, server, db_address, ephemeral, 5432, rng.randrange(500, 40000),
                    "ACCEPT")
        else:  # a refused probe from the internet
            flow = (eni, f"46.{rng.randrange(256)}.{rng.randrange(256)}.9", server,
                    rng.randrange(1024, 65535), rng.choice((22, 23, 445, 3389)), 40, "REJECT")
        eni, src, dst, sport, dport, nbytes, action = flow
        lines.append(f"2 {ACCOUNT} {eni} {src} {dst} {sport} {dport} 6 {nbytes // 700 + 1} "
                     f"{nbytes} {t} {t + 60} {action} OK")
    return ("\n".join(lines) + "\n").encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # a benchmark may poll for readiness
        try:
            urllib.request.urlopen(url, timeout=1)
            return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the S3 emulator did not start")


def upload(url: str, objects: int, per_object: int, day: datetime) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    base = int(day.timestamp()) - 3600

    def put(n: int) -> str:
        when = day - timedelta(minutes=5 * n)
        name = (f"{ACCOUNT}_vpcflowlogs_us-east-1_fl-0123456789abcdef0_{when:%Y%m%dT%H%M}Z_"
                f"{n:08x}.log.gz")
        key = f"AWSLogs/{ACCOUNT}/vpcflowlogs/us-east-1/{day:%Y/%m/%d}/{name}"
        body = gzip.compress(records_text(per_object, n, base), compresslevel=6, mtime=0)
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
        return key

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(put, range(objects)))


async def bare_gets(url: str, keys: list[str], emulator: int, concurrency: int = 8
                    ) -> tuple[float, float, float]:
    """Seconds of the GETs of ``keys``, 8 at a time, and the CPU seconds they took here and
    in the emulator (process ``emulator``), the client's set-up left out."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    config = AioConfig(max_pool_connections=concurrency + 4, s3={"addressing_style": "path"})
    async with AioSession().create_client("s3", endpoint_url=url, region_name="us-east-1",
                                          config=config) as client:
        limit = asyncio.Semaphore(concurrency)

        async def get(key: str) -> int:
            async with limit:
                response = await client.get_object(Bucket=BUCKET, Key=key)
                async with response["Body"] as stream:
                    return len(await stream.read())

        started, cpu, emulator_cpu = time.perf_counter(), time.process_time(), cpu_seconds(
            emulator)
        await asyncio.gather(*(get(key) for key in keys))
        return (time.perf_counter() - started, time.process_time() - cpu,
                cpu_seconds(emulator) - emulator_cpu)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# a collect run: poll seconds, process seconds, its JSON summary, peak RSS (MB), its CPU
# seconds, the emulator's CPU seconds meanwhile
Run = tuple[float, float, dict, int, float, float]


def vpcwatch_collect(url: str, scratch: Path, run: str, emulator: int, rules: bool) -> Run:
    state = scratch / f"state-{run}"
    config = scratch / f"bench-{run}.toml"
    config.write_text(f'[general]\nstate_dir = "{state}"\n'
                      f'default_rules = {"true" if rules else "false"}\n'
                      f'[[bucket]]\ntype = "vpcflow"\nname = "{BUCKET}"\nendpoint_url = "{url}"\n')
    started = time.perf_counter()
    emulator_before = cpu_seconds(emulator)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen([sys.executable, "-m", "tui.cli", "collect", "--config",
                                    str(config), "--once", "--json"],
                                   stdout=out, stderr=err, env=ENV, cwd=ROOT)
        # (wait4: this process's own CPU and peak RSS, not the most any child reached)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"collect exited {process.returncode}: {err.read().decode()}")
        summary = json.loads(out.read().decode().strip().splitlines()[-1])
    cpu, emulator_cpu = usage.ru_utime + usage.ru_stime, cpu_seconds(emulator) - emulator_before
    return summary["seconds"], wall, summary, usage.ru_maxrss // 1024, cpu, emulator_cpu


def flowlogs_reader_run(url: str) -> tuple[float, int]:
    import boto3
    from flowlogs_reader import S3FlowLogsReader

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    now = datetime.now(UTC).replace(tzinfo=None)
    reader = S3FlowLogsReader(BUCKET, boto_client=client, start_time=now - timedelta(days=2),
                              end_time=now + timedelta(days=1), thread_count=8)
    started = time.perf_counter()
    count = sum(1 for _ in reader)
    return time.perf_counter() - started, count


def local_scan(scratch: Path, records: int, runs: int) -> list[tuple[float, float]]:
    """Seconds of each ``scan`` of one file into a new store (opening the store included),
    and the scan's own CPU seconds, in this process: the first pays its first-use costs
    (DuckDB's catalogue, the allocator's first pages), as a ``vpcwatch scan`` process does."""
    from core.scan import scan
    from core.store import open_store

    path = scratch / "one-million.log.gz"
    path.write_bytes(gzip.compress(records_text(records, 99, 1_764_000_000), mtime=0))
    seconds = []
    for n in range(runs):
        started = time.perf_counter()
        with open_store(scratch / f"scan-state-{n}") as store:
            cpu = time.process_time()  # (the scan's own: not opening or closing the store)
            summary = scan([path], store, 2**31)
            cpu = time.process_time() - cpu
        seconds.append((time.perf_counter() - started, cpu))
        assert summary.records == records, summary
    return seconds


def small_commit_rule_seconds(scratch: Path) -> dict[str, float]:
    """The rule work of a commit of 10 records, with the default ruleset, on a store that
    already holds 200,000 flows of the same hour (so windows span commits): the time the
    store spends evaluating the rules and, after the commit, adding the new records to the
    windows the rules hold; median of 7 commits, flows and CloudTrail events."""
    import core.store.database as database
    from core.rules import RuleEngine, load_engine
    from core.scan import scan
    from core.store import open_store
    from tests import flowgen

    spent: list[float] = []
    evaluate = database.detections.evaluate
    committed = RuleEngine.committed

    def timed(*args: object) -> object:
        started = time.perf_counter()
        try:
            return evaluate(*args)  # type: ignore[arg-type]
        finally:
            spent.append(time.perf_counter() - started)

    def timed_committed(engine: RuleEngine, con: object) -> None:
        started = time.perf_counter()
        try:
            committed(engine, con)  # type: ignore[arg-type]
        finally:
            spent[-1] += time.perf_counter() - started

    base = 1_764_000_000
    (scratch / "small").mkdir()
    history = scratch / "small" / "history.log.gz"
    history.write_bytes(gzip.compress(records_text(200_000, 7, base), mtime=0))
    found: dict[str, float] = {}
    database.detections.evaluate = timed  # type: ignore[assignment]
    RuleEngine.committed = timed_committed  # type: ignore[method-assign]
    try:
        with open_store(scratch / "small-state", engine=load_engine([])) as store:
            scan([history], store, 2**31)
            for kind in ("flows", "events"):
                spent.clear()
                for n in range(7):
                    if kind == "flows":
                        path = scratch / "small" / f"ten-{n}.log"
                        body = records_text(10, 100 + n, base + 60 * n)
                    else:
                        path = scratch / "small" / f"ten-{n}.json.gz"
                        body = flowgen.trail_object([flowgen.trail_event(
                            "AuthorizeSecurityGroupIngress") for _ in range(10)])
                    path.write_bytes(body)
                    scan([path], store, 2**31)
                found[kind] = statistics.median(spent)
    finally:
        database.detections.evaluate = evaluate  # type: ignore[assignment]
        RuleEngine.committed = committed  # type: ignore[method-assign]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.update(ENV)
    per_object = args.records // args.objects
    total = per_object * args.objects
    emulator, url = start_emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="vpcwatch-bench-") as tmp:
            scratch = Path(tmp)
            print(f"uploading {total:,} records in {args.objects} objects to {url} ...")
            day = datetime.now(UTC).replace(second=0, microsecond=0)
            keys = upload(url, args.objects, per_object, day)
            gets = [asyncio.run(bare_gets(url, keys, emulator.pid)) for _ in range(args.runs)]
            bare, bare_cpu, bare_emulator_cpu = (statistics.median(g[i] for g in gets)
                                                 for i in range(3))
            runs: list[Run] = []
            ruled: list[Run] = []
            for n in range(args.runs):  # side by side (a host's drift hits both alike), in
                pair = [(runs, False), (ruled, True)]  # turns (so does going first)
                for into, rules in pair if n % 2 == 0 else pair[::-1]:
                    into.append(vpcwatch_collect(url, scratch, f"{rules}-{n}", emulator.pid,
                                                 rules))
            for run in runs + ruled:
                assert run[2]["records"] == total, run[2]
            with_rules = statistics.median(r[0] for r in ruled)
            alerts = statistics.median(r[2]["alerts"] for r in ruled)
            poll = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            rss = max(r[3] for r in runs)
            rules_rss = max(r[3] for r in ruled)
            cpu = statistics.median(r[4] for r in runs)
            emulator_cpu = statistics.median(r[5] for r in runs)
            peer_seconds, peer_count = flowlogs_reader_run(url)
            assert peer_count == total, peer_count
            scans = local_scan(scratch, args.records, args.runs)
            small = small_commit_rule_seconds(scratch)
    finally:
        emulator.terminate()
        emulator.wait()
    figures = {
        "records": total,
        "objects": args.objects,
        "bare_get_seconds": bare,
        "bare_get_objects_per_s": args.objects / bare,
        "bare_get_cpu_seconds": bare_cpu,
        "bare_get_emulator_cpu_seconds": bare_emulator_cpu,
        "vpcwatch_poll_seconds": poll,
        "vpcwatch_records_per_s": total / poll,
        "vpcwatch_objects_per_s": args.objects / poll,
        "vpcwatch_process_seconds": wall,
        "rules_poll_seconds": with_rules,
        "rules_records_per_s": total / with_rules,
        # the median of each round's ratio (the two runs of a round are side by side)
        "rules_ratio": statistics.median(p[0] / r[0] for p, r in zip(runs, ruled, strict=True)),
        "rules_process_ratio": statistics.median(
            p[1] / r[1] for p, r in zip(runs, ruled, strict=True)),
        "rules_alerts": alerts,
        "vpcwatch_process_records_per_s": total / wall,
        "vpcwatch_peak_rss_mb": rss,
        "rules_peak_rss_mb": rules_rss,
        "vpcwatch_cpu_seconds": cpu,
        "emulator_cpu_seconds": emulator_cpu,
        "flowlogs_reader_seconds": peer_seconds,
        "flowlogs_reader_records_per_s": total / peer_seconds,
        "ratio_vs_flowlogs_reader": peer_seconds / poll,
        "ratio_of_bare_get_rate": bare / poll,
        "scan_seconds": statistics.median(s for s, _ in scans),
        "scan_cpu_seconds": statistics.median(c for _, c in scans),
        "scan_first_seconds": scans[0][0],
        "scan_records_per_s": args.records / statistics.median(s for s, _ in scans),
        "small_commit_flow_rules_seconds": small["flows"],
        "small_commit_event_rules_seconds": small["events"],
    }
    report = render(figures, args)
    publish(report, write=not args.no_write)
    return 0


def _beside_gets(f: dict, cpu: float) -> float:
    """CPU seconds ``cpu`` less what the bare GETs took (the request path, both sides)."""
    return cpu - f["bare_get_cpu_seconds"] - f["bare_get_emulator_cpu_seconds"]


def render(f: dict, args: argparse.Namespace) -> str:
    def verdict(value: float, target: float, label: str) -> str:
        return f"{label}: {'met' if value >= target else 'MISSED'}"

    rows = [
        ("vpcwatch `collect --once` (rules off), poll time",
         f"{f['vpcwatch_poll_seconds']:.2f} s = **{f['vpcwatch_records_per_s']:,.0f} records/s**",
         verdict(f["vpcwatch_records_per_s"], 1e6, "≥ 1,000,000/s")),
        ("the same with the default ruleset",
         f"{f['rules_poll_seconds']:.2f} s = **{f['rules_records_per_s']:,.0f} records/s**, "
         f"{f['rules_alerts']:,.0f} alerts", ""),
        ("rate with rules ÷ rate without", f"**{100 * f['rules_ratio']:.0f}%**",
         verdict(f["rules_ratio"], 0.8, "≥ 80%")),
        ("the same, whole processes (start-up, imports, the rules' compile check included)",
         f"**{100 * f['rules_process_ratio']:.0f}%**",
         verdict(f["rules_process_ratio"], 0.8, "≥ 80%")),
        ("rule work of a 10-record commit (default ruleset, 200,000 flows stored): flows",
         f"**{1000 * f['small_commit_flow_rules_seconds']:.0f} ms**",
         "≤ 50 ms: " + ("met" if f["small_commit_flow_rules_seconds"] <= 0.05 else "MISSED")),
        ("the same, CloudTrail events",
         f"**{1000 * f['small_commit_event_rules_seconds']:.0f} ms**",
         "≤ 50 ms: " + ("met" if f["small_commit_event_rules_seconds"] <= 0.05 else "MISSED")),
        ("the same without rules, whole process (start-up and imports included)",
         f"{f['vpcwatch_process_seconds']:.2f} s = "
         f"{f['vpcwatch_process_records_per_s']:,.0f} records/s", ""),
        ("flowlogs-reader S3 reader (8 threads)",
         f"{f['flowlogs_reader_seconds']:.2f} s = "
         f"{f['flowlogs_reader_records_per_s']:,.0f} records/s", ""),
        ("vpcwatch ÷ flowlogs-reader", f"**{f['ratio_vs_flowlogs_reader']:.1f}x**",
         verdict(f["ratio_vs_flowlogs_reader"], 10, "≥ 10x")),
        ("bare aiobotocore GETs, 8 at a time",
         f"{f['bare_get_seconds']:.2f} s = {f['bare_get_objects_per_s']:,.0f} objects/s", ""),
        ("CPU time of the bare GETs (the client's set-up left out): here / S3 emulator",
         f"{f['bare_get_cpu_seconds']:.2f} s / {f['bare_get_emulator_cpu_seconds']:.2f} s "
         f"(2 cores give {2 * f['bare_get_seconds']:.2f} s in that time)", ""),
        ("CPU the 70% target leaves for all but the GETs (2 cores for the bare GETs' time "
         "÷ 0.7, less their CPU here and in the emulator) / what the collect uses for it (its "
         "whole process, start-up included, and the emulator's, less the same) / what a local "
         "`scan` of as many records uses (decompressing, parsing, storing; no S3; opening and "
         "closing the store left out)",
         f"{_beside_gets(f, 2 * f['bare_get_seconds'] / 0.7):.2f} s / "
         f"{_beside_gets(f, f['vpcwatch_cpu_seconds'] + f['emulator_cpu_seconds']):.2f} s / "
         f"{f['scan_cpu_seconds']:.2f} s", ""),
        ("vpcwatch object rate ÷ bare-GET rate",
         f"**{100 * f['ratio_of_bare_get_rate']:.0f}%** "
         f"({f['vpcwatch_objects_per_s']:,.0f} objects/s)",
         verdict(f["ratio_of_bare_get_rate"], 0.7, "≥ 70%")),
        ("vpcwatch peak RSS, rules off / on",
         f"{f['vpcwatch_peak_rss_mb']:,} / {f['rules_peak_rss_mb']:,} MB", ""),
        ("CPU time during the collect: vpcwatch process / S3 emulator",
         f"{f['vpcwatch_cpu_seconds']:.2f} s / {f['emulator_cpu_seconds']:.2f} s "
         f"(2 cores give {2 * f['vpcwatch_process_seconds']:.2f} s in that time)", ""),
        (f"local `scan` of one {f['records']:,}-record .log.gz into a new store, median of "
         f"{args.runs} in one process (the later ones warm)",
         f"{f['scan_seconds']:.2f} s = **{f['scan_records_per_s']:,.0f} records/s**",
         verdict(f["scan_records_per_s"], 2e6, "≥ 2,000,000/s")),
        ("the same, the first scan of the process",
         f"{f['scan_first_seconds']:.2f} s = "
         f"{f['records'] / f['scan_first_seconds']:,.0f} records/s", ""),
    ]
    command = "make bench-ingest" if not sys.argv[1:] else "python bench/ingest.py " + " ".join(
        sys.argv[1:])
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return (
        f"\n## Ingest, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"Command: `{command}` (median of {args.runs} runs; a round runs the collect without "
        "and with rules, in turns, and a ratio of the two is the median of the rounds' ratios) on "
        f"{os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}: {f['records']:,} v2 records in {f['objects']} gzip "
        "objects on a local moto server in its own process.\n\n"
        "| measure | figure | target |\n|---|---|---|\n" + table + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
