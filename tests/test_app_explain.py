"""Explain a peak in the app (``w``), driven by Pilot on the frozen demo traffic: the
exfiltration's peak is explained by the exfiltrating pair, new, with at least 90% of the
peak's bytes; Enter makes it the filter over that time."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from core.filters import parse_filter
from core.store import open_store
from tests.apptools import FROZEN_NOW, frozen_store, until
from tests.test_app import flows_sql
from tui.app import VpcwatchApp
from tui.demo_traffic import EXFIL_DEST, EXFIL_HOST
from tui.explain_view import ExplainScreen

pytestmark = pytest.mark.usefixtures("text_guard")


async def test_the_exfiltration_peak_is_explained_by_a_new_pair(tmp_path: Path) -> None:
    state = frozen_store(tmp_path)
    with open_store(state) as store:
        check = store.con.cursor()  # (the test's own connection: SQL written here)
        app = VpcwatchApp(store, None, collect=False, now=lambda: FROZEN_NOW,
                          export_dir=tmp_path)
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: app.explorer is not None and app.explorer.built)
            await app.wait_settled()
            await pilot.press("w")  # nothing selected: says what to do
            assert not isinstance(app.screen, ExplainScreen)
            app.action_biggest_peak()
            peak = app.selection
            assert peak is not None
            await pilot.press("w")
            await until(lambda: isinstance(app.screen, ExplainScreen))
            screen = app.screen
            assert isinstance(screen, ExplainScreen)
            found = screen.found
            [(total, exfil)] = check.execute(
                "SELECT sum(bytes), sum(bytes) FILTER (WHERE ? IN (srcaddr, dstaddr) AND "
                f"? IN (srcaddr, dstaddr)) FROM {flows_sql(state)} WHERE start >= ? AND start < ?",
                [EXFIL_HOST, EXFIL_DEST, peak.start, peak.end]).fetchall()
            [(before,)] = check.execute(
                f"SELECT count(*) FROM {flows_sql(state)} WHERE ? IN (srcaddr, dstaddr) AND "
                "? IN (srcaddr, dstaddr) AND start < ?",
                [EXFIL_HOST, EXFIL_DEST, peak.start]).fetchall()
            top = found.pairs[0]
            assert {top["address"], top["peer"]} == {EXFIL_HOST, EXFIL_DEST}
            assert before == 0 and top["new"] is True
            assert found.total == total and top["share"] == exfil / total >= 0.9
            assert screen.query_one(DataTable).row_count == len(found.pairs)

            await pilot.press("enter")  # the first row: that pair, over that time
            await until(lambda: not isinstance(app.screen, ExplainScreen))
            await app.wait_settled()
            assert app.scope.range == peak
            assert app.scope.filter.text == parse_filter(
                f"{top['address']} {top['peer']}").text
