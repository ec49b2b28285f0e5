"""UI benchmark over a week of a large estate: bounded memory, first paint, scope changes.

A store of 100,000,000 flows over 7 days and 1,000,000 alerts is built directly as segments
(one commit an hour, as the collector would write them, with their traffic summary; no S3,
no rules), with an exfiltration burst on the fifth day. The app then runs headless at
160x48 in a child process (so that its peak RSS is its own) and reports: the first paint
(status bar, chart and feed on screen), the hot window's index built after it, the peak RSS
while browsing, the p95 of scope changes within the hot window and for ranges anywhere in
retention, and the explanation of the burst. Targets (issue 14): first paint <= 2 s, RSS
<= 1.5 GB, p95 <= 200 ms hot and <= 1 s any range.

    .venv/bin/python bench/week.py [--flows N] [--alerts N] [--state-dir DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from results import publish  # noqa: E402
from ui import ALERTS_SQL, p95  # noqa: E402

from core.config import INDEX_MEMORY  # noqa: E402
from core.layouts import Kind  # noqa: E402
from core.objects import ObjectRef, ObjectResult, Status  # noqa: E402
from core.store import open_store  # noqa: E402
from core.timeline import TimeRange  # noqa: E402

DAY = 86_400
HOURS = 7 * 24
FIRST = 1_764_000_000 // DAY * DAY
BURST = FIRST + 4 * DAY + 14 * 3600 + 600  # the fifth day, 14:10
EXFIL = ("10.0.9.9", "192.0.2.200")
TARGETS = {"first_paint": 2.0, "rss": 1.5 * 2**30, "hot": 0.2, "any": 1.0}


@functools.cache
def addresses() -> tuple[pa.Array, pa.Array]:
    internal = pa.array([f"10.{i // 250}.{i % 250 // 50}.{i % 50 + 10}" for i in range(2000)])
    external = pa.array([f"{52 + i % 4}.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
                         for i in range(200_000)])
    return internal, external


def hour_of_flows(hour: int, count: int, rng: np.random.Generator) -> pa.Table:
    """One hour of a large estate: 2,000 internal addresses (on 500 interfaces, 10 VPCs, 5
    accounts) talking to each other and to 200,000 internet addresses, requests and replies,
    with a daily shape in the volume per flow."""
    internal, external = addresses()
    local = rng.integers(0, 2000, count)
    remote_inside = rng.random(count) < 0.4
    remote = rng.integers(0, 200_000, count)
    peer_local = rng.integers(0, 2000, count)
    local_text = internal.take(pa.array(local))
    peer_text = pa.chunked_array([internal.take(pa.array(peer_local))]).combine_chunks()
    remote_text = external.take(pa.array(remote))
    other = pa.array(np.where(remote_inside, peer_text.to_numpy(zero_copy_only=False),
                              remote_text.to_numpy(zero_copy_only=False)), pa.string())
    reply = rng.random(count) < 0.5
    src = pa.array(np.where(reply, other.to_numpy(zero_copy_only=False),
                            local_text.to_numpy(zero_copy_only=False)), pa.string())
    dst = pa.array(np.where(reply, local_text.to_numpy(zero_copy_only=False),
                            other.to_numpy(zero_copy_only=False)), pa.string())
    service = rng.choice(np.array([443, 5432, 53, 22, 8080, 3306]), count,
                         p=[0.6, 0.15, 0.15, 0.02, 0.05, 0.03])
    ephemeral = rng.integers(32768, 61000, count)
    start = FIRST + hour * 3600 + rng.integers(0, 3600, count)
    daily = 0.3 + 0.7 * np.clip(np.sin(np.pi * ((start % DAY) / 3600 - 6) / 14), 0, None)
    nbytes = (rng.lognormal(8, 1.2, count) * daily).astype(np.int64) + 40
    table = pa.table({
        "version": pa.array(np.full(count, 2, np.int32)),
        "account_id": pa.array([f"11112222{3330 + i}" for i in range(5)]).take(
            pa.array(local % 5)),
        "interface_id": pa.array([f"eni-{i:017x}" for i in range(500)]).take(
            pa.array(local // 4)),
        "srcaddr": src, "dstaddr": dst,
        "srcport": pa.array(np.where(reply, service, ephemeral).astype(np.int32)),
        "dstport": pa.array(np.where(reply, ephemeral, service).astype(np.int32)),
        "protocol": pa.array(np.where(service == 53, 17, 6).astype(np.int32)),
        "packets": pa.array(nbytes // 1000 + 1), "bytes": pa.array(nbytes),
        "start": pa.array(start), "end": pa.array(start + 60),
        "action": pa.array(np.where(rng.random(count) < 0.05, "REJECT", "ACCEPT")),
        "log_status": pa.array(np.full(count, "OK")),
        "vpc_id": pa.array([f"vpc-{i:017x}" for i in range(10)]).take(pa.array(local // 200)),
    })
    if FIRST + hour * 3600 <= BURST < FIRST + (hour + 1) * 3600:
        burst = table.slice(0, 6).to_pylist()
        for i, row in enumerate(burst):
            row.update(srcaddr=EXFIL[0], dstaddr=EXFIL[1], srcport=51515, dstport=443,
                       bytes=900_000_000 + i, packets=700_000, start=BURST, end=BURST + 60,
                       action="ACCEPT")
        table = pa.concat_tables([table, pa.Table.from_pylist(burst, schema=table.schema)])
    return table


def build_store(state: Path, flows: int, alerts: int) -> None:
    rng = np.random.default_rng(14)
    per_hour = flows // HOURS
    with open_store(state) as store:
        for hour in range(HOURS):
            table = hour_of_flows(hour, per_hour, rng)
            ref = ObjectRef("bench", f"hour-{hour:03d}.log.gz", "etag", 1, Kind.TEXT)
            store.commit([ObjectResult(ref, Status.DONE, flows=table)])
            if hour % 24 == 23:
                print(f"  day {hour // 24 + 1} stored", flush=True)
        store.compact()
        store.con.execute(ALERTS_SQL, [alerts, FIRST, 7 * DAY])
        store.checkpoint()


def scope_changes(hot_start: int) -> list[tuple[str, str, Any]]:
    """(kind of range, kind of change, value): filters, and ranges in the hot window (from
    ``hot_start``: index_memory may make it shorter than the last day), ranges on the six
    days before the last (any), with clears between them."""
    end = FIRST + 7 * DAY
    hot = [("hot", "filter", f) for f in ("10.0.1.10", "port:5432", "action:reject",
                                          "10.2.0.0/16", "!action:accept", "port:22")]
    hot += [("hot", "range", TimeRange(t, t + 600)) for t in (
        (hot_start + (end - hot_start) * k // 8) // 600 * 600 for k in (1, 3, 5, 7))]
    old = [("any", "range", TimeRange(FIRST + d * DAY + h * 3600,
                                      FIRST + d * DAY + h * 3600 + length))
           for d, h, length in ((0, 3, 600), (1, 11, 3600), (2, 17, 600), (3, 8, 3600),
                                (4, 14, 600), (5, 20, 3600))]
    steps: list[tuple[str, str, Any]] = []
    for change in [*hot, *old]:
        steps += [change, (change[0], "clear", None)]
    return steps


async def measure(state: Path) -> dict[str, Any]:
    from core.explain import explain
    from core.filters import Filter, parse_filter
    from tui.app import VpcwatchApp
    from tui.widgets.feed import AlertFeed

    found: dict[str, Any] = {"changes": {}, "shown": {}}
    with open_store(state) as store:
        app = VpcwatchApp(store, None, collect=False, now=lambda: FIRST + 7 * DAY)
        opened = time.perf_counter()
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                def painted() -> bool:
                    return (app.chart.axis is not None
                            and bool(app.query_one(AlertFeed).rows_shown)
                            and app.activity.newest_record is not None)
                while not painted():
                    await asyncio.sleep(0.01)
                await pilot.pause()
                found["first_paint"] = time.perf_counter() - opened
                found["rss_paint"] = peak_rss()
                await app.wait_settled(600)
                found["rss_indexed"] = peak_rss()
                found["indexed"] = time.perf_counter() - opened
                found["index_build"] = app.index_seconds
                assert app.explorer is not None and app.explorer.index.start is not None
                found["hot_rows"] = app.explorer.index.rows
                found["hot_hours"] = (FIRST + 7 * DAY - app.explorer.index.start) / 3600
                for n, (kind, change, value) in enumerate(
                        scope_changes(app.explorer.index.start)):
                    if n == 20:
                        found["rss_hot_changes"] = peak_rss()
                    started = time.perf_counter()
                    if change == "filter":
                        app.set_scope(filter=parse_filter(value))
                    elif change == "range":
                        app.set_scope(range=value)
                    else:
                        app.set_scope(filter=Filter(), range=None)
                    await app.wait_settled(600)
                    await pilot.pause()
                    settled = time.perf_counter() - started
                    found["changes"].setdefault(kind, []).append(settled)
                    # the view applied (the chart's older days may follow it)
                    found["shown"].setdefault(kind, []).append(app.last_view_parts["view_shown"])
                started = time.perf_counter()
                burst = TimeRange(BURST // 3600 * 3600, BURST // 3600 * 3600 + 3600)
                explained = await app._read(explain, app.explorer, app.scope, burst)
                found["explain"] = time.perf_counter() - started
                top = explained.pairs[0]
                found["explain_top"] = (f"{top['address']} -> {top['peer']}, "
                                        f"{top['share']:.0%}, new={top['new']}")
        finally:
            app.close_background()
    found["rss"] = peak_rss()
    return found


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def render(found: dict[str, Any], args: argparse.Namespace, build_seconds: float) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    hot, old = found["shown"]["hot"], found["shown"]["any"]
    everything = found["changes"]["hot"]
    return (
        f"\n## UI over a week, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC\n\n"
        f"Command: `.venv/bin/python bench/week.py --flows {args.flows} --alerts {args.alerts}`"
        f" (run by `make bench-ui`). Machine: {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}. Store of "
        f"{args.flows:,} flows over 7 days and {args.alerts:,} alerts built as segments in "
        f"{build_seconds:.0f} s; the app headless at 160x48 in its own process, hot window "
        f"24 h within index_memory {INDEX_MEMORY / 2**20:.0f} MiB (the defaults): the "
        f"last {found['hot_hours']:.1f} h, {found['hot_rows']:,} flows indexed. A change is "
        "timed from the view pump's start to its view applied (feed, chart, conversations; "
        "with a filter the traffic summary cannot answer, the live chart's days before the "
        "hot window are read from the segments in a step after it), and to everything done "
        "and the process idle (Textual's `pilot.pause()`), which includes those days.\n\n"
        "| figure | value | target |\n|---|---|---|\n"
        f"| first paint (status bar, chart of the week, feed) | {found['first_paint']:.2f} s "
        f"| ≤ 2 s: {verdict(found['first_paint'] <= TARGETS['first_paint'])} |\n"
        f"| hot window indexed after it (the app usable for everything) | "
        f"{found['indexed']:.1f} s (index {found['index_build'] or 0:.1f} s) | |\n"
        f"| peak RSS of the app's process (at first paint / after indexing) | "
        f"{found['rss'] / 2**30:.2f} GB ({found['rss_paint'] / 2**30:.2f} / "
        f"{found['rss_indexed'] / 2**30:.2f}) | ≤ 1.5 GB: "
        f"{verdict(found['rss'] <= TARGETS['rss'])} |\n"
        f"| scope change in the hot window, to its view: p50 / p95 of {len(hot)} | "
        f"{statistics.median(hot) * 1000:.0f} / {p95(hot) * 1000:.0f} ms | ≤ 200 ms: "
        f"{verdict(p95(hot) <= TARGETS['hot'])} |\n"
        f"| the same, to the older days of the chart as well and the process idle: p50 / p95 | "
        f"{statistics.median(everything) * 1000:.0f} / {p95(everything) * 1000:.0f} ms | |\n"
        f"| scope change to a range 1–6 days back (and back): p50 / p95 of {len(old)} | "
        f"{statistics.median(old) * 1000:.0f} / {p95(old) * 1000:.0f} ms | ≤ 1 s: "
        f"{verdict(p95(old) <= TARGETS['any'])} |\n"
        f"| explain the hour of the exfiltration burst (5th day) | {found['explain']:.2f} s: "
        f"{found['explain_top']} | |\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=100_000_000)
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--state-dir", type=Path, help="measure this store (built if empty)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # (the child)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure))))
        return 0
    with tempfile.TemporaryDirectory(prefix="vpcwatch-bench-week-") as scratch:
        state = args.state_dir or Path(scratch) / "state"
        started = time.perf_counter()
        if not (state / "vpcwatch.duckdb").exists():
            print(f"building a store of {args.flows:,} flows over 7 days …", flush=True)
            build_store(state, args.flows, args.alerts)
        build_seconds = time.perf_counter() - started
        child = subprocess.run([sys.executable, __file__, "--measure", str(state)],
                               capture_output=True, text=True, check=False)
        if child.returncode:
            sys.stderr.write(child.stderr)
            return 1
        found = json.loads(child.stdout.strip().splitlines()[-1])
    report = render(found, args, build_seconds)
    publish(report, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
