"""The vpcwatch app: alert feed, bytes-over-time chart with peaks, conversations, filters.

The collector (``core``) runs in the app's event loop and reports through the events of
``core.events``, which arrive here as :class:`CoreMessage`. Everything the screen shows is
read by one :class:`core.explorer.Explorer` on a reader thread, so the store's writer and the
keyboard never wait for each other. A change of scope (filter, time range, level) asks for a
new view; the view pump recomputes what is stale and applies it in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import duckdb
import pyarrow as pa
from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Click, Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from core.alerts import alert_documents
from core.collector import Collector
from core.config import Config
from core.events import (
    AlertsChanged,
    BatchCommitted,
    CoreEvent,
    PollFailed,
    PollFinished,
    PollStarted,
    PrefixBlocked,
)
from core.explorer import BucketState, Explorer, ReadOnlyError, Scope
from core.export import export_rows
from core.filters import Filter, FilterError, parse_filter
from core.store import Store
from core.timeline import Axis, Peak, TimeRange, axis_for, find_peaks
from tui.cells import clock, plain, zone_name
from tui.screens import HelpScreen, SqlScreen, TableScreen
from tui.widgets.chart import ChartState, Timeline, TrafficChart
from tui.widgets.conversations import Conversations
from tui.widgets.feed import PAGE, AlertFeed, detail
from tui.widgets.rowtable import RowTable
from tui.widgets.status import Activity, StatusBar

T = TypeVar("T")
log = logging.getLogger(__name__)
ALL_PARTS = frozenset({"feed", "chart", "conversations", "status"})
AUTO_REFRESH_SECONDS = 2.0  # new data redraws at most this often
STATUS_TICK_SECONDS = 5.0
GC_IDLE_SECONDS = 3.0  # without a view change, before a full garbage collection
GC_OVERDUE = 20  # full garbage collections due: run one between two views anyway
CONVERSATION_ROWS = 40  # peers or pairs shown (the biggest by bytes)
DEFAULT_MIN_LEVEL = 5  # hides the Wazuh-parity per-flow alerts (3, 4) until '-'
ZOOM_MIN_SECONDS = 1800  # a range is shown in at least this much time
Y_LABEL_COLUMNS = 12  # what plotext's y-axis labels take from the chart's width

# (key, action, footer label ("" = not in the footer), help): bindings and help come from here.
KEYS: list[tuple[str, str, str, str]] = [
    ("slash", "open_filter", "filter", "filter bar: IP, CIDR, src:, dst:, port:, proto:, "
     "action:, rule:, level>=N, eni:, vpc:, acct:, !negate"),
    ("escape", "back", "", "close the filter bar / clear the range / clear the filter"),
    ("left", "move(-1)", "", "chart: cursor one bucket earlier"),
    ("right", "move(1)", "", "chart: cursor one bucket later"),
    ("shift+left", "widen(-1)", "", "chart: widen the selection earlier"),
    ("shift+right", "widen(1)", "", "chart: widen the selection later"),
    ("left_square_bracket", "peak(-1)", "", "chart: previous peak"),
    ("right_square_bracket", "peak(1)", "peak", "chart: next peak"),
    ("enter", "apply_range", "", "chart: apply the selection as the time range "
     "(feed: show the alert's conversations; conversations: raw flows)"),
    ("plus", "level(1)", "level", "raise the minimum alert level"),
    ("minus", "level(-1)", "", "lower the minimum alert level"),
    ("f", "follow", "follow", "follow new alerts (also End)"),
    ("end", "follow", "", "follow new alerts"),
    ("h", "columns(-1)", "", "feed or conversations (the focused one): a column left"),
    ("l", "columns(1)", "", "feed or conversations (the focused one): a column right"),
    ("greater_than_sign", "page(1)", "", "feed: older page"),
    ("less_than_sign", "page(-1)", "", "feed: newer page"),
    ("a", "conversation_filter", "", "conversations: filter on the selected pair"),
    ("x", "other_address", "", "conversations: the selected alert's other address"),
    ("z", "toggle_zone", "", "times in UTC or local time"),
    ("e", "export('csv')", "export", "export the feed (or the focused conversations) to CSV"),
    ("E", "export('json')", "", "export the same to JSON lines"),
    ("c", "copy", "", "copy the selected row (OSC 52, and a file)"),
    ("colon", "sql", "sql", "read-only SQL on the store"),
    ("exclamation_mark", "problems", "", "problems: quarantined objects, denied prefixes, "
     "errors"),
    ("tab", "focus_next", "", "next pane"),
    ("p", "command_palette", "", "command palette"),
    ("question_mark", "help", "help", "this help (also F1)"),
    ("f1", "help", "", "this help"),
    ("q", "quit", "quit", "quit"),
]
_LABELS = {"slash": "/", "left_square_bracket": "[", "right_square_bracket": "]", "plus": "+",
           "minus": "-", "colon": ":", "question_mark": "?", "exclamation_mark": "!",
           "greater_than_sign": ">", "less_than_sign": "<", "left": "←", "right": "→",
           "shift+left": "shift+←", "shift+right": "shift+→", "escape": "Esc", "enter": "Enter",
           "end": "End", "tab": "Tab", "f1": "F1"}


def key_label(key: str) -> str:
    return _LABELS.get(key, key)


class CoreMessage(Message):
    """An event of the core (``core.events``), delivered on the app's message queue."""

    def __init__(self, event: CoreEvent) -> None:
        super().__init__()
        self.event = event


class Chip(Static):
    """A removable indicator ("12:03–12:08 UTC ✕"); a click removes what it shows."""

    class Removed(Message):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind

    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.kind = kind

    def on_click(self, event: Click) -> None:
        self.post_message(self.Removed(self.kind))


@dataclass(frozen=True)
class ViewRequest:
    parts: frozenset[str]
    scope: Scope
    offset: int
    columns: int
    focus: str | None
    then: frozenset[str] = frozenset()  # the parts the next step will ask for


@dataclass
class ViewData:
    feed: pa.Table | None = None
    feed_total: int = 0
    feed_partial: bool = False  # feed_total is a lower bound (parity alerts: see Explorer)
    axis: Axis | None = None
    values: list[int] = field(default_factory=list)
    conversations: pa.Table | None = None
    buckets: list[BucketState] | None = None
    newest: int | None = None
    problems: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per part, for bench/ui.py


class VpcwatchApp(App[int]):
    TITLE = "vpcwatch"
    CSS = """
    StatusBar { height: auto; max-height: 4; background: $panel; padding: 0 1; }
    #filter-input { display: none; height: 3; }
    #filter-input.open { display: block; }
    #filter-error { height: auto; color: $error; padding: 0 1; }
    #chips { height: 1; padding: 0 1; }
    Chip { width: auto; margin-right: 2; background: $boost; }
    #level-chip, #notes { width: auto; margin-right: 2; }
    TrafficChart { height: 30%; min-height: 6; }
    TrafficChart:focus { border-left: vkey $accent; }
    #lower { height: 1fr; }
    #feed-box { width: 3fr; }
    #conversations-box { width: 2fr; }
    #feed-box { margin-right: 1; }
    #lower.narrow { layout: vertical; }
    #lower.narrow #feed-box { margin-right: 0; }
    #lower.narrow RowTable { scrollbar-size-horizontal: 0; }
    #lower.narrow #feed-box { width: 1fr; height: 3fr; }
    #lower.narrow #conversations-box { width: 1fr; height: 2fr; }
    .title { height: 1; background: $panel; padding: 0 1; }
    #detail { height: 1; padding: 0 1; color: $text-muted; }
    HelpScreen, TableScreen, SqlScreen { align: center middle; }
    #help, .modal { width: 90%; height: 90%; background: $surface; border: round $accent;
                    padding: 0 1; }
    #help-text { height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, action, label or description, show=bool(label), key_display=key_label(key),
                priority=key in {"left", "right", "shift+left", "shift+right"})
        for key, action, label, description in KEYS
    ]

    def __init__(self, store: Store, config: Config | None = None, *,
                 before_poll: Callable[[], Awaitable[None]] | None = None,
                 collect: bool = True, export_dir: Path | None = None,
                 now: Callable[[], float] = time.time, zone: tzinfo = UTC,
                 min_level: int = DEFAULT_MIN_LEVEL):
        super().__init__()
        self.store, self.config = store, config
        self.before_poll, self.collect = before_poll, collect
        self.export_dir = export_dir or Path.cwd()
        self.now, self.zone = now, zone
        self.scope = Scope(min_level=min_level)
        self.focus_address: str | None = None  # the selected alert's address
        self.activity = Activity()
        self.buckets: list[BucketState] = []
        self.chart = ChartState()
        self.cursor_t: int | None = None  # the chart cursor and selection, as times
        self.selection: TimeRange | None = None
        self._anchor_t: int | None = None
        self.collector: Collector | None = None
        self._stop = asyncio.Event()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="vpcwatch-reader")
        self._ui_loop: asyncio.AbstractEventLoop | None = None  # (the reader posts to it)
        self.explorer: Explorer | None = None
        self._pending: set[str] = set()
        self._pumping = False
        self.requested = 0  # view requests made…
        self.applied = 0  # …and applied (tests and bench/ui.py wait on these)
        self.last_view_parts: dict[str, float] = {}
        self._settled = asyncio.Event()
        self._gc_threshold: tuple[int, int, int] | None = None  # (while the app runs)
        self._gc_passes = 0  # middle-generation collections at the last full one
        self._last_request = 0.0  # monotonic time of the last view request
        self.selected_alert: dict[str, Any] | None = None
        self.last_export: Path | None = None
        self._last_auto = 0.0
        self._auto_timer: Any = None

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Input(placeholder="filter, e.g. 10.0.1.5 port:22 !action:accept "
                    "(Enter applies, Esc discards)", id="filter-input")
        yield Static("", id="filter-error")
        with Horizontal(id="chips"):
            yield Chip("filter", id="filter-chip")
            yield Chip("range", id="range-chip")
            yield Static("", id="level-chip")
            yield Static("", id="notes")
        yield TrafficChart(id="chart")
        yield Timeline(id="timeline")
        with Horizontal(id="lower"):
            with Vertical(id="feed-box"):
                yield Static("", id="feed-title", classes="title")
                yield AlertFeed(id="feed")
                yield Static("", id="detail")
            with Vertical(id="conversations-box"):
                yield Static("", id="conversations-title", classes="title")
                yield Conversations(id="conversations")
        yield Footer()

    async def on_mount(self) -> None:
        self._ui_loop = asyncio.get_running_loop()
        self._show_chips()
        self.query_one(AlertFeed).focus()
        self.query_one("#feed-title", Static).update(Text("reading the store…", style="dim"))
        self.set_interval(STATUS_TICK_SECONDS, self._show_status)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)
        if self.collect and self.config is not None:
            self.collector = Collector(self.config, self.store, self._publish)
            self.run_worker(self._collect(), group="collector", name="collector")
        self.explorer = await self._read(Explorer, self.store)  # builds the traffic index
        self._collect_garbage_when_idle()
        self.request_view()

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

    def on_unmount(self) -> None:
        self._stop.set()
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            gc.unfreeze()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def close_background(self) -> None:
        """Stop the collector's threads and the reader (after the app has exited)."""
        self._stop.set()
        if self.collector is not None:
            self.collector.close()
        if self.explorer is not None:
            self._reader.submit(self.explorer.close).result()
        self._reader.shutdown(wait=True)

    def on_resize(self, event: Resize) -> None:
        self.query_one("#lower").set_class(event.size.width < 140, "narrow")
        self.request_view("chart")

    # -- the core -----------------------------------------------------------------------

    async def _collect(self) -> None:
        assert self.collector is not None
        await self.collector.run(self._stop, self.before_poll)

    def _publish(self, event: CoreEvent) -> None:
        self.post_message(CoreMessage(event))

    def on_core_message(self, message: CoreMessage) -> None:
        event, activity = message.event, self.activity
        if isinstance(event, PollStarted):
            activity.polling = True
        elif isinstance(event, BatchCommitted):
            self._data_changed()
        elif isinstance(event, AlertsChanged) and event.alerts is not None:
            self._alerts_changed(event.alerts.num_rows)
        elif isinstance(event, PrefixBlocked):
            activity.add_error(f"{event.bucket}/{event.prefix}: {event.error}")
        elif isinstance(event, PollFinished):
            activity.polling = False
            activity.last_poll, activity.next_poll = event.at, event.next_poll
            summary = event.summary
            activity.records_per_second = summary.records / max(summary.seconds, 1e-3)
            for error in summary.errors:
                activity.add_error(error)
            self.request_view("status")
        elif isinstance(event, PollFailed):
            activity.polling = False
            activity.add_error(f"poll failed: {event.error}")
        self._show_status()

    def _alerts_changed(self, count: int) -> None:
        feed = self.query_one(AlertFeed)
        if feed.following and self.scope.range is None and feed.page_offset == 0:
            self._data_changed("feed")
        else:
            feed.new_alerts += count
            self._show_feed_title()

    def _data_changed(self, *parts: str) -> None:
        """New data: redraw at most every AUTO_REFRESH_SECONDS."""
        self._pending.update(parts or ("chart", "conversations", "status"))
        wait = AUTO_REFRESH_SECONDS - (time.monotonic() - self._last_auto)
        if wait <= 0:
            self._last_auto = time.monotonic()
            self.request_view(*self._pending)
        elif self._auto_timer is None:
            self._auto_timer = self.set_timer(wait, self._auto_refresh)

    def _auto_refresh(self) -> None:
        self._auto_timer = None
        self._last_auto = time.monotonic()
        self.request_view(*self._pending)

    # -- the view pump ------------------------------------------------------------------

    def request_view(self, *parts: str) -> None:
        """Recompute ``parts`` (default: everything) on the reader thread, then show them."""
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
                self.last_view_parts = timings
                self.applied = serial
        finally:
            self._pumping = False
            if self.applied >= self.requested:
                self._settled.set()

    async def _show_step(self, parts: frozenset[str], then: frozenset[str],
                         timings: dict[str, float]) -> frozenset[str]:
        """Compute and show ``parts``; returns those of ``then`` shown as well."""
        try:
            data = await self._read(self._compute, self._view_request(parts, then))
        except Exception as exc:  # a damaged segment, a full disk, a bug: say it, keep going
            log.exception("reading the view failed")
            self.notify(str(exc).splitlines()[0] if str(exc) else repr(exc), title="store",
                        severity="error", markup=False)
            return frozenset()
        self._apply(parts, data)
        timings.update(data.seconds)
        return then if data.conversations is not None else frozenset()

    def _view_request(self, parts: frozenset[str], then: frozenset[str]) -> ViewRequest:
        chart = self.query_one(TrafficChart)
        columns = max(10, chart.size.width - Y_LABEL_COLUMNS)
        focus = self.focus_address or self.scope.filter.single_address()
        offset = self.query_one(AlertFeed).page_offset
        return ViewRequest(parts, self.scope, offset, columns, focus, then)

    def _compute(self, request: ViewRequest) -> ViewData:
        """On the reader thread: everything ``request.parts`` needs, from the store. The
        slow Python work of a view is plotext drawing the chart, so the histogram comes
        first and the chart is drawn on the app's thread while the feed is read here and
        the conversations add up on a third (both without the GIL)."""
        explorer, scope, data = self.explorer, request.scope, ViewData()
        assert explorer is not None
        if request.parts != {"conversations"}:  # (the second step reads what the first saw)
            clock = time.perf_counter()
            explorer.refresh()
            data.seconds["refresh"] = time.perf_counter() - clock
        if "conversations" in request.then:
            clock = time.perf_counter()
            explorer.prefetch_conversations(scope, request.focus, CONVERSATION_ROWS)
            data.seconds["prefetch"] = time.perf_counter() - clock
        if "chart" in request.parts:
            clock = time.perf_counter()
            span = _with_context(scope.range) if scope.range else explorer.span()
            if span is not None:
                data.axis = axis_for(span, request.columns)
                data.values = explorer.histogram(scope, data.axis)
                self._post(self._prepare_chart, data.axis, data.values, scope.range is not None)
            data.seconds["chart"] = time.perf_counter() - clock
        if "feed" in request.parts:
            clock = time.perf_counter()
            data.feed = explorer.feed(scope, request.offset, PAGE)
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

    def _prepare_chart(self, axis: Axis, values: list[int], zoomed: bool) -> None:
        """Draw the chart that ``_apply`` will show (see ``TrafficChart.prepare``)."""
        state = ChartState(axis, values, find_peaks(values), zoomed=zoomed)
        with contextlib.suppress(NoMatches):  # (posted as the app closed)
            self.query_one(TrafficChart).prepare(self._marked(state), self.zone)

    def _apply(self, parts: frozenset[str], data: ViewData) -> None:
        if data.feed is not None:
            feed = self.query_one(AlertFeed)
            feed.show(data.feed, data.feed_total, feed.page_offset, self.zone)
            feed.total_partial = data.feed_partial
            if feed.following:
                feed.new_alerts = 0
            self._show_feed_title()
            self._show_detail()
        if "chart" in parts:
            self.chart = ChartState(data.axis, data.values, find_peaks(data.values),
                                    zoomed=self.scope.range is not None)
            self._show_chart()
        if data.conversations is not None:
            self.query_one(Conversations).show(data.conversations, self.zone)
            self._show_conversations_title()
        if data.buckets is not None:
            self.buckets = data.buckets
            self.activity.newest_record = data.newest
            self.activity.problems = data.problems
            self._show_status()

    def _background(self, what: str, work: Awaitable[Any]) -> None:
        """Run ``work`` as a worker whose failure is shown and logged, never fatal."""
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.exception("%s failed", what)
                self.notify(f"{what} failed: {exc}", severity="error", markup=False)

        self.run_worker(guarded(), group=what)

    async def _read(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, function, *args)

    async def wait_settled(self, timeout: float = 30.0) -> None:
        """Until every requested view is shown (for tests and the UI benchmark)."""
        await asyncio.wait_for(self._settled.wait(), timeout)

    # -- showing ------------------------------------------------------------------------

    def _show_status(self) -> None:
        self.query_one(StatusBar).show(self.buckets, self.activity, self.zone, self.now())

    def _show_feed_title(self) -> None:
        feed = self.query_one(AlertFeed)
        first = feed.page_offset + 1 if feed.rows_shown else 0
        last = feed.page_offset + len(feed.rows_shown)
        more = "+" if feed.total_partial else ""  # (older parity alerts not derived yet)
        text = Text(f"Alerts {first:,}–{last:,} of {feed.total:,}{more}", style="bold")
        if feed.following and self.scope.range is None:
            text.append("  following", style="green")
        elif feed.new_alerts:
            text.append(f"  {feed.new_alerts:,} new (End/f follows)", style="yellow")
        self.query_one("#feed-title", Static).update(text, layout=False)  # one fixed row

    def _show_detail(self) -> None:
        self.query_one("#detail", Static).update(detail(self.selected_alert, self.zone),
                                                 layout=False)

    def _show_conversations_title(self) -> None:
        focus = self.focus_address or self.scope.filter.single_address()
        text = Text("Conversations of ", style="bold") if focus else Text("Top talkers",
                                                                          style="bold")
        if focus:
            text.append(plain(focus, 39))
        if self.scope.range:
            text.append(f"  in {self._range_label(self.scope.range)}")
        text.append("  (Enter: flows, a: filter)", style="dim")
        self.query_one("#conversations-title", Static).update(text, layout=False)

    def _show_chart(self) -> None:
        self.chart = self._marked(self.chart)
        self.query_one(TrafficChart).show(self.chart, self.zone)
        self.query_one(Timeline).show(self.chart)

    def _marked(self, state: ChartState) -> ChartState:
        """``state`` with the cursor and the selection as buckets of its axis."""
        axis, cursor, selection = state.axis, None, None
        if axis is not None and self.cursor_t is not None:
            cursor = axis.index(self.cursor_t) if axis.start <= self.cursor_t < axis.end else None
        if axis is not None and self.selection is not None:
            first = axis.index(max(self.selection.start, axis.start))
            last = axis.index(min(self.selection.end, axis.end) - 1)
            selection = (first, last) if self.selection.end > axis.start else None
        return replace(state, cursor=cursor, selection=selection)

    def _show_chips(self) -> None:
        scope = self.scope
        filter_chip = self.query_one("#filter-chip", Chip)
        filter_chip.display = not scope.filter.empty
        _set_text(filter_chip, Text("filter: ").append(plain(scope.filter.text, 60)).append(" ✕"))
        range_chip = self.query_one("#range-chip", Chip)
        range_chip.display = scope.range is not None
        if scope.range:
            _set_text(range_chip, Text(f"{self._range_label(scope.range)} ✕"))
        _set_text(self.query_one("#level-chip", Static),
                  Text(f"level ≥ {scope.min_level} (+/-)"))
        _set_text(self.query_one("#notes", Static),
                  Text("; ".join(scope.filter.notes()), style="dim"))

    def _range_label(self, span: TimeRange) -> str:
        return (f"{clock(span.start, self.zone, False)}–{clock(span.end, self.zone, False)} "
                f"{zone_name(self.zone)}")

    # -- scope changes ------------------------------------------------------------------

    def set_scope(self, **changes: Any) -> None:
        self.scope = replace(self.scope, **changes)
        feed = self.query_one(AlertFeed)
        feed.page_offset, feed.following, feed.new_alerts = 0, True, 0
        self._show_chips()
        self.request_view("feed", "chart", "conversations")  # (the buckets' state is not scoped)

    def apply_filter_text(self, text: str) -> bool:
        """Parse and apply; on a bad term show why and change nothing."""
        try:
            new = parse_filter(text)
        except FilterError as exc:
            self.query_one("#filter-error", Static).update(Text(str(exc)))
            return False
        self.query_one("#filter-error", Static).update("")
        self.focus_address = self.selected_alert = None
        self.set_scope(filter=new)
        return True

    def action_open_filter(self, text: str | None = None) -> None:
        box = self.query_one("#filter-input", Input)
        box.value = self.scope.filter.text if text is None else text
        box.add_class("open")
        box.focus()

    def _close_filter(self) -> None:
        box = self.query_one("#filter-input", Input)
        box.remove_class("open")
        self.query_one("#filter-error", Static).update("")
        self.query_one(AlertFeed).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter-input":
            return
        try:
            parse_filter(event.value)
            message = ""
        except FilterError as exc:
            message = str(exc)
        self.query_one("#filter-error", Static).update(Text(message))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter-input" and self.apply_filter_text(event.value):
            self._close_filter()

    def action_back(self) -> None:
        box = self.query_one("#filter-input", Input)
        if box.has_class("open"):
            self._close_filter()
        elif self.scope.range is not None:
            self.set_scope(range=None)
        elif not self.scope.filter.empty:
            self.set_scope(filter=Filter())
        elif self.focus_address is not None:
            self.focus_address = self.selected_alert = None
            self.request_view("conversations")
            self._show_detail()

    def on_chip_removed(self, message: Chip.Removed) -> None:
        if message.kind == "range":
            self.set_scope(range=None)
        else:
            self.set_scope(filter=Filter())

    def action_level(self, step: int) -> None:
        self.set_scope(min_level=min(15, max(0, self.scope.min_level + step)))

    def action_toggle_zone(self) -> None:
        local = datetime.now().astimezone().tzinfo
        self.zone = UTC if self.zone is not UTC else (local or UTC)
        self._show_chips()
        self.request_view()

    # -- the chart ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The arrows are the chart's everywhere except in a text field (and under a modal
        screen), where they move the text cursor."""
        if action in ("move", "widen"):
            return not isinstance(self.focused, Input) and len(self.screen_stack) == 1
        return True

    def _cursor_index(self) -> int | None:
        axis = self.chart.axis
        if axis is None:
            return None
        return self.chart.cursor if self.chart.cursor is not None else axis.count - 1

    def _set_cursor(self, index: int, first: int | None = None, last: int | None = None
                    ) -> None:
        axis = self.chart.axis
        assert axis is not None
        index = min(axis.count - 1, max(0, index))
        self.cursor_t = axis.start + index * axis.size
        low = index if first is None else first
        high = index if last is None else last
        self.selection = axis.bucket_range(low, high)
        self.query_one(TrafficChart).focus()
        self._show_chart()

    def action_move(self, step: int) -> None:
        index = self._cursor_index()
        if index is not None:
            self._anchor_t = None
            self._set_cursor(index + (step if self.chart.cursor is not None else 0))

    def action_widen(self, step: int) -> None:
        index, axis = self._cursor_index(), self.chart.axis
        if index is None or axis is None:
            return
        if self._anchor_t is None:
            self._anchor_t = axis.start + index * axis.size
        new = min(axis.count - 1, max(0, index + step))
        self._set_cursor(new, min(new, axis.index(self._anchor_t)),
                         max(new, axis.index(self._anchor_t)))

    def action_peak(self, step: int) -> None:
        peaks, index = self.chart.peaks, self._cursor_index()
        if not peaks or index is None:
            self.notify("no peak in the chart", markup=False)
            return
        if self.chart.cursor is None:
            index = -1 if step > 0 else self.chart.axis.count if self.chart.axis else 0
        later = [p for p in peaks if p.top > index] if step > 0 else []
        earlier = [p for p in peaks if p.top < index] if step < 0 else []
        chosen = later[0] if later else earlier[-1] if earlier else None
        if chosen is None:
            self.notify("no further peak", markup=False)
            return
        self._select_peak(chosen)

    def _select_peak(self, peak: Peak) -> None:
        self._anchor_t = None
        self._set_cursor(peak.top, peak.first, peak.last)

    def action_biggest_peak(self) -> None:
        if self.chart.peaks:
            self._select_peak(max(self.chart.peaks, key=lambda p: p.bytes))

    def action_apply_range(self) -> None:
        if self.selection is not None:
            self.set_scope(range=self.selection)

    def on_timeline_picked(self, message: Timeline.Picked) -> None:
        axis = self.chart.axis
        if axis is not None:
            self._set_cursor(message.last, message.first, message.last)
            self.action_apply_range()

    # -- feed and conversations ---------------------------------------------------------

    def on_row_table_selected(self, event: RowTable.Selected) -> None:
        if isinstance(event.table, AlertFeed):
            row = event.table.rows_shown[event.index]
            event.table.stop_following()
            if row is None:
                return
            self.selected_alert = row
            self._show_detail()
            if row["source"] == "cloudtrail":
                self._background("drill", self._show_events(row))
            else:
                self.focus_address = row["srcaddr"] or row["dstaddr"]
                self.request_view("conversations")
        elif isinstance(event.table, Conversations):
            self._drill_down(event.table.rows_shown[event.index])

    def action_other_address(self) -> None:
        alert = self.selected_alert
        if alert is None or not (alert["srcaddr"] and alert["dstaddr"]):
            return
        self.focus_address = (alert["dstaddr"] if self.focus_address == alert["srcaddr"]
                              else alert["srcaddr"])
        self.request_view("conversations")

    def action_follow(self) -> None:
        feed = self.query_one(AlertFeed)
        feed.following, feed.page_offset, feed.new_alerts = True, 0, 0
        self.request_view("feed")

    def action_columns(self, step: int) -> None:
        focused = self.focused
        table = focused if isinstance(focused, RowTable) else self.query_one(AlertFeed)
        table.scroll_columns(step)

    def action_page(self, step: int) -> None:
        feed = self.query_one(AlertFeed)
        offset = feed.page_offset + step * PAGE
        if offset >= 0 and (offset < max(feed.total, 1) or feed.total_partial):
            feed.page_offset, feed.following = offset, offset == 0 and feed.following
            self.request_view("feed")

    def action_conversation_filter(self) -> None:
        row = self.query_one(Conversations).selected
        if row is not None:
            self.apply_filter_text(f"{row['address']} {row['peer']}")

    def _drill_down(self, row: dict[str, Any] | None) -> None:
        if row is not None:
            self._background("drill", self._show_flows(row["address"], row["peer"]))

    async def _show_flows(self, address: str, peer: str) -> None:
        assert self.explorer is not None
        flows = await self._read(self.explorer.flows_between, self.scope, address, peer)
        title = Text("Flows between ").append(plain(address, 39)).append(" and ").append(
            plain(peer, 39)).append(f" ({flows.num_rows} newest; Esc closes)")
        await self.push_screen(TableScreen(title, flows))

    async def _show_events(self, alert: dict[str, Any]) -> None:
        assert self.explorer is not None
        events = await self._read(self.explorer.events_of, alert)
        title = Text("CloudTrail events of ").append(plain(alert["title"], 120)).append(
            " (Esc closes)")
        await self.push_screen(TableScreen(title, events))

    # -- export, copy, SQL, problems, help ----------------------------------------------

    def action_export(self, fmt: str) -> None:
        self._background("export", self._export(fmt))

    async def _export(self, fmt: str) -> Path:
        explorer = self.explorer
        assert explorer is not None
        if self.focused is self.query_one(Conversations):
            rows, stem = self.query_one(Conversations).rows_shown, "vpcwatch-conversations"
        else:
            table = await self._read(explorer.feed, self.scope, 0, 10_000_000)
            rows, stem = alert_documents(table), "vpcwatch-alerts"
        path = await asyncio.to_thread(export_rows, rows, self.export_dir, stem, fmt)
        self.notify(f"{len(rows):,} rows written to {path}", title="export", markup=False)
        self.last_export = path
        return path

    def action_copy(self) -> None:
        table = self.focused if isinstance(self.focused, Conversations) else self.query_one(
            AlertFeed)
        row = table.selected  # type: ignore[union-attr]
        if row is None:
            return
        text = "\t".join("" if v is None else str(v) for v in row.values())
        self.copy_to_clipboard(text)  # OSC 52: base64, so the row's text cannot escape it
        path = self.export_dir / "vpcwatch-copied.txt"
        path.write_text(text + "\n", encoding="utf-8")
        self.notify(f"copied (OSC 52); also written to {path}", markup=False)

    def action_sql(self) -> None:
        screen = SqlScreen(lambda text: self._background("sql", self._sql(screen, text)))
        self.push_screen(screen)

    async def _sql(self, screen: SqlScreen, text: str) -> None:
        assert self.explorer is not None
        try:
            result = await self._read(self.explorer.read_only_sql, text)
        except (ReadOnlyError, duckdb.Error) as exc:
            screen.show(None, str(exc).splitlines()[0] if str(exc) else repr(exc))
            return
        screen.show(result, None)

    def action_problems(self) -> None:
        self._background("problems", self._problems())

    async def _problems(self) -> None:
        assert self.explorer is not None
        table = await self._read(self.explorer.problems)
        rows = table.to_pylist() + [{"bucket": "", "key": "", "status": "error", "error": e,
                                     "updated": None} for e in self.activity.errors]
        data = pa.Table.from_pylist(rows) if rows else table
        await self.push_screen(TableScreen(Text(f"{len(rows)} problems (Esc closes)"), data))

    def action_help(self) -> None:
        self.push_screen(HelpScreen([(key_label(k), d) for k, _, _, d in KEYS]))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Filter by IP…", "open the filter bar", self.action_open_filter)
        yield SystemCommand("Jump to biggest peak", "select the chart's biggest peak",
                            self.action_biggest_peak)
        yield SystemCommand("Export view… (CSV)", "the feed, or the focused conversations",
                            lambda: self.action_export("csv"))
        yield SystemCommand("Export view… (JSON)", "the feed, or the focused conversations",
                            lambda: self.action_export("json"))
        yield SystemCommand("SQL on the store…", "read-only", self.action_sql)
        yield SystemCommand("Problems", "quarantined objects, denied prefixes, errors",
                            self.action_problems)


def _set_text(widget: Static, text: Text) -> None:
    """Update only on a change: an update measures the widget and lays the screen out."""
    if widget.content != text:
        widget.update(text)


def _with_context(span: TimeRange) -> TimeRange:
    """A range shown with some time around it, so a one-minute peak is not one wide bar."""
    pad = max(0, ZOOM_MIN_SECONDS - (span.end - span.start)) // 2
    return TimeRange(span.start - pad, span.end + pad)


def run_app(store: Store, config: Config | None, *,
            before_poll: Callable[[], Awaitable[None]] | None = None, mouse: bool = True) -> int:
    """Run the app in this terminal until the user quits (or SIGHUP); stop the pollers."""
    app = VpcwatchApp(store, config, before_poll=before_poll)
    try:
        app.run(mouse=mouse)
    finally:
        app.close_background()
    return app.return_code or 0
