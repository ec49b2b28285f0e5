"""Helpers for the app's tests: a store with frozen demo traffic, the app on it, and waiting
on the app."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from core.rules import load_engine
from core.scan import scan
from core.store import open_store
from tui.app import VpcwatchApp
from tui.demo_traffic import DemoObject, cloudtrail_object, flow_objects, incident_lines

FROZEN_NOW = 1_795_910_400  # 2026-11-29 20:00 UTC: the frozen store's "now"
HISTORY_MINUTES = 90
PAYLOAD_ARN = "arn:aws:iam::111122223333:user/[@click=app.quit]x[/]\x1b]52;c;SGVsbG8=\x07\u202e"


def demo_objects(now: int, payload: bool = True) -> list[DemoObject]:
    """The demo's traffic for the HISTORY_MINUTES before ``now``, the incidents in the last
    minute, its CloudTrail object, and (``payload``) an unauthorized CreateVpc by a user whose
    ARN carries markup, an OSC 52 sequence and a bidi override."""
    rng = random.Random(11)
    first = now - HISTORY_MINUTES * 60
    objects: list[DemoObject] = []
    for minute in range(first, now - 60, 60):
        objects += flow_objects(minute, rng, {})
    objects += flow_objects(now - 60, rng, incident_lines(now - 60))
    objects.append(cloudtrail_object(now - 90, rng))
    if payload:
        objects.append(hostile_trail_object(now - 80))
    return objects


def hostile_trail_object(when: int) -> DemoObject:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    record = {
        "eventVersion": "1.09", "eventTime": stamp, "eventSource": "ec2.amazonaws.com",
        "eventName": "CreateVpc", "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.10",
        "userAgent": "[bold red]agent[/]\x1b[2J", "eventID": "hostile-0001",
        "userIdentity": {"type": "IAMUser", "arn": PAYLOAD_ARN, "accountId": "111122223333"},
        "recipientAccountId": "111122223333", "errorCode": "Client.UnauthorizedOperation",
        "errorMessage": "[@click=app.quit]quit[/]", "requestParameters": {},
    }
    key = ("vpc/AWSLogs/111122223333/CloudTrail/us-east-1/"
           f"{time.strftime('%Y/%m/%d', time.gmtime(when))}/111122223333_CloudTrail_us-east-1_"
           f"{time.strftime('%Y%m%dT%H%M', time.gmtime(when))}Z_00000000deadbeef.json.gz")
    return DemoObject(key, gzip.compress(json.dumps({"Records": [record]}).encode(), mtime=0))


def frozen_store(directory: Path) -> Path:
    """A state dir holding the frozen demo traffic, read with ``scan`` and the default rules."""
    files = directory / "logs"
    for obj in demo_objects(FROZEN_NOW):
        path = files / obj.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(obj.body)
    state = directory / "state"
    with open_store(state, engine=load_engine([])) as store:
        scan([files], store, max_size=1 << 30)
    return state


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for ``condition`` (checked as the app's loop runs), at most ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


@asynccontextmanager
async def frozen_app(state: Path, export_dir: Path, size: tuple[int, int] = (160, 48)
                     ) -> AsyncIterator[tuple[VpcwatchApp, object]]:
    """The app on the frozen store ``state`` (collecting nothing, its clock at FROZEN_NOW),
    once its first view is shown: (app, pilot)."""
    with open_store(state, engine=load_engine([])) as store:
        app = VpcwatchApp(store, None, collect=False, now=lambda: FROZEN_NOW,
                          export_dir=export_dir)
        try:
            async with app.run_test(size=size) as pilot:
                await until(lambda: app.explorer is not None)
                await app.wait_settled()
                yield app, pilot
        finally:
            app.close_background()
