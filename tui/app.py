"""The vpcwatch app: alert feed, bytes-over-time chart with peaks, conversations, filters.

The collector (``core``) runs in the app's event loop and reports through the events of
``core.events``, which arrive here as :class:`CoreMessage`. Everything the screen shows is
read by one :class:`core.explorer.Explorer` on a reader thread (``tui.view_pump``), so the
store's writer and the keyboard never wait for each other. This module lays the screen out,
shows what the pump read and changes the scope; the keys of the chart (``tui.chart_keys``),
of the feed and conversations (``tui.feed_keys``) and the tools (``tui.tools``: export,
copy, SQL, problems, help) have modules of their own; the key table is ``tui.keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Resize
from textual.message import Message
from textual.widgets import Footer, Input, Static

from core.collector import Collector
from core.config import HOT_WINDOW, INDEX_MEMORY, Config
from core.events import (
    AlertsChanged,
    BatchCommitted,
    CoreEvent,
    PollFailed,
    PollFinished,
    PollStarted,
    PrefixBlocked,
)
from core.explorer import BucketState, Explorer, Scope
from core.priority import CollectorLoad, follow_yield
from core.sandbox import Sandbox
from core.store import Store
from core.store.publication import StatusWatch
from core.timeline import Axis, TimeRange, find_peaks
from tui.attach import LOAD_SECONDS, Attachment
from tui.cells import plain
from tui.chart_keys import ChartKeys
from tui.explain_view import ExplainKeys
from tui.feed_keys import FeedKeys
from tui.keys import KEYS, key_label
from tui.new_alerts import NewAlerts
from tui.scope_keys import ScopeKeys
from tui.tools import Tools
from tui.view_pump import ViewData, ViewPump
from tui.widgets.chart import ChartState, Timeline, TrafficChart
from tui.widgets.chip import Chip
from tui.widgets.conversations import Conversations
from tui.widgets.feed import AlertFeed, detail
from tui.widgets.status import Activity, StatusBar

AUTO_REFRESH_SECONDS = 2.0  # new data redraws at most this often
STATUS_TICK_SECONDS = 5.0
DEFAULT_MIN_LEVEL = 5  # hides the Wazuh-parity per-flow alerts (3, 4) until '-'

class CoreMessage(Message):
    """An event of the core (``core.events``), delivered on the app's message queue."""

    def __init__(self, event: CoreEvent) -> None:
        super().__init__()
        self.event = event


class VpcwatchApp(ChartKeys, ExplainKeys, FeedKeys, NewAlerts, ScopeKeys, Tools, ViewPump,
                  Attachment, App[int]):
    TITLE = "vpcwatch"
    CSS_PATH = "app.tcss"
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
        """``store`` attached to a running collector (``store.attached_to``): the app
        follows it instead of collecting."""
        super().__init__()
        self.store, self.config = store, config
        self.hot_seconds = config.general.hot_window if config else HOT_WINDOW
        self.index_memory = config.general.index_memory if config else INDEX_MEMORY
        self._range_too_long = False  # (see ViewData.too_long)
        self.before_poll, self.collect = before_poll, collect
        self.export_dir = export_dir or Path.cwd()
        self.now, self.zone = now, zone
        self.scope = Scope(min_level=min_level)
        self.focus_address: str | None = None  # the selected alert's address
        self.activity = Activity(attached=store.attached_to)
        self.buckets: list[BucketState] = []
        self.chart = ChartState()
        self.whole_axis: Axis | None = None  # the chart's axis without a range
        self.cursor_t: int | None = None  # the chart cursor and selection, as times
        self.selection: TimeRange | None = None
        self._anchor_t: int | None = None
        self.collector: Collector | None = None
        self._collector_load = CollectorLoad()  # the collector this app is attached to…
        self._status_watch = StatusWatch(store.state_dir)  # (…says when it polls)
        self.collector_rests = asyncio.Event()  # …is not busy: views wait until it is set
        self.collector_rests.set()  # (core/priority.py)
        self._stop = asyncio.Event()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="vpcwatch-reader",
                                          initializer=follow_yield)
        # new alerts: the collector's small tables reloaded, the feed read (light, and not
        # behind the reader's work; spared when an attached app yields, core/priority.py)
        self._alerts_reader = ThreadPoolExecutor(1, thread_name_prefix="vpcwatch-alerts")
        self._ui_loop: asyncio.AbstractEventLoop | None = None  # (the reader posts to it)
        self.explorer: Explorer | None = None
        self.sandbox: Sandbox | None = None  # user SQL (the `:` prompt), made on first use
        self._pending: set[str] = set()
        self._feed_tickets = 0  # feed pages asked for (take_feed_ticket)…
        self._feed_shown = 0  # …and the newest shown
        self._pumping = False
        self.index_seconds: float | None = None  # how long the traffic index took to build
        self._older_pending = False  # the chart shown lacks its days before the hot window
        self._history_running = False  # …which the view pump is reading now
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
        if self.store.attached_to is not None:
            self.run_worker(self._follow(), group="collector", name="follower")
            self.set_interval(LOAD_SECONDS, self._sample_collector_load)
        elif self.collect and self.config is not None:
            self.collector = Collector(self.config, self.store, self._publish)
            self.run_worker(self._collect(), group="collector", name="collector")
        # (the traffic index of the hot window is built after the first view: view_pump)
        self.explorer = await self._read(Explorer, self.store, self.hot_seconds, False,
                                         self.index_memory)
        self._collect_garbage_when_idle()
        self.request_view()

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
        self._alerts_reader.shutdown(wait=True)  # (its reads use the explorer's cursor)
        if self.explorer is not None:
            self._reader.submit(self.explorer.close).result()
        if self.sandbox is not None:
            self.sandbox.interrupt()
            self._reader.submit(self.sandbox.close).result()
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
            activity.late += summary.late
            for error in summary.errors:
                activity.add_error(error)
            self.request_view("status")
        elif isinstance(event, PollFailed):
            activity.polling = False
            activity.add_error(f"poll failed: {event.error}")
        self._show_status()

    def _data_changed(self) -> None:
        """New flows: redraw the chart, conversations and status at most every
        AUTO_REFRESH_SECONDS (each redraw adds the new flows to the traffic index)."""
        wait = AUTO_REFRESH_SECONDS - (time.monotonic() - self._last_auto)
        if wait <= 0:
            self._refresh_new_data()
        elif self._auto_timer is None:
            self._auto_timer = self.set_timer(wait, self._refresh_new_data)

    def _refresh_new_data(self) -> None:
        self._auto_timer = None
        self._last_auto = time.monotonic()
        self.request_view("chart", "conversations", "status")

    def _prepare_chart(self, axis: Axis, values: list[int], zoomed: bool) -> None:
        """Draw the chart that ``_apply`` will show (see ``TrafficChart.prepare``)."""
        state = ChartState(axis, values, find_peaks(values), zoomed=zoomed)
        with contextlib.suppress(NoMatches):  # (posted as the app closed)
            self.query_one(TrafficChart).prepare(self._marked(state), self.zone)

    def _apply(self, parts: frozenset[str], data: ViewData) -> None:
        if data.feed is not None:
            self._show_feed_page(data.feed_ticket, data.feed, data.feed_total, data.feed_partial)
        if "chart" in parts or "history" in parts:
            self._older_pending = data.chart_partial
            self.chart = ChartState(data.axis, data.values, find_peaks(data.values),
                                    zoomed=self.scope.range is not None)
            if self.scope.range is None:
                self.whole_axis = data.axis  # everything stored (the limit of zooming out)
            self._show_chart()
        if data.conversations is not None:
            self.query_one(Conversations).show(data.conversations, self.zone)
            self._range_too_long = data.too_long
            self._show_conversations_title()
        if data.buckets is not None:
            self.buckets = data.buckets
            self.activity.newest_record = data.newest
            self.activity.problems = data.problems
            self._show_status()

    # -- showing ------------------------------------------------------------------------

    def _show_status(self) -> None:
        with contextlib.suppress(NoMatches):  # (its timer's tick as the app closes)
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
            if self._range_too_long:
                text.append("  too many flows for index_memory: select a shorter range",
                            style="yellow")
        else:  # (the index's span: older conversations are read when a range asks for them)
            text.append(f"  last {self._hot_hours()}")
            if self.explorer is None or not self.explorer.built:
                text.append("  indexing…", style="yellow")
        text.append("  (Enter: flows, a: filter)", style="dim")
        self.query_one("#conversations-title", Static).update(text, layout=False)

    def _hot_hours(self) -> str:
        """The hot window's span: as configured, or shorter when it did not fit index_memory."""
        index = self.explorer.index if self.explorer else None
        if index and index.trimmed and index.start is not None and index.newest is not None:
            return f"{(index.newest - index.start) / 3600:.1f} h (index_memory)"
        return f"{self.hot_seconds / 3600:g} h"

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


def run_app(store: Store, config: Config | None, *,
            before_poll: Callable[[], Awaitable[None]] | None = None, mouse: bool = True) -> int:
    """Run the app in this terminal until the user quits (or SIGHUP); stop the pollers."""
    app = VpcwatchApp(store, config, before_poll=before_poll)
    try:
        app.run(mouse=mouse)
    finally:
        app.close_background()
    return app.return_code or 0
