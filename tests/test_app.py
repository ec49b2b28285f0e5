"""The Textual app, driven by Textual's Pilot: against the embedded S3 (moto's server, the real
aiobotocore path) and against a store of frozen demo traffic. Expected figures come from SQL
written here, straight over the Parquet segments and the alerts table."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
from textual.widgets import Static

from core.config import parse_config
from core.rules import load_engine
from core.store import DATABASE_NAME, open_store
from core.store.segments import segment_dir
from tests.apptools import PAYLOAD_ARN, demo_objects, frozen_app, frozen_store, until
from tests.conftest import Bucket
from tui.app import DEFAULT_MIN_LEVEL, VpcwatchApp
from tui.demo_traffic import EXFIL_DEST, EXFIL_HOST
from tui.screens import HelpScreen, SqlScreen, TableScreen
from tui.widgets.chart import TrafficChart
from tui.widgets.conversations import Conversations
from tui.widgets.feed import AlertFeed

# Every app test runs with the guard: no Text made from unsafe characters (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("text_guard")
FLOWS = "read_parquet('{segments}/*.parquet', union_by_name=true)"


def flows_sql(state: Path) -> str:
    return FLOWS.format(segments=segment_dir(state))


def sql(con: duckdb.DuckDBPyConnection, text: str, params: list[object] | None = None
        ) -> list[tuple[object, ...]]:
    return con.execute(text, params or []).fetchall()


@pytest.fixture(scope="module")
def frozen_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return frozen_store(tmp_path_factory.mktemp("frozen"))


async def type_text(pilot: object, text: str) -> None:
    await pilot.press(*[{" ": "space", "!": "exclamation_mark"}.get(c, c) for c in text])  # type: ignore[attr-defined]


# -- live: the real collector against the embedded S3 ----------------------------------------


async def test_live_app_collects_filters_selects_the_peak_and_exports(
        bucket: Bucket, tmp_path: Path) -> None:
    now = int(time.time()) // 60 * 60
    objects = demo_objects(now)
    for obj in objects:
        bucket.put(obj.key, obj.body)
    config = parse_config(f"""
[general]
interval = "1h"
state_dir = "{tmp_path / 'state'}"
[[bucket]]
type = "vpcflow"
name = "{bucket.name}"
path = "vpc"
endpoint_url = "{bucket.url}"
[[bucket]]
type = "cloudtrail"
name = "{bucket.name}"
path = "vpc"
endpoint_url = "{bucket.url}"
""", "<test>")
    state = tmp_path / "state"
    with open_store(state, engine=load_engine([])) as store:
        app = VpcwatchApp(store, config, export_dir=tmp_path / "exports")
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await until(lambda: app.activity.last_poll is not None, timeout=120)
                app.request_view()
                await app.wait_settled()
                check = store.con.cursor()
                await _alerts_appear(app, check, len(objects))
                await _filter_by_ip(app, pilot, check, state)
                await _peak_then_enter(app, pilot)
                await _help_opens(app, pilot)
                await _export_writes_the_filtered_rows(app, pilot, check)
                check.close()
        finally:
            app.close_background()


async def _alerts_appear(app: VpcwatchApp, check: duckdb.DuckDBPyConnection,
                         objects: int) -> None:
    feed = app.query_one(AlertFeed)
    shown = {row["rule_id"] for row in feed.rows_shown}
    assert {"vpc.exfiltration", "vpc.portscan", "cloudtrail.create_vpc_denied",
            "cloudtrail.delete_flow_logs"} <= shown
    [(expected,)] = sql(check, "SELECT count(*) FROM alerts WHERE level >= ?",
                        [DEFAULT_MIN_LEVEL])
    assert feed.total == expected
    done = sum(state.counts.get("done", 0) for state in app.buckets)
    assert done == objects


async def _filter_by_ip(app: VpcwatchApp, pilot: object, check: duckdb.DuckDBPyConnection,
                        state: Path) -> None:
    await pilot.press("slash")  # type: ignore[attr-defined]
    await type_text(pilot, EXFIL_HOST)
    await pilot.press("enter")  # type: ignore[attr-defined]
    await app.wait_settled()
    feed = app.query_one(AlertFeed)
    [(alerts,)] = sql(check, "SELECT count(*) FROM alerts WHERE level >= ? AND "
                      "(srcaddr = ? OR dstaddr = ?)", [DEFAULT_MIN_LEVEL, EXFIL_HOST, EXFIL_HOST])
    assert feed.total == alerts > 0
    assert all(EXFIL_HOST in (r["srcaddr"], r["dstaddr"]) for r in feed.rows_shown)
    axis = app.chart.axis
    assert axis is not None
    [(total,)] = sql(check, f"SELECT sum(bytes) FROM {flows_sql(state)} WHERE start >= ? AND "
                     "start < ? AND (srcaddr = ? OR dstaddr = ?)",
                     [axis.start, axis.end, EXFIL_HOST, EXFIL_HOST])
    assert sum(app.chart.values) == total
    peers = sql(check, f"""
        SELECT CASE WHEN srcaddr = ? THEN dstaddr ELSE srcaddr END AS peer, sum(bytes)
        FROM {flows_sql(state)} WHERE srcaddr = ? OR dstaddr = ?
        GROUP BY peer ORDER BY 2 DESC, peer LIMIT 5""", [EXFIL_HOST] * 3)
    shown = app.query_one(Conversations).rows_shown
    assert [(r["peer"], r["bytes_out"] + r["bytes_in"]) for r in shown[:5]] == peers
    assert all(r["address"] == EXFIL_HOST for r in shown)
    await pilot.press("escape")  # type: ignore[attr-defined]  # clears the filter
    await app.wait_settled()
    assert app.scope.filter.empty


async def _peak_then_enter(app: VpcwatchApp, pilot: object) -> None:
    await pilot.press("right_square_bracket", "enter")  # type: ignore[attr-defined]
    await app.wait_settled()
    assert app.scope.range is not None
    top = app.query_one(Conversations).rows_shown[0]
    assert {top["address"], top["peer"]} == {EXFIL_HOST, EXFIL_DEST}
    for row in app.query_one(AlertFeed).rows_shown:  # the feed holds the range's alerts
        assert row["last_seen"] >= app.scope.range.start
        assert row["first_seen"] < app.scope.range.end


async def _help_opens(app: VpcwatchApp, pilot: object) -> None:
    await pilot.press("question_mark")  # type: ignore[attr-defined]
    assert isinstance(app.screen, HelpScreen)
    await pilot.press("escape")  # type: ignore[attr-defined]
    assert not isinstance(app.screen, HelpScreen)


async def _export_writes_the_filtered_rows(app: VpcwatchApp, pilot: object,
                                           check: duckdb.DuckDBPyConnection) -> None:
    app.query_one(AlertFeed).focus()
    await pilot.press("e")  # type: ignore[attr-defined]
    await until(lambda: app.last_export is not None)
    assert app.last_export is not None and app.last_export.suffix == ".csv"
    span = app.scope.range
    assert span is not None
    expected = sql(check, "SELECT id FROM alerts WHERE level >= ? AND last_seen >= ? AND "
                   "first_seen < ? ORDER BY id", [DEFAULT_MIN_LEVEL, span.start, span.end])
    exported = sql(check, "SELECT id FROM read_csv(?, header=true, all_varchar=true) "
                   "ORDER BY id", [str(app.last_export)])
    assert exported == expected and expected


# -- frozen data ------------------------------------------------------------------------------


async def test_log_text_is_shown_literally_and_triggers_nothing(
        frozen_state: Path, tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        feed = app.query_one(AlertFeed)
        index = next(i for i, r in enumerate(feed.rows_shown) if "[@click" in r["title"])
        title_cell = feed.row_at(index)[[c.label for c in feed.columns].index("title")]
        assert title_cell.plain.startswith("Unauthorized CreateVpc attempt by "
                                           "arn:aws:iam::111122223333:user/[@cli")
        assert title_cell.spans == []  # no style came from the text
        feed.focus()
        feed.move_cursor(index)
        await pilot.press("enter")  # type: ignore[attr-defined]  # opens the event
        detail = str(app.query_one("#detail").render())
        assert "[@click=app.quit]x[/]\\x1b]52;c;SGVsbG8=\\x07\\u202e" in detail
        assert not any(c in detail for c in "\x1b\x07\u202e")
        await until(lambda: isinstance(app.screen, TableScreen))
        event = app.screen.query_one("DataTable")
        cells = [cell.plain for cell in event.get_row_at(0)]
        assert "[@click=app.quit]quit[/]" in cells  # the error message
        assert "[bold red]agent[/]\\x1b[2J" in cells  # the user agent
        await pilot.press("escape")  # type: ignore[attr-defined]
        await pilot.click(AlertFeed, offset=(60, index + 1))  # type: ignore[attr-defined]
        assert app.is_running and app.return_code is None


async def test_a_bad_filter_term_says_why_and_changes_nothing(frozen_state: Path,
                                                              tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        before = (app.query_one(AlertFeed).total, app.scope)
        await pilot.press("slash")  # type: ignore[attr-defined]
        await type_text(pilot, "port:9999")
        await pilot.press("left", "9")  # type: ignore[attr-defined]  # the arrow edits the text
        assert app.query_one("#filter-input").value == "port:99999"
        assert app.cursor_t is None  # …and did not move the chart
        await pilot.press("enter")  # type: ignore[attr-defined]
        assert "0 to 65535" in str(app.query_one("#filter-error").render())
        assert (app.query_one(AlertFeed).total, app.scope) == before
        await pilot.press("escape")  # type: ignore[attr-defined]  # discards the text
        assert app.scope == before[1]


async def test_level_keys_show_and_hide_the_parity_alerts(frozen_state: Path,
                                                          tmp_path: Path) -> None:
    con = duckdb.connect(str(frozen_state / DATABASE_NAME), read_only=True)
    counts = dict(sql(con, "SELECT level, count(*) FROM alerts GROUP BY level"))
    # the parity alerts, derived from the flows: one per source, destination, lower port,
    # protocol, action and 10 minutes (ACCEPT level 3, REJECT level 4)
    segments = FLOWS.format(segments=segment_dir(frozen_state))
    parity = dict(sql(con, f"SELECT action = 'REJECT', count(*) FROM (SELECT DISTINCT "
                           f"srcaddr, dstaddr, least(srcport, dstport), protocol, action, "
                           f"start // 600 FROM {segments} WHERE action IN ('ACCEPT', 'REJECT') "
                           f"AND srcport IS NOT NULL) GROUP BY 1"))
    con.close()
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        feed = app.query_one(AlertFeed)

        def title() -> str:
            return str(app.query_one("#feed-title", Static).render())

        def shows(exact: int) -> None:
            """The total, or while older parity alerts are not derived a lower bound: N+"""
            if feed.total_partial:
                assert feed.total < exact and f"of {feed.total:,}+" in title()
            else:
                assert feed.total == exact and f"of {exact:,}" in title()

        assert feed.total == sum(n for level, n in counts.items() if level >= DEFAULT_MIN_LEVEL)
        await pilot.press("minus")  # type: ignore[attr-defined]
        await app.wait_settled()
        shows(sum(n for level, n in counts.items() if level >= 4) + parity[True])
        await pilot.press("minus")  # type: ignore[attr-defined]
        await app.wait_settled()
        level_3 = sum(n for level, n in counts.items() if level >= 3) + sum(parity.values())
        shows(level_3)
        assert parity[True] > 0 and parity[False] > 0  # the parity alerts are now shown
        shown = {row["rule_id"] for row in app.query_one(AlertFeed).rows_shown}
        assert "vpc.flow.reject" in shown  # derived rows are on the page, in time order
        while feed.total_partial:  # paging on derives further back, to the exact total
            await pilot.press("greater_than_sign")  # type: ignore[attr-defined]
            await app.wait_settled()
        shows(level_3)


async def test_sql_prompt_runs_queries_and_refuses_writes(frozen_state: Path,
                                                          tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        total = app.query_one(AlertFeed).total
        await pilot.press("colon")  # type: ignore[attr-defined]
        screen = app.screen
        assert isinstance(screen, SqlScreen)
        await type_text(pilot, "DELETE FROM alerts")
        await pilot.press("enter")  # type: ignore[attr-defined]
        await until(lambda: "only queries" in str(screen.query_one("#sql-status").render()))
        await pilot.press(*["backspace"] * 18)  # type: ignore[attr-defined]
        await type_text(pilot, "SELECT count(*) AS n FROM alerts WHERE level >= 5")
        await pilot.press("enter")  # type: ignore[attr-defined]
        await until(lambda: "1 rows" in str(screen.query_one("#sql-status").render()))
        result = screen.query_one("#sql-result")
        assert result.get_row_at(0)[0].plain == str(total)
        # more rows than the prompt shows: it says so (it said "1000 rows")
        screen.run("SELECT * FROM range(5000)")
        await until(lambda: "the first 1000 rows" in str(screen.query_one("#sql-status").render()))
        assert result.row_count == 1000


async def test_sql_prompt_reads_no_file_and_a_slow_query_leaves_the_app_working(
        frozen_state: Path, tmp_path: Path) -> None:
    """The prompt runs in the sandbox (tests/test_sandbox.py has every refusal), on a thread
    of its own: the views keep updating while a query runs, and Esc interrupts it."""
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        await pilot.press("colon")  # type: ignore[attr-defined]
        screen = app.screen
        assert isinstance(screen, SqlScreen)
        status = screen.query_one("#sql-status")
        screen.run("SELECT * FROM read_text('/etc/passwd')")
        await until(lambda: "disabled by configuration" in str(status.render()))
        screen.run("SELECT count(*) FROM range(1000000000000) a")
        await until(lambda: app.sandbox is not None and app.sandbox.busy)
        app.request_view()
        await app.wait_settled()  # the views were read and shown meanwhile
        assert app.sandbox.busy
        notes: list[str] = []
        notify = app.notify

        def noting(message: str, *args: object, **kwargs: object) -> None:
            notes.append(str(message))
            notify(message, *args, **kwargs)  # type: ignore[arg-type]

        app.notify = noting  # type: ignore[method-assign]
        await pilot.press("escape")  # type: ignore[attr-defined]  # closes: interrupts it
        await until(lambda: not app.sandbox.busy)
        await app.workers.wait_for_complete()
        # (the stopped query's answer went to the closed screen: "sql failed: No nodes…")
        assert [note for note in notes if "failed" in note] == []


async def test_enter_on_a_conversation_shows_its_flows(frozen_state: Path,
                                                       tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        table = app.query_one(Conversations)
        row = table.rows_shown[0]
        table.focus()
        await pilot.press("enter")  # type: ignore[attr-defined]
        await until(lambda: isinstance(app.screen, TableScreen))
        con = duckdb.connect()
        [(expected,)] = sql(con, f"SELECT least(count(*), 500) FROM {flows_sql(frozen_state)} "
                            "WHERE (srcaddr = ? AND dstaddr = ?) OR (srcaddr = ? AND dstaddr = ?)",
                            [row["address"], row["peer"], row["peer"], row["address"]])
        assert app.screen.query_one("DataTable").row_count == expected > 0


def test_the_payload_arn_is_what_the_store_holds(frozen_state: Path) -> None:
    """The frozen store really holds the hostile text (so the literal test tests something)."""
    con = duckdb.connect(str(frozen_state / DATABASE_NAME), read_only=True)
    assert sql(con, "SELECT count(*) FROM cloudtrail WHERE user_arn = ?", [PAYLOAD_ARN]) == [(1,)]


async def test_mouse_on_the_timeline_applies_a_range_and_the_chip_removes_it(
        frozen_state: Path, tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        axis = app.chart.axis
        assert axis is not None
        timeline = app.query_one("#timeline")
        width = timeline.size.width
        first, last = width // 4, width // 2
        await pilot.pause()  # the first view painted: the strip is where the mouse goes
        await pilot.mouse_down(timeline, offset=(first, 0))  # type: ignore[attr-defined]
        await pilot.hover(timeline, offset=(last, 0))  # type: ignore[attr-defined]
        await pilot.mouse_up(timeline, offset=(last, 0))  # type: ignore[attr-defined]
        await until(lambda: app.scope.range is not None)  # (the pick arrives as a message)
        expected = axis.bucket_range(first * axis.count // width, last * axis.count // width)
        assert app.scope.range == expected
        chip = app.query_one("#range-chip")
        await until(lambda: chip.region.width > 0)  # laid out and on screen: clickable
        await pilot.click(chip)  # type: ignore[attr-defined]
        await until(lambda: app.scope.range is None)


async def test_the_chart_draws_each_state_and_keeps_recent_pictures(
        frozen_state: Path, tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, _):
        chart = app.query_one(TrafficChart)
        plain = replace(app.chart, cursor=None, selection=None)
        with_cursor = replace(plain, cursor=len(plain.values) // 2)
        chart.show(plain, app.zone)
        first = chart.render()
        chart.show(with_cursor, app.zone)
        moved = chart.render()
        assert "cursor" in moved.plain and "cursor" not in first.plain
        chart.show(plain, app.zone)
        assert chart.render() is first  # the same state again: the kept picture
        selected = replace(plain, selection=(0, 1))
        prepared = chart.prepare(selected, app.zone)  # drawn, not shown
        assert chart.render() is first and prepared is not first
        chart.show(selected, app.zone)
        assert chart.render() is prepared


async def test_h_and_l_scroll_the_focused_table_a_column_at_a_time(
        frozen_state: Path, tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        feed = app.query_one(AlertFeed)
        feed.focus()
        await pilot.press("l", "l", "l")  # type: ignore[attr-defined]
        await until(lambda: feed.render_line(0).text.startswith("src "))  # time, lvl, rule
        assert round(feed.scroll_x) == 8 + 1 + 3 + 1 + 28 + 1
        await pilot.press("h")  # type: ignore[attr-defined]
        await until(lambda: feed.render_line(0).text.startswith("rule "))
        await pilot.press(*["l"] * 20)  # type: ignore[attr-defined]
        await until(lambda: feed.scroll_x == feed.max_scroll_x > 0)  # stops at the end
        await pilot.press("tab")  # type: ignore[attr-defined]
        table = app.query_one(Conversations)
        await until(lambda: app.focused is table)
        await pilot.press("l")  # type: ignore[attr-defined]
        await until(lambda: table.render_line(0).text.startswith("peer "))
        assert feed.scroll_x == feed.max_scroll_x  # (the feed stays where it was)


async def test_copy_writes_the_selected_row(frozen_state: Path, tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        row = app.query_one(AlertFeed).selected
        assert row is not None
        await pilot.press("c")  # type: ignore[attr-defined]
        copied = (tmp_path / "vpcwatch-copied.txt").read_text()
        assert copied.split("\t")[0] == row["id"] and row["title"] in copied


async def test_copy_never_writes_through_a_planted_link(frozen_state: Path,
                                                       tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "vpcwatch-copied.txt").symlink_to(victim)
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        await pilot.press("c")  # type: ignore[attr-defined]  # (the action is synchronous)
        assert app.is_running
    assert victim.read_text() == "keep me\n"
    assert (tmp_path / "vpcwatch-copied.txt").is_symlink()


async def test_enter_on_an_alert_shows_its_addresses_conversations(frozen_state: Path,
                                                                   tmp_path: Path) -> None:
    async with frozen_app(frozen_state, tmp_path) as (app, pilot):
        feed = app.query_one(AlertFeed)
        index = next(i for i, r in enumerate(feed.rows_shown)
                     if r["rule_id"] == "vpc.exfiltration")
        feed.focus()
        feed.move_cursor(index)
        await pilot.press("enter")  # type: ignore[attr-defined]
        await app.wait_settled()
        rows = app.query_one(Conversations).rows_shown
        assert {r["address"] for r in rows} == {EXFIL_HOST}
        assert rows[0]["peer"] == EXFIL_DEST
        await pilot.press("x")  # type: ignore[attr-defined]
        await app.wait_settled()
        rows = app.query_one(Conversations).rows_shown
        assert {r["address"] for r in rows} == {EXFIL_DEST}
        assert [r["peer"] for r in rows] == [EXFIL_HOST]
