"""Which days a poll lists for one ``[[bucket]]`` entry, and which objects it found late.

Every poll lists the lookback window (``lookback``, 48 hours by default). Two things reach
further back:
- a backfill: the days from ``only_logs_after`` (or the start of the retention window, if
  later: older rows would be dropped at the poll's end) to the window, listed until one poll
  has listed them all (as Wazuh does on its first run), and again from the new date when
  ``only_logs_after`` moves before the first day listed;
- a relist: every ``relist_interval`` (a day by default), the days between the start of
  the retention window (or the first day this entry ever listed, if later) and the
  lookback window are listed again. An object found there was delivered after its day had
  left the lookback window: it is read, and counted as ``late`` (Wazuh's marker, a last
  key read, never sees such an object). Days older than retention are never relisted: their
  ledger entries are forgotten, and reading them again would store their rows twice.
The store keeps, per entry, how far the backfill got, the first day listed and when the
last relist finished (``core.store.ledger.ListingMarks``, under ``BucketConfig.marks_key``);
they move only after a poll whose listing of that entry had no failure (a prefix denied, as
an account's folder can be for good, is no failure: its days are relisted once it can be
read, and its objects found then are counted late).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from core.config import BucketConfig, GeneralConfig
from core.store.ledger import Candidate, ListingMarks


@dataclass(frozen=True)
class ListingPlan:
    first: date  # the first day this poll lists
    window: date  # the first day of the lookback window
    relist_from: date | None  # a relist this poll: the days from here to the window
    backfill_from: date | None  # a backfill this poll: the days from here to the window

    def late(self, candidates: list[Candidate]) -> list[Candidate]:
        """The objects only the relist found: new to the ledger, in its days, not in the
        backfill's (pending or blocked ones, retried, are not late)."""
        if self.relist_from is None:
            return []
        end = min(self.window, self.backfill_from or self.window)
        return [c for c in candidates if not c.known and c.ref.day is not None
                and self.relist_from <= c.ref.day < end]

    def marks_after(self, marks: ListingMarks, now: datetime) -> ListingMarks:
        """The entry's marks once this poll's listing has succeeded."""
        listed_from = min(marks.listed_from or self.first, self.first)
        backfilled = (self.window - timedelta(days=1) if self.backfill_from is not None
                      else marks.backfilled_through)
        relisted = (now.timestamp() if self.relist_from is not None or marks.relisted_at is None
                    else marks.relisted_at)
        return replace(marks, backfilled_through=backfilled, listed_from=listed_from,
                       relisted_at=relisted)


def plan(bucket: BucketConfig, general: GeneralConfig, marks: ListingMarks,
         now: datetime) -> ListingPlan:
    window = (now - timedelta(seconds=general.lookback)).date()
    oldest_kept = (now - timedelta(seconds=general.retention)).date()
    if marks.kept_from is not None:  # (a retention raised: its days' ledger is forgotten)
        oldest_kept = max(oldest_kept, marks.kept_from)
    # (older days: retention would drop their rows at the poll's end, and forget their
    # ledger entries, so that a backfill not finished would read them again, twice)
    start = max(bucket.only_logs_after, oldest_kept) if bucket.only_logs_after else None
    first, backfill_from = window, None
    if start is not None and start >= window:
        first = start
    elif start is not None:
        done = marks.backfilled_through
        if done is not None and marks.listed_from is not None and start < marks.listed_from:
            done = None  # (only_logs_after moved earlier: days never listed)
        first = min(start if done is None else max(start, done + timedelta(days=1)), window)
        backfill_from = first if first < window else None
    relist_from = None
    due = (marks.relisted_at is not None
           and now.timestamp() - marks.relisted_at >= general.relist_interval)
    if due and marks.listed_from is not None:
        relist_from = min(max(oldest_kept, marks.listed_from, start or oldest_kept), window)
        first = min(first, relist_from)
    return ListingPlan(first, window, relist_from, backfill_from)
