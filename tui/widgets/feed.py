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
from textual.widgets import DataTable

from tui.cells import clock, level_cell, number, plain, protocol_name, size

PAGE = 60  # rows in the table: more than a tall terminal shows, few enough to redraw fast
COLUMNS = ("time", "lvl", "rule", "title", "src", "dst", "port", "proto", "bytes", "count")


class AlertFeed(DataTable[Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_shown: list[dict[str, Any]] = []
        self.total = 0
        self.page_offset = 0
        self.following = True
        self.new_alerts = 0

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show(self, page: pa.Table, total: int, page_offset: int, zone: tzinfo) -> None:
        self.rows_shown = page.to_pylist()
        self.total, self.page_offset = total, page_offset
        self.clear()
        for row in self.rows_shown:
            self.add_row(*_cells(row, zone), key=row["id"])
        if self.following and self.rows_shown:
            self.move_cursor(row=0, animate=False)
            self.scroll_home(animate=False)

    @property
    def selected(self) -> dict[str, Any] | None:
        if not self.rows_shown or not 0 <= self.cursor_row < len(self.rows_shown):
            return None
        return self.rows_shown[self.cursor_row]

    def stop_following(self) -> None:
        self.following = False

    def action_cursor_down(self) -> None:
        self.stop_following()
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        self.stop_following()
        super().action_cursor_up()

    def action_page_down(self) -> None:
        self.stop_following()
        super().action_page_down()

    def action_page_up(self) -> None:
        self.stop_following()
        super().action_page_up()

    def on_mouse_scroll_down(self, event: MouseScrollDown) -> None:
        self.stop_following()

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        self.stop_following()


def _cells(row: dict[str, Any], zone: tzinfo) -> list[Text]:
    return [
        Text(clock(row["last_seen"], zone)),
        level_cell(row["level"]),
        plain(row["rule_id"], 28),
        plain(row["title"], 72),
        plain(row["srcaddr"], 39),
        plain(row["dstaddr"], 39),
        plain(row["dstport"] if row["dstport"] is not None else "", 5),
        Text(protocol_name(row["protocol"])),
        size(row["bytes"]) if row["source"] == "vpcflow" else Text(""),
        number(row["count"]),
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
    text.append("  key ")
    text.append(plain(row["group_key"], 200))
    text.append(f"  objects {row.get('object_count') or 0}")
    return text
