"""The app over a store longer than its hot window, driven by Pilot: the first view shows the
whole store on the chart from the traffic summary before the traffic index is built; then the
index of the last day answers the conversations. Expected figures come from the records' text
(tests/test_hot_window.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from textual.widgets import Static

from core.explorer import Explorer, Scope
from core.filters import parse_filter
from core.rules import load_engine
from core.scan import scan
from core.store import open_store
from core.timeline import TimeRange
from core.traffic_index import FLOW_COST
from tests.apptools import until
from tests.scenarios import text
from tests.test_explorer import _pane_order, reference
from tests.test_hot_window import DAY, PAIRS, expected_histogram, three_days
from tui.app import VpcwatchApp
from tui.widgets.conversations import Conversations
from tui.widgets.feed import AlertFeed

pytestmark = pytest.mark.usefixtures("text_guard")


async def test_the_first_view_comes_from_the_summary_then_the_hot_window_is_indexed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = three_days()
    (tmp_path / "days.log").write_bytes(text(lines))
    state = tmp_path / "state"
    with open_store(state) as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
    # The build waits for the test's word, so the first view is seen before it (a gate on
    # the real build, not a mock of it).
    allowed, building = threading.Event(), threading.Event()
    build = Explorer.build

    def gated(self: Explorer) -> None:
        building.set()
        assert allowed.wait(60)
        build(self)

    monkeypatch.setattr(Explorer, "build", gated)
    newest = max(int(record.split()[11]) for record in lines)
    with open_store(state) as store:
        app = VpcwatchApp(store, None, collect=False, now=lambda: newest)
        async with app.run_test(size=(160, 48)):
            await until(lambda: building.is_set() and app.chart.axis is not None)
            explorer = app.explorer
            assert explorer is not None and not explorer.built
            axis = app.chart.axis
            assert axis is not None and axis.start <= min(int(r.split()[10]) for r in lines)
            assert app.chart.values == expected_histogram(lines, axis)  # three days, summarised
            title = str(app.query_one("#conversations-title", Static).render())
            assert "indexing" in title and "last 24 h" in title
            assert app.query_one(Conversations).rows_shown == []

            allowed.set()
            await until(lambda: explorer.built)
            await app.wait_settled()
            assert explorer.index.start is not None
            assert explorer.index.start >= newest - DAY - 3600
            assert app.chart.values == expected_histogram(lines, axis)  # (index + summary)
            shown = {(r["address"], r["peer"]) for r in app.query_one(Conversations).rows_shown}
            assert len(shown) == len(PAIRS)
            assert "indexing" not in str(app.query_one("#conversations-title", Static).render())

            # a filter the summary cannot answer: the older days come from the segments, a
            # step after the rest of the view (app.last_view_parts times both)
            app.set_scope(filter=parse_filter("port:22"))
            await app.wait_settled()
            assert app.chart.values == expected_histogram(
                lines, axis, lambda f: "22" in (f[5], f[6]))
            assert "history" in app.last_view_parts and not app._older_pending


async def test_rewind_a_day_back_zoom_out_and_back_to_the_live_view(tmp_path: Path) -> None:
    lines = three_days()  # with SSH from the internet all along: an alert an hour
    (tmp_path / "days.log").write_bytes(text(lines))
    state = tmp_path / "state"
    with open_store(state, engine=load_engine([])) as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
    newest = max(int(record.split()[11]) for record in lines)
    with open_store(state) as store:
        check = store.con.cursor()  # (the test's own connection to the store)
        app = VpcwatchApp(store, None, collect=False, now=lambda: newest)
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: app.explorer is not None and app.explorer.built)
            await app.wait_settled()
            whole = app.chart.axis
            assert whole is not None and app.whole_axis == whole
            back = DAY // whole.size  # buckets in a day
            for _ in range(back + 1):  # (the first press puts the cursor on the last bucket)
                await pilot.press("left")
            await pilot.press("enter")
            await app.wait_settled()
            day_back = whole.bucket_range(whole.count - 1 - back, whole.count - 1 - back)
            assert app.scope.range == day_back and day_back.end <= newest - DAY + whole.size
            chip = str(app.query_one("#range-chip").render())
            assert time.strftime("%m-%d %H:%M", time.gmtime(day_back.start)) in chip
            assert "UTC" in chip

            # the feed: that time's alerts, newest first (SQL written here)
            expected = [row[0] for row in check.execute(
                "SELECT id FROM alerts WHERE level >= 5 AND last_seen >= ? AND "
                "first_seen < ? ORDER BY last_seen DESC, level DESC, id",
                [day_back.start, day_back.end]).fetchall()]
            assert expected and [r["id"] for r in app.query_one(AlertFeed).rows_shown
                                 ] == expected
            # the conversations: that time's, from an index of it (the hot window is later)
            pane = app.query_one(Conversations).rows_shown
            assert pane == sorted(reference(state, Scope(range=day_back), None),
                                  key=_pane_order)[:len(pane)] and len(pane) == len(PAIRS)
            assert "in " in str(app.query_one("#conversations-title", Static).render())

            await pilot.press("o")  # four times the time, around the cursor
            await app.wait_settled()
            wider = app.scope.range
            assert wider is not None and wider.end - wider.start == 4 * (
                day_back.end - day_back.start)
            assert wider.start <= day_back.start and day_back.end <= wider.end
            await pilot.press("i")  # and back in
            await app.wait_settled()
            assert app.scope.range is not None and (
                app.scope.range.end - app.scope.range.start == day_back.end - day_back.start)

            await pilot.press("escape")  # the live view: everything, following new data
            await app.wait_settled()
            assert app.scope.range is None and app.chart.axis == whole
            assert "last 24 h" in str(app.query_one("#conversations-title", Static).render())
            for _ in range(3):  # zooming out ends at everything stored: the live view
                await pilot.press("i")
            await app.wait_settled()
            assert app.scope.range is not None
            for _ in range(4):
                await pilot.press("o")
                await app.wait_settled()
            assert app.scope.range is None


async def test_the_titles_say_what_index_memory_left_out(tmp_path: Path) -> None:
    """With index_memory too small for a day, the conversations' title gives the hours the
    hot window holds; a past range too long for its share says to select a shorter one."""
    lines = three_days()
    (tmp_path / "days.log").write_bytes(text(lines))
    state = tmp_path / "state"
    with open_store(state) as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
    newest = max(int(record.split()[11]) for record in lines)
    first = min(int(record.split()[10]) for record in lines)
    with open_store(state) as store:
        app = VpcwatchApp(store, None, collect=False, now=lambda: newest)
        app.index_memory = 4 * 400 * FLOW_COST  # (1,200 flows hot, 400 for a past range)
        async with app.run_test(size=(160, 48)):
            await until(lambda: app.explorer is not None and app.explorer.built)
            await app.wait_settled()
            index = app.explorer.index  # type: ignore[union-attr]
            assert index.trimmed and index.start is not None and index.newest is not None
            hours = (index.newest - index.start) / 3600
            assert hours < 24
            title = str(app.query_one("#conversations-title", Static).render())
            assert f"last {hours:.1f} h (index_memory)" in title

            app.set_scope(range=TimeRange(first + 3600, first + 7 * 3600))
            await app.wait_settled()
            title = str(app.query_one("#conversations-title", Static).render())
            assert "too many flows for index_memory" in title
            assert app.query_one(Conversations).rows_shown == []

            app.set_scope(range=TimeRange(first + 3600, first + 7200))
            await app.wait_settled()
            assert "too many" not in str(app.query_one("#conversations-title", Static).render())
            assert app.query_one(Conversations).rows_shown
