"""The view pump: what the screen shows is read on a reader thread, a step at a time.

A change of scope (filter, time range, level) or new data asks for parts of the view (feed,
chart, conversations, status); the pump computes what is pending with one
:class:`core.explorer.Explorer` on the reader thread, so the store's writer and the
keyboard never wait for each other, and the app applies each step in one go. Mixed into
:class:`tui.app.VpcwatchApp`, which owns the widgets and ``_apply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from core.explorer import BucketState, Scope
from core.priority import VIEW_WAIT_MAX
from core.safetext import visible
from core.timeline import Axis, TimeRange, axis_for
from tui.chart_keys import ZOOM_MIN_SECONDS
from tui.widgets.chart import TrafficChart
from tui.widgets.feed import PAGE, AlertFeed

T = TypeVar("T")
log = logging.getLogger(__name__)
ALL_PARTS = frozenset({"feed", "chart", "conversations", "status"})
GC_IDLE_SECONDS = 3.0  # without a view change, before a full garbage collection
GC_OVERDUE = 20  # full garbage collections due: run one between two views anyway
CONVERSATION_ROWS = 40  # peers or pairs shown (the biggest by bytes)
Y_LABEL_COLUMNS = 12  # what plotext's y-axis labels take from the chart's width


@dataclass(frozen=True)
class ViewRequest:
    parts: frozenset[str]
    scope: Scope
    offset: int
    columns: int
    focus: str | None
    then: frozenset[str] = frozenset()  # the parts the next step will ask for
    feed_ticket: int = 0  # (see take_feed_ticket)


@dataclass
class ViewData:
    feed: pa.Table | None = None
    feed_total: int = 0
    feed_partial: bool = False  # feed_total is a lower bound (parity alerts: see Explorer)
    feed_ticket: int = 0
    axis: Axis | None = None
    values: list[int] = field(default_factory=list)
    conversations: pa.Table | None = None
    too_long: bool = False  # a past range with more flows than index_memory allows indexing
    buckets: list[BucketState] | None = None
    newest: int | None = None
    problems: int = 0
    chart_partial: bool = False  # the chart's days before the hot window are still to come
    seconds: dict[str, float] = field(default_factory=dict)  # per part, for bench/ui.py


class ViewPump:
    """The app's reading side (see the module's docstring)."""

    def request_view(self, *parts: str) -> None:
        """Recompute ``parts`` (default: everything) on the reader thread, then show them."""
        if self._history_running and self.explorer is not None:
            self.explorer.interrupt_older()  # (asked again with the new view)
        self.requested += 1
        self._last_request = time.monotonic()
        self._settled.clear()
        self._pending.update(parts or ALL_PARTS)
        if not self._pumping and self.explorer is not None:
            self._pumping = True
            self.run_worker(self._pump(), group="view", name="view")

    async def _pump(self) -> None:
        """Compute and show what is pending until nothing is. The conversations (the slowest
        question) come in a second step, so the feed and the chart never wait for them."""
        try:
            while self._pending:
                if self._reads_flows(self._pending):
                    await self._wait_for_collector()
                serial, parts = self.requested, frozenset(self._pending)
                self._pending.clear()
                started = time.perf_counter()
                timings: dict[str, float] = {}
                first, then = parts - {"conversations"}, parts & {"conversations"}
                if first:  # (with the conversations too when they are ready by then)
                    then -= await self._show_step(first, then, timings)
                    timings["first_shown"] = time.perf_counter() - started
                if then:
                    await self._show_step(then, frozenset(), timings)
                timings["view_shown"] = time.perf_counter() - started
                if self._older_pending and not self._pending:  # (else the next round asks)
                    self._history_running = True
                    try:
                        await self._show_step(frozenset({"history"}), frozenset(), timings)
                    finally:
                        self._history_running = False
                self.last_view_parts = timings
                self.applied = serial
                if not self._pending and self.explorer is not None and not self.explorer.built:
                    await self._build_index()
        finally:
            self._pumping = False
            if self.applied >= self.requested:
                self._settled.set()

    def _reads_flows(self, parts: set[str]) -> bool:
        """Whether a round of ``parts`` reads flows (the memory-heavy work that waits for a
        busy collector): all but a feed of stored alerts (a page of it, following it)."""
        return bool(parts - {"feed"}) or (self.explorer is not None
                                          and self.explorer.feed_reads_flows(self.scope))

    async def _wait_for_collector(self) -> None:
        """While the collector this app is attached to is busy, a round of views that reads
        flows waits for it to rest, VIEW_WAIT_MAX at most (core/priority.py says why); the
        views asked for meanwhile join it, and the status bar says so. The app's start (its
        first view and index) does not wait; nor do new stored alerts (tui/new_alerts.py)
        or pages of the feed of stored alerts."""
        self._notice_poll()  # (a poll started since the sampler's last look?)
        if self.explorer is None or not self.explorer.built or self.collector_rests.is_set():
            return
        self.activity.views_wait = True
        self._show_status()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(VIEW_WAIT_MAX):
                    await self.collector_rests.wait()
        finally:
            self.activity.views_wait = False  # (no widget touched here: this may be a cancel)
        self._show_status()

    async def _build_index(self) -> None:
        """After the first view (the chart from the traffic summary, the feed, the status):
        index the hot window, then show everything again from it. Views asked for
        meanwhile wait for the reader thread and are merged into that one."""
        clock = time.perf_counter()
        try:
            await self._read(self.explorer.build)  # type: ignore[union-attr]
        except Exception as exc:  # (the summary still answers the chart)
            log.exception("indexing the flows failed")
            self.notify(visible(f"indexing the flows failed: {exc}"), title="store",
                        severity="error", markup=False)
            return
        self.index_seconds = time.perf_counter() - clock
        self.requested += 1
        self._pending.update(ALL_PARTS)

    async def _show_step(self, parts: frozenset[str], then: frozenset[str],
                         timings: dict[str, float]) -> frozenset[str]:
        """Compute and show ``parts``; returns those of ``then`` shown as well."""
        try:
            data = await self._read(self._compute, self._view_request(parts, then))
        except duckdb.InterruptException:  # (the chart's older days, stopped by a new view)
            return frozenset()
        except Exception as exc:  # a damaged segment, a full disk, a bug: say it, keep going
            log.exception("reading the view failed")
            self.notify(visible(str(exc).splitlines()[0] if str(exc) else repr(exc)),
                        title="store", severity="error", markup=False)
            return frozenset()
        self._apply(parts, data)
        timings.update(data.seconds)
        return then if data.conversations is not None else frozenset()

    def _view_request(self, parts: frozenset[str], then: frozenset[str]) -> ViewRequest:
        chart = self.query_one(TrafficChart)
        columns = max(10, chart.size.width - Y_LABEL_COLUMNS)
        focus = self.focus_address or self.scope.filter.single_address()
        offset = self.query_one(AlertFeed).page_offset
        ticket = self.take_feed_ticket() if "feed" in parts else 0
        return ViewRequest(parts, self.scope, offset, columns, focus, then, ticket)

    def _compute(self, request: ViewRequest) -> ViewData:
        """On the reader thread: everything ``request.parts`` needs, from the store. The
        slow Python work of a view is plotext drawing the chart, so the histogram comes
        first and the chart is drawn on the app's thread while the feed is read here and
        the conversations add up on a third (both without the GIL)."""
        explorer, scope, data = self.explorer, request.scope, ViewData()
        assert explorer is not None
        # New flows join the index for the chart and the status; the conversations and the
        # chart's older days are later steps of a view (they use what it saw); a feed of
        # stored alerts alone needs no flows, so a new alert shows without waiting for them.
        if request.parts & {"chart", "status"} or (
                "feed" in request.parts and explorer.feed_reads_flows(scope)):
            clock = time.perf_counter()
            explorer.refresh()
            data.seconds["refresh"] = time.perf_counter() - clock
        if "conversations" in request.then:
            clock = time.perf_counter()
            explorer.prefetch_conversations(scope, request.focus, CONVERSATION_ROWS)
            data.seconds["prefetch"] = time.perf_counter() - clock
        if "chart" in request.parts or "history" in request.parts:
            clock = time.perf_counter()
            span = _with_context(scope.range) if scope.range else explorer.span()
            if span is not None:
                data.axis = axis_for(span, request.columns)
                partial = ("history" not in request.parts
                           and explorer.histogram_is_partial(scope, data.axis))
                data.values = explorer.histogram(scope, data.axis, complete=not partial)
                data.chart_partial = partial
                self._post(self._prepare_chart, data.axis, data.values, scope.range is not None)
            data.seconds["history" if "history" in request.parts else "chart"] = (
                time.perf_counter() - clock)
        if "feed" in request.parts:
            clock = time.perf_counter()
            data.feed = explorer.feed(scope, request.offset, PAGE)
            data.feed_ticket = request.feed_ticket
            rows = data.feed.num_rows  # on the last page, the total needs no count
            last_page = rows < PAGE and (rows > 0 or request.offset == 0)
            data.feed_total = request.offset + rows if last_page else explorer.feed_count(scope)
            data.feed_partial = not last_page and explorer.feed_count_is_partial(scope)
            data.seconds["feed"] = time.perf_counter() - clock
        if "conversations" in request.parts or (
                "conversations" in request.then
                and explorer.conversations_ready(scope, request.focus, CONVERSATION_ROWS)):
            clock = time.perf_counter()
            data.conversations = explorer.conversations(scope, request.focus, CONVERSATION_ROWS)
            data.too_long = explorer.range_too_long(scope)
            data.seconds["conversations"] = time.perf_counter() - clock
        if "status" in request.parts:
            clock = time.perf_counter()
            data.buckets = explorer.bucket_states()
            span = explorer.span()
            data.newest = span.end - 1 if span else None
            data.problems = explorer.problem_count()
            data.seconds["status"] = time.perf_counter() - clock
        return data

    def _post(self, function: Callable[..., Any], *args: Any) -> None:
        """From the reader thread: run ``function`` on the app's thread, without waiting."""
        assert self._ui_loop is not None
        with contextlib.suppress(RuntimeError):  # (the loop closed: the app has ended)
            self._ui_loop.call_soon_threadsafe(function, *args)

    def _background(self, what: str, work: Awaitable[Any]) -> None:
        """Run ``work`` as a worker whose failure is shown and logged, never fatal."""
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.exception("%s failed", what)
                self.notify(visible(f"{what} failed: {exc}"), severity="error", markup=False)

        self.run_worker(guarded(), group=what)

    async def _read(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, function, *args)

    async def wait_settled(self, timeout: float = 30.0) -> None:
        """Until every requested view is shown (for tests and the UI benchmark)."""
        await asyncio.wait_for(self._settled.wait(), timeout)

    def _collect_garbage_when_idle(self) -> None:
        """The garbage collector's full passes took 50-140 ms, at moments set by allocation
        counts: often in the middle of a view change. Everything loaded so far (modules,
        widgets, styles) lives as long as the app and is frozen out of them; the young
        generations are still collected as usual; a full pass is due when the middle one
        has been collected as often as would trigger one, and runs once no view has been
        asked for during GC_IDLE_SECONDS, or, when views keep coming (live data), between
        two of them once GC_OVERDUE times due. (Undone on unmount: the settings are the
        process's.)"""
        gc.freeze()
        self._gc_threshold = gc.get_threshold()
        young, middle, _ = self._gc_threshold
        gc.set_threshold(young, middle, 1 << 30)  # (no automatic full pass)
        self._gc_passes = gc.get_stats()[1]["collections"]
        self.set_interval(GC_IDLE_SECONDS / 3, self._full_collection)

    def _full_collection(self) -> None:
        assert self._gc_threshold is not None
        due = (gc.get_stats()[1]["collections"] - self._gc_passes) / self._gc_threshold[2]
        idle = time.monotonic() - self._last_request >= GC_IDLE_SECONDS
        if self._settled.is_set() and ((due >= 1 and idle) or due >= GC_OVERDUE):
            gc.collect()
            self._gc_passes = gc.get_stats()[1]["collections"]


def _with_context(span: TimeRange) -> TimeRange:
    """A range shown with some time around it, so a one-minute peak is not one wide bar."""
    pad = max(0, ZOOM_MIN_SECONDS - (span.end - span.start)) // 2
    return TimeRange(span.start - pad, span.end + pad)
