"""Untrusted text: control, escape and bidi characters are made visible, nothing else changes."""

from __future__ import annotations

import json

import pytest

from core.safetext import truncate, visible
from tests import flowgen
from tui.cli import main


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain [@click=app.quit]x[/]", "plain [@click=app.quit]x[/]"),
        ("\x1b]52;c;aGVsbG8=\x07", "\\x1b]52;c;aGVsbG8=\\x07"),
        ("csi \x9b31m c1", "csi \\x9b31m c1"),
        ("user\u202egpj.exe", "user\\u202egpj.exe"),
        ("tab\tnew\nline", "tab\\x09new\\x0aline"),
        ("héllo ✓ 日本 😀", "héllo ✓ 日本 😀"),
        # look-alikes: zero-width space, joiner, word joiner, byte-order mark, a tag letter
        ("arn:aws:iam::1\u200b11:user/a\u200db", "arn:aws:iam::1\\u200b11:user/a\\u200db"),
        ("10.0.0.1\u2060\ufeff", "10.0.0.1\\u2060\\ufeff"),
        ("admin\U000e0041", "admin\\U000e0041"),
        ("line\u2028sep \x85nel", "line\\u2028sep \\x85nel"),
        ("bad \udcff byte", "bad \\udcff byte"),  # an undecodable byte (surrogateescape)
        # letters that show as nothing (Hangul fillers), and the blank braille pattern
        ("ad\u3164min \u115f\u1160\uffa0\u2800", "ad\\u3164min \\u115f\\u1160\\uffa0\\u2800"),
        ("a\u034fb\u17b4\ufe0f\U000e0100", "a\\u034fb\\u17b4\\ufe0f\\U000e0100"),
    ],
)
def test_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_truncate_counts_the_escapes() -> None:
    assert truncate("abc\x1bdef", 6) == "abc\\x…"
    assert truncate("short", 10) == "short"


def test_query_output_on_a_terminal_shows_escapes_literally(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = "evil\x1b]52;c;Y2xpcA==\x07\u202e"
    trail = tmp_path / "t.json.gz"
    trail.write_bytes(flowgen.trail_object([flowgen.trail_event("CreateVpc", user_agent=agent)]))
    state = tmp_path / "state"
    assert main(["scan", str(trail), "--state-dir", str(state)]) == 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["query", "--state-dir", str(state), "SELECT user_agent FROM cloudtrail"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "evil\\x1b]52;c;Y2xpcA==\\x07\\u202e" in out
    # a column's name is the query's text: shown the same way (it was written raw)
    assert main(["query", "--state-dir", str(state), 'SELECT 1 AS "a\x1b]0;T\x07"']) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "a\\x1b]0;T\\x07" in out
    # piped JSON keeps the exact value, escaped the JSON way
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    sql = "SELECT user_agent FROM cloudtrail"
    main(["query", "--state-dir", str(state), "--format", "json", sql])
    line = capsys.readouterr().out
    assert "\x1b" not in line and json.loads(line)["user_agent"] == agent


def test_log_lines_and_tracebacks_show_escapes_and_hide_access_keys(tmp_path) -> None:
    import logging

    from tui.logs import log_to_file

    path = tmp_path / "vpcwatch.log"
    log = logging.getLogger("vpcwatch.test")
    with log_to_file(path):
        log.warning("object %s", "key\x1b]52;c;SGk=\x07")
        try:
            raise ValueError("bad value \x1b[2J from AKIAABCDEFGHIJKLMNOP\n"
                             "2026-12-04 23:59:59,000 ERROR forged: a record of its own")
        except ValueError:
            log.exception("reading failed")
    text = path.read_text()
    assert "\x1b" not in text and "\x07" not in text
    assert "key\\x1b]52;c;SGk=\\x07" in text
    assert "ValueError: bad value \\x1b[2J from [access key redacted]" in text
    assert "  | Traceback (most recent call last):\n" in text  # still one line per line
    assert "\n  | 2026-12-04 23:59:59,000 ERROR forged" in text  # marked, not a record
