"""``vpcwatch demo`` (``make demo``): the real collector against an embedded S3 with live traffic.

The emulator runs on 127.0.0.1; a feeder writes flow-log and CloudTrail objects into it, laid
out exactly as AWS writes them, and vpcwatch polls it through the same aiobotocore path it
uses against AWS. The app shows it; ``--headless`` prints what each poll found instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from core.alerts import alert_documents
from core.collector import Collector
from core.config import Config, parse_config
from core.events import PollSummary
from core.explorer import Explorer, Scope
from core.rules import load_engine
from core.safetext import visible
from core.store import Store, open_store
from core.timeline import Axis
from tui.cells import human_bytes
from tui.demo_traffic import DemoObject, cloudtrail_object, flow_objects, incident_lines
from tui.embedded_s3 import start_s3, use_emulator_credentials

DEMO_BUCKET = "vpcwatch-demo"
POLL_SECONDS = 5
HISTORY_MINUTES = 24 * 60
HISTORY_OBJECT_MINUTES = 5  # AWS delivers a flow log file every 5 (or 10) minutes


class Feeder:
    """Writes the demo's traffic: a day of history at once (a baseline for the chart, the
    peaks and rewind), then a slice each poll."""

    def __init__(self, client: object, seed: int = 7):
        self.client = client
        self.rng = random.Random(seed)
        self.ticks = 0

    def put(self, objects: list[DemoObject]) -> None:
        for obj in objects:
            self.client.put_object(Bucket=DEMO_BUCKET, Key=obj.key, Body=obj.body)  # type: ignore[attr-defined]

    def history(self, now: float) -> None:
        step = HISTORY_OBJECT_MINUTES * 60
        first = int(now) // step * step - HISTORY_MINUTES * 60
        for block in range(first, int(now) // step * step, step):
            self.put(flow_objects(block, self.rng, {}, minutes=HISTORY_OBJECT_MINUTES))

    def tick(self, now: float) -> None:
        """One more slice of live traffic; the incidents start on the second tick."""
        self.ticks += 1
        minute = int(now) // 60 * 60
        extra = incident_lines(minute) if self.ticks == 2 else {}
        self.put(flow_objects(minute, self.rng, extra, share=POLL_SECONDS / 60))
        if self.ticks == 1:
            self.put([cloudtrail_object(now, self.rng)])


def demo_config(url: str, state_dir: Path) -> Config:
    text = f"""
[general]
interval = "{POLL_SECONDS}s"
state_dir = "{state_dir}"
[[bucket]]
type = "vpcflow"
name = "{DEMO_BUCKET}"
path = "vpc"
endpoint_url = "{url}"
[[bucket]]
type = "cloudtrail"
name = "{DEMO_BUCKET}"
path = "vpc"
endpoint_url = "{url}"
"""
    return parse_config(text, "<demo>")


def run_demo(polls: int = 0, state_dir: Path | None = None, pause: float = POLL_SECONDS,
             headless: bool = True, mouse: bool = True) -> int:
    """Run until ^C or q (or ``polls`` polls when headless), ``pause`` seconds between polls."""
    use_emulator_credentials()
    import boto3

    s3 = start_s3()
    client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")
    client.create_bucket(Bucket=DEMO_BUCKET)
    feeder = Feeder(client)
    if headless:
        print(f"vpcwatch demo: embedded S3 at {s3.url}, bucket {DEMO_BUCKET}; ^C to stop",
              flush=True)
    feeder.history(time.time())
    with tempfile.TemporaryDirectory(prefix="vpcwatch-demo-") as scratch:
        config = demo_config(s3.url, state_dir or Path(scratch) / "state")
        try:
            if headless:
                # (the store opened before the loop: a wait for its readers stops on Ctrl-C)
                with open_store(config.general.state_dir, engine=load_engine([])) as store:
                    asyncio.run(_poll_loop(config, store, feeder, polls, pause))
                return 0
            return _run_app(config, feeder, mouse)
        finally:
            s3.stop()


def _run_app(config: Config, feeder: Feeder, mouse: bool) -> int:
    from tui.app import run_app
    from tui.logs import log_to_file

    async def before_poll() -> None:
        await asyncio.to_thread(feeder.tick, time.time())

    with open_store(config.general.state_dir, engine=load_engine([])) as store, \
            log_to_file(config.general.state_dir / "vpcwatch.log"):
        return run_app(store, config, before_poll=before_poll, mouse=mouse)


async def _poll_loop(config: Config, store: Store, feeder: Feeder, polls: int, pause: float
                     ) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    collector = Collector(config, store)
    explorer = await collector.db(Explorer, store)  # used on the store's thread only
    try:
        count = 0
        while not stop.is_set() and (polls == 0 or count < polls):
            await asyncio.to_thread(feeder.tick, time.time())
            summary = await collector.poll()
            report = await collector.db(_report, explorer, summary)
            print(report, flush=True)
            count += 1
            if polls and count == polls:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await stop.wait()
    finally:
        await collector.db(explorer.close)
        collector.close()


def _report(explorer: Explorer, summary: PollSummary) -> str:
    """What the poll added, the busiest minute and its top pair, the alerts of level 7+."""
    explorer.refresh()
    line = (f"{time.strftime('%H:%M:%S', time.gmtime())} UTC  +{summary.objects['done']} objects "
            f"+{summary.records:,} records +{summary.events} events +{summary.alerts} alerts")
    span = explorer.span()
    if span is not None:
        axis = Axis(span.start // 60 * 60, 60, -(-(span.end - span.start // 60 * 60) // 60))
        minutes = explorer.histogram(Scope(), axis)
        busiest = max(range(axis.count), key=lambda i: minutes[i])
        minute = axis.bucket_range(busiest, busiest)
        line += (f"\n  peak minute {time.strftime('%H:%M', time.gmtime(minute.start))} UTC: "
                 f"{human_bytes(minutes[busiest])}")
        for pair in explorer.conversations(Scope(range=minute), None, 1).to_pylist():
            line += (f"; top pair {visible(pair['address'])} -> {visible(pair['peer'])} "
                     f"{human_bytes(pair['bytes_out'] + pair['bytes_in'])}")
    for alert in alert_documents(explorer.feed(Scope(min_level=7), 0, 8)):
        line += f"\n  [{alert['level']:>2}] {alert['rule_id']}: {visible(alert['title'])}"
    return line


if __name__ == "__main__":
    sys.exit(run_demo())
