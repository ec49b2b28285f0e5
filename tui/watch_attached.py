"""`vpcwatch watch --headless` while a collector runs: follow what it publishes
(``core.follow``) instead of collecting, printing each new or updated alert as it commits
and, at a minimum level of 4 or lower, the parity alerts of the windows its new flows fall
in. When the collector stops, say so and wait for it; SIGINT, SIGTERM or SIGHUP end it."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from core.follow import Follower, at_least
from core.rules import RuleEngine
from core.store import spill
from core.store.detections import parity_of
from core.store.segments import Segments, segment_dir
from core.store.statedir import collector_owner
from tui.output import print_alerts

log = logging.getLogger(__name__)
FOLLOW_SECONDS = 0.2  # how often the publication is looked at (two small files read)
ALIVE_SECONDS = 2.0  # how often the collector's lock is tested


def follow(state_dir: Path, owner: str, min_level: int, parity_level: int | None) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    follower = Follower(state_dir)
    follower.poll()  # where the collector is now: only what comes after is printed
    log.warning("attached to %s: printing what it commits", owner)
    gone = False
    checked = time.monotonic()
    while not stop.wait(FOLLOW_SECONDS):
        update = follower.poll()
        if update is not None:
            print_alerts(at_least(update.alerts, min_level))
            if parity_level is not None and update.segments:
                print_alerts(_parity(state_dir, follower, update.segments, parity_level))
        if time.monotonic() - checked >= ALIVE_SECONDS:
            checked = time.monotonic()
            running = collector_owner(state_dir) is not None
            if running != (not gone):
                gone = not running
                log.warning("the collector stopped; waiting for it to start again" if gone
                            else "the collector is back: following it again")
    return 0


def _parity(state_dir: Path, follower: Follower, added: list[str], level: int
            ) -> pa.Table | None:
    """The parity alerts of the windows the added segments' flows fall in, from every
    published segment (as the collector's own watch prints them)."""
    directory = segment_dir(state_dir)
    con = spill.connect(state_dir)
    try:
        RuleEngine([]).install(con)
        segments = Segments(con, directory)
        con.execute(f"CREATE VIEW flows AS {segments.sql(sorted(follower.segments))}")
        committed = pa.concat_tables([pq.read_table(directory / name) for name in added],
                                     promote_options="permissive")
        return parity_of(con, committed, level)
    except (OSError, ValueError, duckdb.Error) as exc:  # (a segment gone meanwhile)
        log.warning("parity alerts of the last commit skipped: %s", exc)
        return None
    finally:
        con.close()
