"""The app over a store longer than its hot window, driven by Pilot: the first view shows the
whole store on the chart from the traffic summary before the traffic index is built; then the
index of the last day answers the conversations. Expected figures come from the records' text
(tests/test_hot_window.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import Static

from core.explorer import Explorer
from core.scan import scan
from core.store import open_store
from tests.apptools import until
from tests.scenarios import text
from tests.test_hot_window import DAY, PAIRS, expected_histogram, three_days
from tui.app import VpcwatchApp
from tui.widgets.conversations import Conversations

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
