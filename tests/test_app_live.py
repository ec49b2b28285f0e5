"""The app as new data reaches it, driven by Textual's Pilot on a store of frozen demo traffic:
new alerts and flows as the core announces them, and the views of an app attached to a busy
collector (docs/attach.md). The collector's events are posted as it would post them."""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.store import publication
from tests.apptools import frozen_app, frozen_store, until
from tui.app import DEFAULT_MIN_LEVEL
from tui.demo_traffic import EXFIL_HOST
from tui.widgets.feed import AlertFeed
from tui.widgets.status import StatusBar

# Every app test runs with the guard: no Text made from unsafe characters (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("text_guard")


@pytest.fixture(scope="module")
def frozen_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return frozen_store(tmp_path_factory.mktemp("frozen"))


async def test_the_feed_stops_following_when_moved_and_counts_new_alerts(
        frozen_state: Path, tmp_path: Path) -> None:
    """New alerts arrive as the core's AlertsChanged event (posted here as the collector
    would: the store is frozen, so the rows it names are already there)."""
    from core.events import AlertsChanged
    from tui.app import CoreMessage

    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        feed = app.query_one(AlertFeed)
        feed.focus()
        assert feed.following
        await pilot.press("down")  # type: ignore[attr-defined]
        assert not feed.following and feed.cursor_row == 1
        changed = app.explorer.feed(app.scope, 0, 3)  # type: ignore[union-attr]
        app.post_message(CoreMessage(AlertsChanged(changed, time.time())))
        await until(lambda: feed.new_alerts == 3)
        assert "3 new" in str(app.query_one("#feed-title").render())
        assert feed.cursor_row == 1  # it did not move
        await pilot.press("f")  # type: ignore[attr-defined]
        await app.wait_settled()
        assert feed.following and feed.new_alerts == 0 and feed.cursor_row == 0
        assert "following" in str(app.query_one("#feed-title").render())


async def test_new_flows_within_the_refresh_interval_are_shown_after_it(
        frozen_state: Path, tmp_path: Path) -> None:
    """New flows redraw the chart at most every AUTO_REFRESH_SECONDS: a second commit within
    that interval is shown when it ends, without any other event. (The timer's callback
    was once shadowed by an attribute of Textual's, and such a commit waited for the next.)"""
    from core.events import BatchCommitted
    from tui.app import CoreMessage

    async with frozen_app(frozen_state, tmp_path) as (app, _):
        await app.wait_settled()
        shown: list[frozenset[str]] = []
        apply = app._apply
        app._apply = lambda parts, data: (shown.append(parts), apply(parts, data))[1]
        for _ in range(2):
            app.post_message(CoreMessage(BatchCommitted((), 0, 0, time.time())))
        await until(lambda: sum("chart" in parts for parts in shown) >= 2, timeout=15)


async def test_a_new_alert_is_shown_while_the_view_reader_is_busy(
        frozen_state: Path, tmp_path: Path) -> None:
    """An alert is what people wait for: it is shown as it arrives, read on a thread of its
    own, even while the view reader is stuck in long work (here a gate it waits on)."""
    import shutil
    import threading

    from core.events import AlertsChanged
    from tui.app import CoreMessage

    state = tmp_path / "state"
    shutil.copytree(frozen_state, state)  # (the frozen store is shared: this one changes)
    async with frozen_app(state, tmp_path) as (app, _):
        feed = app.query_one(AlertFeed)
        assert feed.following
        gate = threading.Event()
        busy = app._reader.submit(gate.wait, 60)
        try:
            con = app.store.con
            con.execute("INSERT INTO alerts SELECT * REPLACE ('new-alert' AS id, "
                        "first_seen + 60 AS first_seen, last_seen + 60 AS last_seen) "
                        "FROM alerts WHERE level >= ? ORDER BY last_seen DESC LIMIT 1",
                        [DEFAULT_MIN_LEVEL])
            new = con.sql("SELECT * FROM alerts WHERE id = 'new-alert'").to_arrow_table()
            app.post_message(CoreMessage(AlertsChanged(new, time.time())))
            await until(lambda: bool(feed.rows_shown) and feed.rows_shown[0]["id"] == "new-alert")
            assert not busy.done()  # (shown while the reader was still busy)
        finally:
            gate.set()


async def test_views_wait_while_the_collector_is_busy(
        frozen_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An app attached to a busy collector holds its views that read flows until it rests
    (core/priority.py): a filter asked for then is shown once it does, with the views asked
    for meanwhile; a page of the feed of stored alerts is shown at once. (The test sets what
    the app's sampler of the collector's CPU would: tests/test_priority.py tests the
    sampler, tests/test_attach.py that the app finds the collector's pid.)"""
    monkeypatch.setattr("tui.view_pump.VIEW_WAIT_MAX", 600.0)  # (only a rest ends the wait)
    async with frozen_app(frozen_state, tmp_path) as (app, _):
        app.collector_rests.clear()
        feed, status = app.query_one(AlertFeed), app.query_one(StatusBar)
        app.action_follow()  # the feed of stored alerts reads no flows: shown at once
        await app.wait_settled()
        assert app.applied == app.requested and "views wait" not in str(status.render())
        before, shown = feed.total, app.applied
        assert app.apply_filter_text(EXFIL_HOST)
        await until(lambda: "views wait: the collector is busy" in str(status.render()))
        app.request_view("status")
        assert app.applied == shown and feed.total == before  # held: nothing shown yet
        app.collector_rests.set()
        await app.wait_settled()
        assert "views wait" not in str(status.render())
        assert app.applied == app.requested > shown
        assert 0 < feed.total < before
        assert all(EXFIL_HOST in (r["srcaddr"], r["dstaddr"]) for r in feed.rows_shown)


async def test_views_wait_from_the_moment_the_collector_says_it_polls(
        frozen_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's status says a poll started: the next round of views waits at once,
    before any sample of its CPU; the status saying the poll finished ends the wait. (The
    store stands for one attached to this test's process; the app's sampler, which runs
    only in an app attached when it starts, is called by hand.)"""
    monkeypatch.setattr("tui.view_pump.VIEW_WAIT_MAX", 600.0)  # (only a rest ends the wait)
    state = tmp_path / "state"
    shutil.copytree(frozen_state, state)
    (state / publication.DIRECTORY).mkdir(mode=0o700)
    async with frozen_app(state, tmp_path) as (app, _):
        owner = f"pid {os.getpid()} on {socket.gethostname()} (vpcwatch collect)"
        app.store.attached_to = app.activity.attached = owner
        feed, status = app.query_one(AlertFeed), app.query_one(StatusBar)
        before, shown = feed.total, app.applied
        publication.write_status(state, {"polling": True})
        assert app.apply_filter_text(EXFIL_HOST)
        await until(lambda: "views wait: the collector is busy" in str(status.render()))
        assert app.applied == shown and feed.total == before
        publication.write_status(state, {"polling": False})
        app._sample_collector_load()
        await app.wait_settled()
        assert app.applied == app.requested > shown
        assert 0 < feed.total < before


async def test_the_status_bar_is_laid_out_again_only_when_its_height_changes(
        frozen_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An attached app looks at its collector every second and shows its activity as it
    changes, several times a poll: an unchanged status must not update the bar, and a
    changed one of the same height must not lay the screen out again (each layout renders
    the whole screen); one that needs another row, or one row fewer, must. A text taller
    than the bar's max-height needs no more rows than it shows."""
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        status = app.query_one(StatusBar)
        updates: list[object] = []
        layouts: list[bool] = []
        update, refresh = status.update, status.refresh
        monkeypatch.setattr(status, "update", lambda text, **kw: (
            updates.append(text), update(text, **kw)))
        monkeypatch.setattr(status, "refresh", lambda *regions, **kw: (
            layouts.append(kw.get("layout", False)), refresh(*regions, **kw))[1])
        for _ in range(3):
            app._show_status()
        assert updates == []
        assert not app.activity.polling  # (no collector here)
        app.activity.polling = True
        app._show_status()
        app._show_status()
        assert len(updates) == 1 and "polling" in str(status.render())
        assert True not in layouts
        await pilot.pause()
        rows = status.size.height
        app.activity.attached = "pid 1 on " + "h" * 60  # (a first line wider than the screen)
        app.activity.views_wait, app.activity.late = True, 3
        app.activity.add_error("a problem")
        app._show_status()
        assert len(updates) == 2 and True in layouts
        await pilot.pause()
        assert status.size.height == rows + 1
        buckets = app.buckets
        app.buckets = [replace(buckets[0], bucket=f"b{n}") for n in range(6)]
        app._show_status()  # (more rows than the bar's max-height: it shows four)
        await pilot.pause()
        assert status.size.height == 4
        layouts.clear()
        app.activity.late = 4  # (a change that needs as many rows: none is added)
        app._show_status()
        assert len(updates) == 4 and True not in layouts
        assert len(buckets) == 2  # (the frozen store's: flows and CloudTrail)
        app.buckets = buckets[:1]  # (two rows of the first line, one of a bucket)
        app._show_status()
        assert True in layouts
        await pilot.pause()
        assert status.size.height == 3


async def test_views_wait_for_a_busy_collector_for_a_while_only(
        frozen_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector busy for ever (a first poll of a month of logs) holds a view for
    VIEW_WAIT_MAX at most: the person still sees the filter they asked for."""
    monkeypatch.setattr("tui.view_pump.VIEW_WAIT_MAX", 1.0)
    async with frozen_app(frozen_state, tmp_path) as (app, _):
        app.collector_rests.clear()
        feed, status = app.query_one(AlertFeed), app.query_one(StatusBar)
        before = feed.total
        assert app.apply_filter_text(EXFIL_HOST)
        await until(lambda: "views wait: the collector is busy" in str(status.render()))
        await app.wait_settled()  # (the collector never rests here)
        assert 0 < feed.total < before
        assert "views wait" not in str(status.render())


def test_a_collector_status_with_times_no_calendar_holds_is_shown_as_unknown() -> None:
    """Found by an adversarial test: a status.json whose last poll was 1e12 (the year 33658)
    raised from the status bar's timer, and the attached app ended."""
    from datetime import UTC

    from tui.widgets.status import Activity, status_text

    activity = Activity()
    activity.last_poll, activity.next_poll = 1e12, -1e20
    text = status_text([], activity, UTC, time.time()).plain
    assert "last ? next ?" in text
