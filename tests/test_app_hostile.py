"""Hostile log text through every screen: the frames the app draws hold no character that
could act on the terminal, and no markup from a log becomes a style or an action.

A frame is checked as the bytes Textual would write for it: in headless mode (Pilot)
Textual writes nothing, so the test renders the screen's compositor in full, as
``App._display`` does for a terminal (``_compositor`` is private: Textual has no public way
to get a frame's bytes), removes the sequences Textual itself writes (colours and styles,
cursor moves) and asserts that nothing else is left: no ESC, no C0 or C1 control, no
format character (bidi, zero-width)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from core.rules import load_engine
from core.scan import scan
from core.store import open_store
from tests.apptools import FROZEN_NOW, demo_objects, until
from tests.conftest import query, unsafe_in
from tui.app import VpcwatchApp
from tui.screens import SqlScreen, TableScreen
from tui.widgets.conversations import Conversations
from tui.widgets.feed import AlertFeed

# Textual's own output: SGR (colours, styles) and cursor positioning.
TEXTUAL = re.compile(r"\x1b\[[0-9;:]*m|\x1b\[\d+;\d+H|\x1b\[\?25[hl]")
OSC52 = "\x1b]52;c;SGVsbG8=\x07"
HOSTILE_SRC = f"10.0.0.66{OSC52}"
HOSTILE_DST = "198.51.100.77\u200b\u202e[@click=app.quit]q[/]"
HOSTILE_ENI = "eni-0123\x1b[2J\x9b31m"
MARKUP_COLUMN = "[@click=app.quit]x[/]"


def unsafe_characters(frame: str) -> list[str]:
    """What is left of a frame's bytes besides Textual's own sequences and printable text."""
    return unsafe_in(TEXTUAL.sub("", frame))


def frame(app: VpcwatchApp) -> str:
    update = app.screen._compositor.render_update(full=True)  # (private: see the docstring)
    return update.render_segments(app.console)


def assert_clean(app: VpcwatchApp, where: str) -> None:
    assert unsafe_characters(frame(app)) == [], where
    assert app.is_running and app.return_code is None, where


def hostile_flows(when: int) -> str:
    header = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
              "packets bytes start end action log-status")
    lines = [f"2 111122223333 {HOSTILE_ENI} {HOSTILE_SRC} {HOSTILE_DST} {40000 + n} 443 6 "
             f"10 900000000 {when} {when + 50} ACCEPT OK" for n in range(3)]
    return "\n".join([header, *lines]) + "\n"


@pytest.fixture(scope="module")
def hostile_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hostile")
    files = directory / "logs"
    for obj in demo_objects(FROZEN_NOW):
        path = files / obj.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(obj.body)
    (files / "hostile\x1b]0;title\x07.log").write_text(hostile_flows(FROZEN_NOW - 120))
    # a rule file's own text is shown too: a title with markup and an escape sequence
    rules = directory / "hostile-rules.toml"
    rules.write_text(HOSTILE_RULE)
    rules.chmod(0o600)
    state = directory / "state"
    with open_store(state, engine=load_engine([rules])) as store:
        scan([files], store, max_size=1 << 30)
    titles = query(state, "SELECT title FROM alerts WHERE rule_id = 'hostile.title'")
    assert titles and all("\x1b" in title for (title,) in titles)  # (the walk shows them)
    return state


HOSTILE_RULE = """[[rule]]
id = "hostile.title"
level = 9
title = "[@click=app.quit]rule[/] \\u001b]0;pwned\\u0007 {srcaddr}"
source = "vpcflow"
where = "bytes >= 900000000"
group_by = ["srcaddr"]
window = "10m"
"""


@asynccontextmanager
async def hostile_app(state: Path, tmp_path: Path) -> AsyncIterator[tuple[VpcwatchApp, object]]:
    with open_store(state, engine=load_engine([])) as store:
        app = VpcwatchApp(store, None, collect=False, now=lambda: FROZEN_NOW,
                          export_dir=tmp_path)
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await until(lambda: app.explorer is not None)
                await app.wait_settled()
                yield app, pilot
        finally:
            app.close_background()


def test_the_frame_check_finds_what_it_looks_for() -> None:
    """The check itself: Textual's sequences pass, a log's ESC or zero-width does not."""
    assert unsafe_characters("\x1b[1;31mred\x1b[0m\x1b[3;4Hplain é 日本") == []
    assert unsafe_characters(f"a{OSC52}b") == ["\x07", "\x1b"]
    assert unsafe_characters("a\x1b[2Jb") == ["\x1b"]
    assert unsafe_characters("a\u200bb\u202e") == ["\u200b", "\u202e"]


@pytest.mark.usefixtures("text_guard")
async def test_hostile_text_through_every_screen_reaches_the_terminal_as_text(
        hostile_state: Path, tmp_path: Path) -> None:
    async with hostile_app(hostile_state, tmp_path) as (app, pilot):
        assert_clean(app, "first paint")
        p = pilot  # (Pilot's methods are untyped here)

        # the hostile pair's conversation, then `a`: a filter on text that is not an address
        app.apply_filter_text("dst:198.51.100.0/24")  # (a valid filter that keeps the pair)
        await app.wait_settled()
        table = app.query_one(Conversations)
        await until(lambda: any(OSC52 in (r["address"] + r["peer"]) for r in table.rows_shown))
        table.focus()
        table.move_cursor(next(i for i, r in enumerate(table.rows_shown)
                               if OSC52 in (r["address"] + r["peer"])))
        assert_clean(app, "conversations")
        await p.press("a")  # type: ignore[attr-defined]
        error = str(app.query_one("#filter-error").render())
        assert "\\x1b]52;c;SGVsbG8=\\x07" in error  # shown, escaped
        assert_clean(app, "the filter's error")

        await p.press("enter")  # type: ignore[attr-defined]  # the pair's raw flows
        await until(lambda: isinstance(app.screen, TableScreen))
        assert_clean(app, "the flows between the pair")
        await p.press("escape")  # type: ignore[attr-defined]

        # SQL: a column name in markup, and a DuckDB error quoting a log value
        await p.press("colon")  # type: ignore[attr-defined]
        screen = app.screen
        assert isinstance(screen, SqlScreen)
        screen.run(f'SELECT 1 AS "{MARKUP_COLUMN}", interface_id FROM flows '
                   "WHERE interface_id LIKE 'eni-0123%' LIMIT 1")
        await until(lambda: "1 rows" in str(screen.query_one("#sql-status").render()))
        result = screen.query_one("#sql-result")
        assert str(result.ordered_columns[0].label) == MARKUP_COLUMN
        assert_clean(app, "a SQL result")
        screen.run("SELECT CAST(interface_id AS INTEGER) FROM flows "
                   "WHERE interface_id LIKE 'eni-0123%'")
        await until(lambda: "eni-0123" in str(screen.query_one("#sql-status").render()))
        assert_clean(app, "a SQL error quoting a log value")
        await p.press("escape")  # type: ignore[attr-defined]

        for key in ("exclamation_mark", "question_mark"):  # problems, help
            await p.press(key)  # type: ignore[attr-defined]
            await app.wait_settled()
            assert_clean(app, key)
            await p.press("escape")  # type: ignore[attr-defined]

        # the hostile alert (an exfiltration between the hostile pair) and its detail, then
        # every other key of the main screen, each frame checked
        feed = app.query_one(AlertFeed)
        feed.focus()
        index = next(i for i, r in enumerate(feed.rows_shown)
                     if OSC52 in (r.get("srcaddr") or "") + r["title"])
        feed.move_cursor(index)
        await p.press("enter")  # type: ignore[attr-defined]
        await app.wait_settled()
        assert "\\x1b]52;c;SGVsbG8=\\x07" in str(app.query_one("#detail").render())
        assert_clean(app, "the hostile alert's detail")
        for key in ("z", "plus", "minus", "minus", "right_square_bracket", "enter", "x", "tab",
                    "h", "l", "greater_than_sign", "less_than_sign", "f", "escape", "escape"):
            await p.press(key)  # type: ignore[attr-defined]
            await app.wait_settled()
            assert_clean(app, f"after {key}")
