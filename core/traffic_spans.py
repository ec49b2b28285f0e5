"""Which flows answer a question about a span of time: the traffic index of the hot window,
an index of a past span, or, before the hot window, the traffic summary or the segments
(docs/app.md, "Bounded by the hot window"). Used by ``core.explorer`` on its thread."""

from __future__ import annotations

import duckdb

from core.filters import Filter
from core.store import Store, summaries
from core.timeline import Axis, TimeRange
from core.traffic_index import TrafficIndex


class TrafficSpans:
    def __init__(self, store: Store, con: duckdb.DuckDBPyConnection, hot_seconds: float | None):
        self._store, self.con = store, con
        self.hot = TrafficIndex(store, con, hot_seconds)
        self.past: TrafficIndex | None = None  # the index of a span before the hot window

    def sync(self) -> bool:
        """Follow the segment list (the past index too: compaction, late objects); True
        when anything changed."""
        changed = self.hot.sync()
        return (self.past.sync() if self.past is not None else False) or changed

    def close(self) -> None:
        if self.past is not None:
            self.past.con.close()
            self.past = None

    def index_for(self, span: TimeRange | None) -> TrafficIndex:
        """The hot index, or for a span that starts before it, an index of that span (one
        is kept: the chart's axis, which holds the range the conversations then ask for)."""
        hot = self.hot
        if span is None or hot.start is None or span.start >= hot.start:
            return hot
        past = self.past
        if past is None or past.window is None or not (
                past.window.start <= span.start and span.end <= past.window.end):
            self.close()
            past = TrafficIndex(self._store, self._store.reading_cursor(), window=span)
            past.sync()
            self.past = past
        return past

    def older_histogram(self, flt: Filter, axis: Axis, until: int) -> list[int]:
        """Bytes per bucket of ``axis`` of the flows in scope that start before ``until``
        (a minute: the summary's minutes fall wholly on one side, and in one bucket): from
        the summary when the filter tests only what it holds, else from the segments."""
        where, params = flt.flows_sql()
        if flt.tests_only(summaries.DIMENSIONS):
            source, time, amount = summaries.TABLE, "minute", "bytes"
        else:
            names = self._store.segments.between(axis.start, until, self.con)
            if not names:
                return [0] * axis.count
            source, time = f"({self._store.segments_sql(names)})", "start"
            amount = "coalesce(bytes, 0)"
        rows = self.con.execute(
            f"SELECT ({time} - ?) // ? AS b, sum({amount}) FROM {source} "
            f"WHERE {time} >= ? AND {time} < ? AND {where} GROUP BY b",
            [axis.start, axis.size, axis.start, min(until, axis.end), *params]).fetchall()
        values = [0] * axis.count
        for bucket, total in rows:
            values[int(bucket)] += int(total or 0)
        return values
