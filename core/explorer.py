"""The read side of the store for an interactive user: the alert feed, the bytes-over-time
histogram, conversations, raw flows, the buckets' state and read-only SQL (exports: core.export).

An Explorer owns one DuckDB cursor and must be used from one thread (the app runs it on its
reader thread while the collector writes on its own); the conversations' sums may run on a
second thread of its own, which reads only the traffic index's arrays (see
:meth:`Explorer.prefetch_conversations`). Everything it shows honours one
:class:`Scope`: the filter bar's terms, the selected time range and the minimum level.
Compaction can delete a segment file between two queries; a query that meets a vanished
file redefines the ``flows`` view and runs once more.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa

from core.alert_feed import AlertFeedQueries
from core.config import HOT_WINDOW, INDEX_MEMORY
from core.filters import Filter, IndexTest
from core.memory import release_free_memory
from core.parity_feed import ParityFeed
from core.priority import follow_yield
from core.scope import Scope
from core.store import Store, summaries
from core.timeline import Axis, TimeRange
from core.traffic_index import PairFigures, TrafficIndex
from core.traffic_kernels import SPARK_BUCKETS, Rows
from core.traffic_spans import TrafficSpans

T = TypeVar("T")
FLOW_COLUMNS = ("start", "end", "account_id", "interface_id", "srcaddr", "srcport", "dstaddr",
                "dstport", "protocol", "packets", "bytes", "action", "log_status", "vpc_id",
                "flow_direction", "object_key")
CONVERSATION_SCHEMA = pa.schema(
    [("address", pa.string()), ("peer", pa.string())]
    + [(name, pa.int64()) for name in ("bytes_out", "bytes_in", "packets_out", "packets_in",
                                       "flows", "accepted", "rejected", "first_seen",
                                       "last_seen")]
    + [("protocols", pa.list_(pa.int32())), ("ports", pa.list_(pa.int32())),
       ("trend", pa.list_(pa.int64()))])
CACHE_ENTRIES = 64  # flow answers kept until the data changes


@dataclass(frozen=True)
class BucketState:
    bucket: str
    kind: str  # vpcflow or cloudtrail
    counts: dict[str, int]  # ledger status -> objects
    last_commit: float | None  # epoch seconds


class Explorer(AlertFeedQueries):
    def __init__(self, store: Store, hot_seconds: float | None = HOT_WINDOW,
                 build: bool = True, index_memory: int | None = INDEX_MEMORY):
        """``hot_seconds``: the span of flows the traffic index keeps in memory, before the
        newest (None: every flow), shorter when they would take more than ``index_memory``
        bytes (None: no limit); older ones are read when a range asks for them.
        ``build`` False: the index is built by :meth:`build` (the app shows its first view
        before, with the chart from the traffic summary and no conversations)."""
        self._store = store
        self.con = store.reading_cursor()
        self._alerts_con = store.reading_cursor()  # (stored_feed's, on another thread)
        self.spans = TrafficSpans(store, self.con, hot_seconds, index_memory)
        self.index = self.spans.hot
        self.built = False
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._kept_rows: tuple[tuple[Any, ...], Rows] = ((), np.empty(0, np.int32))
        self._adder = ThreadPoolExecutor(1, thread_name_prefix="vpcwatch-sums",
                                         initializer=follow_yield)
        # the one prefetched answer (see prefetch_conversations), by its cache key
        self._started: dict[tuple[Any, ...], Future[pa.Table]] = {}
        self._parity = ParityFeed(self.con, store.segments)  # the parity alerts the feed shows
        if build:
            self.build()

    def close(self) -> None:
        self._adder.shutdown(wait=True, cancel_futures=True)
        self.spans.close()
        self._alerts_con.close()
        self.con.close()

    def build(self) -> None:
        """Index the hot window's flows (seconds for tens of millions of them)."""
        self.index.sync()
        release_free_memory()  # (the build's passing copies)
        self.built = True
        self._cache.clear()
        self._started.clear()

    def refresh(self) -> None:
        """See the segments committed since the last refresh (once more if compaction removed
        a segment between listing and reading it). Nothing to redo when none changed."""
        if not self.built:  # (build() reads everything there is then)
            return
        # the index changes its arrays in place: sums still reading them finish first
        futures.wait(list(self._started.values()))
        for attempt in (1, 2):
            try:
                if self.spans.sync():
                    self._store.define_flows_view(self.con)
                    self._cache.clear()
                    self._started.clear()  # (sums of the rows before: abandoned)
                return
            except duckdb.IOException:
                if attempt == 2:
                    raise

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """Flow answers only change when the index does (refresh clears them)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]  # type: ignore[no-any-return]
        value = compute()
        self._cache[key] = value
        if len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return value

    # -- flows --------------------------------------------------------------------------

    def span(self) -> TimeRange | None:
        """First and last second of the stored flows (from the segment list: no scan)."""
        rows = self.rows("SELECT min(min_start), max(max_end) FROM segments")
        first, last = rows[0]
        if first is None or last is None:
            return None
        return TimeRange(int(first), max(int(last), int(first)) + 1)

    def histogram(self, scope: Scope, axis: Axis, complete: bool = True) -> list[int]:
        """Bytes per bucket of ``axis`` for the flows in scope (the range is the axis).
        ``complete`` False: without what only the segments can give (see
        :meth:`histogram_is_partial`), which the app shows a moment later."""
        return self._cached(("histogram", scope.filter.text, axis, complete),
                            lambda: self._histogram(scope, axis, complete))

    def histogram_is_partial(self, scope: Scope, axis: Axis) -> bool:
        """Whether ``histogram(scope, axis, complete=False)`` leaves flows out: the live
        view (no range) with a filter the summary cannot answer reads the flows before the
        hot window from the segments (seconds over days of a large estate)."""
        hot = self.spans.hot
        if scope.range is not None or scope.filter.tests_only(summaries.DIMENSIONS):
            return False
        if not self.built:
            return True
        return (hot.start is not None and axis.start < hot.start
                and not self.spans.has_older(scope.filter, axis, hot.start))  # (read before)

    def interrupt_older(self) -> None:
        """Stop reading the live chart's older days from the segments (from another
        thread): ``histogram`` raises ``duckdb.InterruptException`` there."""
        self.spans.interrupt_older()

    def _histogram(self, scope: Scope, axis: Axis, complete: bool) -> list[int]:
        """From the index that covers the scope's range (the whole axis, for a past range);
        before the hot window's start, from the traffic summary when the filter tests only
        what it holds (else from the segments of that time)."""
        def older(until: int) -> list[int]:  # (a segment may be compacted away meanwhile)
            if not complete and self.histogram_is_partial(scope, axis):
                return [0] * axis.count
            return self.retry(lambda: self.spans.older_histogram(scope.filter, axis, until))

        if not self.built:
            return older(axis.end)
        span = scope.range and TimeRange(axis.start, axis.end)
        index = self.spans.index_for(span)
        if index is None:  # (a past range too long to index: its flows are read)
            return older(axis.end)
        values = index.histogram(self._kept(index, scope.filter, span), axis)
        if index.start is None or axis.start >= index.start:
            return values
        return [a + b for a, b in zip(values, older(index.start), strict=True)]

    def conversations(self, scope: Scope, address: str | None, limit: int = 100) -> pa.Table:
        """Per peer of ``address`` (or per address pair when None: the top talkers): bytes and
        packets each way, flows, ACCEPT/REJECT, first/last seen, protocols, the most used
        service ports and ``SPARK_BUCKETS`` byte totals over the scope's time for a sparkline.
        "out" is from ``address`` (or from the pair's bigger sender) to the peer. The pairs
        are the ``limit`` with the most bytes (ties: more flows)."""
        key = _conversations_key(scope, address, limit)
        return self._cached(key, lambda: self._conversations(key, scope, address, limit))

    def prefetch_conversations(self, scope: Scope, address: str | None, limit: int = 100
                               ) -> Future[pa.Table] | None:
        """Start adding up the conversations on a second thread (compiled loops without the
        GIL), so they proceed while this thread reads the feed and the histogram; the next
        :meth:`conversations` call with the same arguments collects them. Returns the sums
        under way (None when the answer is known already)."""
        key = _conversations_key(scope, address, limit)
        if key in self._cache:
            return None
        if key not in self._started:
            self._started = {key: self._adder.submit(self._pairs_in(scope, address, limit))}
        return self._started[key]

    def conversations_ready(self, scope: Scope, address: str | None, limit: int = 100
                            ) -> bool:
        """Whether :meth:`conversations` would answer at once (known, or added up)."""
        key = _conversations_key(scope, address, limit)
        started = self._started.get(key)
        return key in self._cache or (started is not None and started.done())

    def _pairs_in(self, scope: Scope, address: str | None, limit: int
                  ) -> Callable[[], pa.Table]:
        """The work behind the conversations: what needs the connection is done here, on the
        calling thread; the function returned needs only the index's arrays. Without a
        range: the hot window's conversations; none before the index is built."""
        if not self.built:
            return CONVERSATION_SCHEMA.empty_table
        index = self.spans.index_for(scope.range)
        if index is None:  # (see range_too_long)
            return CONVERSATION_SCHEMA.empty_table
        rows, me = self._kept(index, scope.filter, scope.range), -1
        if address is not None:
            me = index.address_id(address) or 0
            if me == 0:  # never seen: no peers
                return CONVERSATION_SCHEMA.empty_table
            if address != scope.filter.single_address():  # (else the filter is this test)
                rows = index.select([(IndexTest(("src", "dst"), address=address), False)],
                                    within=rows)
        spark = self._spark_axis(scope, index)
        return lambda: self._table(index, index.top_pairs(rows, scope.range, me, limit, spark),
                                   swap=me < 0)

    def range_too_long(self, scope: Scope) -> bool:
        """Whether the scope's range is a past one with more flows than an index of a past
        range may take (index_memory): it has a chart but no conversations."""
        return scope.range is not None and self.spans.refuses(scope.range)

    def _table(self, index: TrafficIndex, pairs: list[PairFigures], swap: bool) -> pa.Table:
        rows = [_conversation(p, index.names, swap) for p in pairs]
        rows.sort(key=lambda r: (-(r["bytes_out"] + r["bytes_in"]), -r["flows"], r["address"],
                                 r["peer"]))
        return pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA)

    def _conversations(self, key: tuple[Any, ...], scope: Scope, address: str | None,
                       limit: int) -> pa.Table:
        started = self._started.pop(key, None)
        return started.result() if started else self._pairs_in(scope, address, limit)()

    def _kept(self, index: TrafficIndex, flt: Filter, span: TimeRange | None = None) -> Rows:
        """The index rows the filter keeps (of the segments that may hold flows of
        ``span``); the last answer is kept (the chart and the conversations ask in turn),
        one only: up to four bytes a flow."""
        key = (flt.text, index.serial, index.version, span)
        if self._kept_rows[0] != key:
            self._kept_rows = (key, index.select(flt.index_tests(), index.rows_in(span)))
        return self._kept_rows[1]

    def flows_between(self, scope: Scope, address: str, peer: str, limit: int = 500
                      ) -> pa.Table:
        """The raw flow records between two addresses in scope, newest first."""
        where, params = self._flow_where(scope, scope.range)
        columns = ", ".join(f'"{c}"' for c in FLOW_COLUMNS)
        return self._arrow(
            f"SELECT {columns} FROM flows WHERE ((srcaddr = ? AND dstaddr = ?) OR "
            f"(srcaddr = ? AND dstaddr = ?)) AND {where} ORDER BY start DESC LIMIT ?",
            [address, peer, peer, address, *params, limit])

    def _flow_where(self, scope: Scope, window: TimeRange | None) -> tuple[str, list[Any]]:
        return _within(*scope.filter.flows_sql(), window)

    def _spark_axis(self, scope: Scope, index: TrafficIndex) -> tuple[int, int]:
        span = self.span()
        if scope.range is None and span is not None and index.start is not None:
            span = TimeRange(min(max(index.start, span.start), span.end - 1), span.end)
        window = scope.range or span or TimeRange(0, SPARK_BUCKETS)
        width = max(1, -(-(window.end - window.start) // SPARK_BUCKETS))
        return window.start, width

    # -- state, SQL, export -------------------------------------------------------------

    def bucket_states(self) -> list[BucketState]:
        rows = self.rows(
            "SELECT bucket, CASE kind WHEN 'cloudtrail' THEN 'cloudtrail' ELSE 'vpcflow' END, "
            "status, count(*), max(epoch(updated)) FROM objects GROUP BY ALL ORDER BY ALL")
        states: dict[tuple[str, str], BucketState] = {}
        for bucket, kind, status, count, updated in rows:
            state = states.setdefault((bucket, kind), BucketState(bucket, kind, {}, None))
            state.counts[status] = int(count)
            if status == "done" and updated is not None:
                states[(bucket, kind)] = BucketState(bucket, kind, state.counts, float(updated))
        return list(states.values())

    def problem_count(self) -> int:
        rows = self.rows(
            "SELECT (SELECT count(*) FROM objects WHERE status IN ('quarantined', 'blocked')) "
            "+ (SELECT count(*) FROM prefixes WHERE status <> 'ok')")
        return int(rows[0][0])

    def problems(self) -> pa.Table:
        """Objects quarantined or blocked, and prefixes access was denied to."""
        return self._arrow(
            "SELECT bucket, key, status, last_error AS error, updated FROM objects "
            "WHERE status IN ('quarantined', 'blocked') UNION ALL "
            "SELECT bucket, prefix, status, error, updated FROM prefixes WHERE status <> 'ok' "
            "ORDER BY updated DESC LIMIT 1000")

    # -- helpers ------------------------------------------------------------------------

    def segments_between(self, first: int, last: int) -> list[str]:
        """The segments that may hold a flow starting in [first, last)."""
        return self._store.segments.between(first, last, self.con)

    def segments_sql(self, names: Sequence[str]) -> str:
        return self._store.segments_sql(names)

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of read-only SQL over the store, on this explorer's cursor."""
        return self.retry(lambda: self.con.execute(sql, params or []).fetchall())

    def _arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        return self.retry(lambda: self.con.sql(sql, params=params or []).to_arrow_table())

    def retry(self, run: Callable[[], T]) -> T:
        """``run()``, once more after a refresh when a segment it read was compacted away
        meanwhile (its SQL named the files: ``run`` must make its SQL again)."""
        try:
            return run()
        except duckdb.IOException:  # a segment compacted away since the last refresh
            self.refresh()
            return run()


def _conversations_key(scope: Scope, address: str | None, limit: int) -> tuple[Any, ...]:
    return ("conversations", scope.filter.text, scope.range, address, limit)


def _conversation(pair: PairFigures, names: Sequence[str | None], swap: bool
                  ) -> dict[str, Any]:
    """One row of the conversations pane; with ``swap``, the pair's bigger sender first."""
    f = pair.figures
    address, peer, out, into = names[pair.address], names[pair.peer], 0, 1
    if swap and f[1] > f[0]:
        address, peer, out, into = peer, address, 1, 0
    return {"address": address, "peer": peer, "bytes_out": f[out], "bytes_in": f[into],
            "packets_out": f[2 + out], "packets_in": f[2 + into], "flows": f[4],
            "accepted": f[5], "rejected": f[6], "first_seen": f[7], "last_seen": f[8],
            "protocols": pair.protocols, "ports": pair.ports,
            "trend": f[9:9 + SPARK_BUCKETS]}


def _within(where: str, params: list[Any], window: TimeRange | None) -> tuple[str, list[Any]]:
    if window is None:
        return where, params
    return f"{where} AND start >= ? AND start < ?", [*params, window.start, window.end]
