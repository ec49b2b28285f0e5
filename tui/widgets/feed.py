"""The alert feed: a bounded window (one page) of the alerts in scope, newest first.

The store may hold millions of alerts; the table holds one page of them (``PAGE`` rows) and
``<``/``>`` move between pages. It follows new alerts until the user moves in it; then new
alerts are only counted ("N new") until ``End``/``f`` resumes following.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import pyarrow as pa
from rich.text import Text
from textual.events import MouseScrollDown, MouseScrollUp

from tui.cells import clock, level_cell, number, plain, protocol_name, size
from tui.widgets.rowtable import Column, RowTable

PAGE = 60  # rows in the table: more than a tall terminal shows, few enough to redraw fast
# the title last: it is a sentence, and where a narrow pane cuts it the detail line shows it
COLUMNS = (Column("time", 8), Column("lvl", 3, right=True), Column("rule", 28),
           Column("src", 17), Column("dst", 17), Column("port", 5, True), Column("proto", 5),
           Column("bytes", 10, True), Column("count", 8, True), Column("title", 64))


class AlertFeed(RowTable):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COLUMNS, **kwargs)
        self.rows_shown: list[dict[str, Any]] = []
        self.total = 0
        self.total_partial = False  # total is a lower bound
        self.page_offset = 0
        self.following = True
        self.new_alerts = 0

    def show(self, page: pa.Table, total: int, page_offset: int, zone: tzinfo) -> None:
        self.rows_shown = page.to_pylist()
        self.total, self.page_offset = total, page_offset
        self.set_rows(self.rows_shown, lambda row: _cells(row, zone))
        if self.following and self.rows_shown:
            self.move_cursor(0)

    @property
    def selected(self) -> dict[str, Any] | None:
        if not self.rows_shown or not 0 <= self.cursor_row < len(self.rows_shown):
            return None
        return self.rows_shown[self.cursor_row]

    def stop_following(self) -> None:
        self.following = False

    def action_cursor(self, step: int) -> None:
        self.stop_following()
        super().action_cursor(step)

    def action_page(self, step: int) -> None:
        self.stop_following()
        super().action_page(step)

    def on_mouse_scroll_down(self, event: MouseScrollDown) -> None:
        self.stop_following()

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        self.stop_following()


def _cells(row: dict[str, Any], zone: tzinfo) -> list[Text]:
    return [
        Text(clock(row["last_seen"], zone)),
        level_cell(row["level"]),
        plain(row["rule_id"], 28),
        plain(row["srcaddr"], 39),
        plain(row["dstaddr"], 39),
        plain(row["dstport"] if row["dstport"] is not None else "", 5),
        Text(protocol_name(row["protocol"])),
        size(row["bytes"]) if row["source"] == "vpcflow" else Text(""),
        number(row["count"]),
        plain(row["title"], 72),
    ]


def detail(row: dict[str, Any] | None, zone: tzinfo) -> Text:
    """One line about the selected alert: rule, times, counts, its key and objects."""
    if row is None:
        return Text("select an alert (Enter) to see its details and conversations", style="dim")
    text = Text()
    text.append(f"{row['rule_id']} ", style="bold")
    text.append(f"level {row['level']}  {clock(row['first_seen'], zone)}"
                f"–{clock(row['last_seen'], zone)}  count {row['count']:,}  ")
    text.append(plain(row["title"], 300))
    where = [row.get(name) for name in ("account_id", "region", "vpc_id", "interface_id")]
    if any(where):
        text.append("  in ")
        text.append(plain(" ".join(str(value) for value in where if value), 200))
    if row.get("details"):
        text.append("  ")
        text.append(plain(row["details"], 300))
    text.append("  key ")
    text.append(plain(row["group_key"], 200))
    text.append(f"  objects {row.get('object_count') or 0}")
    if row.get("revision") == 0:
        text.append("  (derived from the flows)", style="dim")
    return text
