"""Which flows answer a question about a span of time: the traffic index of the hot window,
an index of a past span, or, before the hot window, the traffic summary or the segments
(docs/app.md, "Bounded by the hot window"). Used by ``core.explorer`` on its thread."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import duckdb

from core.filters import Filter
from core.memory import release_free_memory
from core.store import Store, summaries
from core.timeline import Axis, TimeRange
from core.traffic_index import FLOW_COST, TrafficIndex

OLDER_ENTRIES = 16  # older parts of charts kept (per filter and axis)
PAST_SHARE = 4  # a past range's index may take 1/PAST_SHARE of the memory, the hot one the rest


class TrafficSpans:
    def __init__(self, store: Store, con: duckdb.DuckDBPyConnection, hot_seconds: float | None,
                 index_memory: int | None = None):
        """``index_memory``: the most bytes both indexes take (None: no limit)."""
        self._store, self.con = store, con
        hot_memory, self._past_rows = None, None
        if index_memory is not None:
            hot_memory = index_memory - index_memory // PAST_SHARE
            self._past_rows = index_memory // PAST_SHARE // FLOW_COST
        self.hot = TrafficIndex(store, con, hot_seconds, memory=hot_memory)
        self.past: TrafficIndex | None = None  # the index of a span before the hot window
        # reads of older flows: a cursor of their own, so that interrupting one (a new view
        # while the live chart's older days are read) stops nothing else
        self._older_con = store.reading_cursor()
        self._older: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()

    def sync(self) -> bool:
        """Follow the segment list (the past index too: compaction, late objects); True
        when anything changed."""
        changed = self.hot.sync()
        return (self.past.sync() if self.past is not None else False) or changed

    def close(self) -> None:
        self._forget_past()
        self._older_con.close()

    def _forget_past(self) -> None:
        if self.past is not None:
            self.past.con.close()
            self.past = None

    def interrupt_older(self) -> None:
        """Stop a read of older flows under way (from another thread): it raises
        ``duckdb.InterruptException`` there."""
        self._older_con.interrupt()

    def index_for(self, span: TimeRange | None) -> TrafficIndex | None:
        """The hot index, or for a span that starts before it, an index of that span (one
        is kept: the chart's axis, which holds the range the conversations then ask for);
        None when that span holds more flows than its share of the memory allows."""
        hot = self.hot
        if span is None or hot.start is None or span.start >= hot.start:
            return hot
        if self.refuses(span):  # (an index kept for a shorter range stays)
            return None
        if not _covers(self.past, span):
            self._forget_past()
            past = TrafficIndex(self._store, self._store.reading_cursor(), window=span)
            past.sync()
            release_free_memory()  # (the one before and this build's passing copies)
            self.past = past
        return self.past

    def refuses(self, span: TimeRange) -> bool:
        """Whether ``index_for(span)`` gives no index (asked without building one)."""
        hot = self.hot
        if hot.start is None or span.start >= hot.start or _covers(self.past, span):
            return False
        return not self.fits(span)

    def fits(self, span: TimeRange) -> bool:
        """Whether an index of ``span``'s flows (counted in the traffic summary) fits."""
        return (self._past_rows is None
                or summaries.flows_between(self.con, span.start, span.end) <= self._past_rows)

    def older_histogram(self, flt: Filter, axis: Axis, until: int) -> list[int]:
        """Bytes per bucket of ``axis`` of the flows in scope that start before ``until``
        (a minute: the summary's minutes fall wholly on one side, and in one bucket): from
        the summary when the filter tests only what it holds, else from the segments (kept
        while those segments are the same: new data does not change them)."""
        where, params = flt.flows_sql()
        if flt.tests_only(summaries.DIMENSIONS):
            return self._bytes_per_bucket(summaries.TABLE, "minute", "bytes", where, params,
                                          axis, until)
        key = self._older_key(flt, axis, until)
        if key is None:
            return [0] * axis.count
        names = key[-1]
        if key not in self._older:
            self._older[key] = self._bytes_per_bucket(
                f"({self._store.segments_sql(names)})", "start", "coalesce(bytes, 0)", where,
                params, axis, until)
            if len(self._older) > OLDER_ENTRIES:
                self._older.popitem(last=False)
        self._older.move_to_end(key)
        return self._older[key]

    def has_older(self, flt: Filter, axis: Axis, until: int) -> bool:
        """Whether ``older_histogram`` would answer at once (no segment to read)."""
        if flt.tests_only(summaries.DIMENSIONS):
            return True
        key = self._older_key(flt, axis, until)
        return key is None or key in self._older

    def _older_key(self, flt: Filter, axis: Axis, until: int) -> tuple[Any, ...] | None:
        """What an older part read from the segments depends on (None: no segment)."""
        names = tuple(self._store.segments.between(axis.start, until, self.con))
        return (flt.text, axis, until, names) if names else None

    def _bytes_per_bucket(self, source: str, time: str, amount: str, where: str,
                          params: list[Any], axis: Axis, until: int) -> list[int]:
        rows = self._older_con.execute(
            f"SELECT ({time} - ?) // ? AS b, sum({amount}) FROM {source} "
            f"WHERE {time} >= ? AND {time} < ? AND {where} GROUP BY b",
            [axis.start, axis.size, axis.start, min(until, axis.end), *params]).fetchall()
        values = [0] * axis.count
        for bucket, total in rows:
            values[int(bucket)] += int(total or 0)
        return values


def _covers(index: TrafficIndex | None, span: TimeRange) -> bool:
    """Whether ``index`` is one of a fixed window that holds ``span``."""
    return (index is not None and index.window is not None
            and index.window.start <= span.start and span.end <= index.window.end)
