"""A read-only table drawn with Textual's line API: only the visible rows are rendered.

Textual's DataTable measures every cell of every row after each update (about 0.1 ms a cell),
which made redrawing the feed and the conversations the largest share of a view change. Here
columns have fixed widths, a row becomes one ``Text`` only when it is on screen, and a new
page of rows costs nothing until it is drawn. Keys: ↑ ↓ PgUp PgDn Home, Enter (or a click)
selects the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True)
class Column:
    label: str
    width: int
    right: bool = False  # right-aligned (numbers)


class RowTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RowTable { height: 1fr; }
    RowTable > .rowtable--header { text-style: bold; background: $panel; }
    RowTable > .rowtable--cursor { background: $accent 30%; }
    RowTable:focus > .rowtable--cursor { background: $accent 60%; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"rowtable--header", "rowtable--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "top", "top", show=False),
        Binding("enter", "select", "select", show=False),
    ]

    class Selected(Message):
        """A row was chosen (Enter or a click)."""

        def __init__(self, table: RowTable, index: int) -> None:
            super().__init__()
            self.table, self.index = table, index

        @property
        def control(self) -> RowTable:
            return self.table

    def __init__(self, columns: Sequence[Column], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.columns = list(columns)
        self.cells: list[list[Text]] = []
        self.cursor_row = 0
        self._lines: dict[int, Strip] = {}
        self._width = sum(c.width + 1 for c in self.columns)

    # -- content -------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.cells)

    def set_rows(self, rows: list[list[Text]]) -> None:
        self.cells = rows
        self.cursor_row = min(self.cursor_row, max(0, len(rows) - 1))
        self._lines.clear()
        size = Size(self._width, len(rows) + 1)
        if size != self.virtual_size:  # without a layout pass: only the scrollbars change
            self.set_reactive(RowTable.virtual_size, size)
            self._scroll_update(size)
        self.refresh()

    def row_at(self, index: int) -> list[Text]:
        return self.cells[index]

    def move_cursor(self, row: int) -> None:
        if not self.cells:
            return
        self.cursor_row = min(max(0, row), len(self.cells) - 1)
        self._lines.clear()
        visible = self.size.height - 1
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif visible > 0 and self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)
        self.refresh()

    # -- drawing -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            text = self._line([Text(c.label) for c in self.columns])
            style = self.get_component_rich_style("rowtable--header")
            return self._strip(text, base + style, scroll_x, width)
        index = scroll_y + y - 1
        if index >= len(self.cells):
            return Strip.blank(width, base)
        if index not in self._lines:
            style = base
            if index == self.cursor_row:
                style = base + self.get_component_rich_style("rowtable--cursor")
            self._lines[index] = self._strip(self._line(self.cells[index]), style, 0, None)
        return self._lines[index].crop_extend(scroll_x, scroll_x + width, base)

    def _line(self, cells: list[Text]) -> Text:
        line = Text(no_wrap=True, end="")
        for column, cell in zip(self.columns, cells, strict=False):
            shown = cell.copy()
            shown.truncate(column.width, overflow="ellipsis")
            if column.right:
                shown.align("right", column.width)
            else:
                shown.pad_right(column.width - shown.cell_len)
            line.append_text(shown)
            line.append(" ")
        return line

    def _strip(self, text: Text, style: Style, scroll_x: int, width: int | None) -> Strip:
        text.stylize(style)
        strip = Strip(text.render(self.app.console), text.cell_len)
        return strip if width is None else strip.crop_extend(scroll_x, scroll_x + width, style)

    def on_focus(self) -> None:
        self._lines.clear()
        self.refresh()

    def on_blur(self) -> None:
        self._lines.clear()
        self.refresh()

    # -- keys and mouse --------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step * max(1, self.size.height - 2))

    def action_top(self) -> None:
        self.move_cursor(0)

    def action_select(self) -> None:
        if self.cells:
            self.post_message(self.Selected(self, self.cursor_row))

    def on_click(self, event: Click) -> None:
        index = int(self.scroll_y) + event.y - 1
        if event.y >= 1 and 0 <= index < len(self.cells):
            self.move_cursor(index)
            self.post_message(self.Selected(self, index))
