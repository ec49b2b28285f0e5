"""One attached app for `bench/attach.py`: the real app, headless (Textual's run_test), on a
store a running collector publishes. Prints "ready" once it shows the store; then, until
SIGTERM, either changes its filter continuously (--churn) or sits idle and prints, each time
its feed shows more alerts, the seconds from the commit of the newest alert to the screen."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SECONDS = 0.02  # how often the app is looked at while it starts
FILTERS = ["port:22", "action:reject", "10.0.0.0/8", "proto:udp", ""]


def committed(cursor: object) -> float | None:
    """When the newest alert the app holds was committed (its ``created``, the collector's
    clock on this host): a viewer that skips to a later state is not credited for it.
    (``cursor``: of the app's store, for this thread.)"""
    row = cursor.execute(  # type: ignore[attr-defined]
        "SELECT epoch(max(created)) FROM alerts").fetchall()
    return float(row[0][0]) if row and row[0][0] is not None else None


def report_rises(feed: object, cursor: object) -> None:
    """Print the latency each time the feed shows more alerts than it did: ``feed.show`` is
    wrapped, so the moment is exact and an idle viewer costs what the app does (the loop
    that looked at the screen every 20 ms before cost 0.2-0.9% of a core per viewer)."""
    show, shown = feed.show, [feed.total]  # type: ignore[attr-defined]

    def showing(*args: object, **kwargs: object) -> None:
        show(*args, **kwargs)
        if feed.total > shown[0]:  # type: ignore[attr-defined]
            shown[0] = feed.total  # type: ignore[attr-defined]
            at = committed(cursor)
            if at is not None:
                print(json.dumps({"latency": time.time() - at}), flush=True)

    feed.show = showing  # type: ignore[attr-defined]


async def run(state_dir: Path, churn: bool) -> None:
    from core.priority import yield_to_collector
    from core.rules import load_engine
    from core.store import open_store
    from tui.app import VpcwatchApp
    from tui.widgets.feed import AlertFeed

    with open_store(state_dir, read_only=True, engine=load_engine([])) as store:
        yield_to_collector(spare=[threading.main_thread()])  # (as `vpcwatch tui` does)
        app = VpcwatchApp(store, None)
        try:
            async with app.run_test(size=(160, 48)):
                while app.explorer is None:
                    await asyncio.sleep(SAMPLE_SECONDS)
                await app.wait_settled()
                print("ready", flush=True)
                stop = asyncio.Event()
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
                feed = app.query_one(AlertFeed)
                if not churn:
                    report_rises(feed, store.con.cursor())
                    await stop.wait()
                step = 0
                while not stop.is_set():
                    app.apply_filter_text(FILTERS[step % len(FILTERS)])
                    step += 1
                    await app.wait_settled()
        finally:
            app.close_background()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--churn", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    asyncio.run(run(args.state_dir, args.churn))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
