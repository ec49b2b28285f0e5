"""The Wazuh-parity alerts of the app's feed: derived from the flows newest first, only as far
back as the page asked for needs.

A day of a busy estate holds millions of parity alerts (one per source, destination, service
port, protocol, action and 10 minutes), and deriving them all takes seconds per ten million
flows. The feed shows 60 at a time, newest first, so it derives the alerts seen from some
time ``since`` to the end of the range, starting with the last 20 minutes, and reaches four
times further back while fewer than the page needs are in scope. That is exact: every
derived alert seen at or after ``since`` is there, so when enough of them are in scope, no
alert seen before ``since`` can be among the first ``need`` of the feed. Until the whole
range is derived, the count is a lower bound (the app shows "N+").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from core.alerts import parity_flows
from core.rules import parity
from core.store.segments import Segments
from core.timeline import TimeRange

FIRST_SPAN = 2 * parity.WINDOW  # seconds derived first, back from the end of the range
GROWTH = 4  # each step back reaches this many times further


@dataclass(frozen=True)
class Derived:
    """What the temporary table ``parity_alerts`` holds."""

    key: tuple[Any, ...]  # (range asked for, flows' version)
    since: int  # every alert seen at or after this, in the range, is in the table
    complete: bool  # the whole range is derived


class ParityFeed:
    """``parity_alerts`` on one connection, kept as long as the range and the flows are."""

    def __init__(self, con: duckdb.DuckDBPyConnection, segments: Segments):
        self.con = con
        self.segments = segments
        self.derived: Derived | None = None

    def ensure(self, key: tuple[Any, ...], bounds: TimeRange | None, need: int,
               in_scope: Callable[[], int]) -> Derived:
        """Derive until ``in_scope()`` (rows of the table in the feed's scope) reaches
        ``need`` or the range is whole. ``bounds``: the range (None: no flows)."""
        derived = self.derived if self.derived and self.derived.key == key else None
        if bounds is None:
            return self._derive(key, None, 0, complete=True)
        if derived is None:
            derived = self._derive(key, bounds, max(bounds.start, bounds.end - FIRST_SPAN))
        while not derived.complete and in_scope() < need:
            reach = GROWTH * (bounds.end - derived.since)
            derived = self._derive(key, bounds, max(bounds.start, bounds.end - reach))
        return derived

    def _derive(self, key: tuple[Any, ...], bounds: TimeRange | None, since: int,
                complete: bool = False) -> Derived:
        if bounds is None:
            flows = None
        else:
            complete = since <= bounds.start
            flows = parity_flows(self.con, self.segments, since, bounds.end)
        rows = parity.select(flows or "(SELECT * FROM flows WHERE false)", seen_since=since,
                             seen_until=bounds.end if bounds else None)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE parity_alerts AS {rows}")
        self.derived = Derived(key, since, complete)
        return self.derived
