"""A read-only table drawn with Textual's line API: only the visible rows are rendered.

Textual's DataTable measures every cell of every row after each update (about 0.1 ms a cell),
which made redrawing the feed and the conversations the largest share of a view change. Here
columns have fixed widths, a row's cells are made and joined into one line only when it is
on screen, and a new page of rows costs nothing until it is drawn. Keys: ↑ ↓ PgUp PgDn
Home, Enter (or a click) selects the row; the app's h and l scroll it a column sideways.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Row = TypeVar("Row")


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
        self._rows: Sequence[Any] = []
        self._cells_of: Callable[[Any], list[Text]] = lambda row: []
        self._cells: dict[int, list[Text]] = {}
        self.cursor_row = 0
        self._lines: dict[int, Strip] = {}
        self._width = sum(c.width + 1 for c in self.columns)

    # -- content -------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def set_rows(self, rows: Sequence[Row], cells: Callable[[Row], list[Text]]) -> None:
        """Show ``rows``; ``cells`` makes a row's cells when it is first drawn."""
        self._rows, self._cells_of = rows, cells
        self._cells.clear()
        self.cursor_row = min(self.cursor_row, max(0, len(rows) - 1))
        self._lines.clear()
        size = Size(self._width, len(rows) + 1)
        if size != self.virtual_size:  # without a layout pass: only the scrollbars change
            self.set_reactive(RowTable.virtual_size, size)
            self._scroll_update(size)
        self.refresh()

    def row_at(self, index: int) -> list[Text]:
        if index not in self._cells:
            self._cells[index] = self._cells_of(self._rows[index])
        return self._cells[index]

    def move_cursor(self, row: int) -> None:
        if not self._rows:
            return
        self.cursor_row = min(max(0, row), len(self._rows) - 1)
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
            style = base + self.get_component_rich_style("rowtable--header")
            header = self._strip([Text(c.label) for c in self.columns], style)
            return header.crop_extend(scroll_x, scroll_x + width, style)
        index = scroll_y + y - 1
        if index >= len(self._rows):
            return Strip.blank(width, base)
        if index not in self._lines:
            style = base
            if index == self.cursor_row:
                style = base + self.get_component_rich_style("rowtable--cursor")
            self._lines[index] = self._strip(self.row_at(index), style)
        return self._lines[index].crop_extend(scroll_x, scroll_x + width, base)

    def _strip(self, cells: list[Text], style: Style) -> Strip:
        """The cells in their columns (cut with an ellipsis, padded), on the row's ``style``
        (a cell's own colour shows over it: the level's, for one)."""
        segments = []
        for column, cell in zip(self.columns, cells, strict=False):
            if cell.spans:  # (parts styled apart: let rich lay the cell out)
                shown = cell.copy()
                shown.truncate(column.width, overflow="ellipsis")
                if column.right:
                    shown.align("right", column.width)
                else:
                    shown.pad_right(column.width - shown.cell_len)
                shown.stylize_before(style)
                segments += shown.render(self.app.console)
            else:
                own = self.app.console.get_style(cell.style) if cell.style else Style.null()
                segments.append(Segment(_fit(cell.plain, column.width, column.right),
                                        style + own))
            segments.append(Segment(" ", style))
        return Strip(segments, self._width)

    def on_focus(self) -> None:
        self._lines.clear()
        self.refresh()

    def on_blur(self) -> None:
        self._lines.clear()
        self.refresh()

    # -- keys and mouse --------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def scroll_columns(self, step: int) -> None:
        """Scroll sideways to the start of the next column (``step`` 1) or the previous one
        (-1): a table is wider than its pane below about 200 columns of terminal."""
        starts = [sum(c.width + 1 for c in self.columns[:i]) for i in range(len(self.columns))]
        here = round(self.scroll_x)
        if step > 0:
            target = next((x for x in starts if x > here), here)
        else:
            target = max((x for x in starts if x < here), default=0)
        self.scroll_to(x=target, animate=False)

    def action_page(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step * max(1, self.size.height - 2))

    def action_top(self) -> None:
        self.move_cursor(0)

    def action_select(self) -> None:
        if self._rows:
            self.post_message(self.Selected(self, self.cursor_row))

    def on_click(self, event: Click) -> None:
        index = int(self.scroll_y) + event.y - 1
        if event.y >= 1 and 0 <= index < len(self._rows):
            self.move_cursor(index)
            self.post_message(self.Selected(self, index))


def _fit(text: str, width: int, right: bool) -> str:
    """``text`` in ``width`` cells: cut with an ellipsis (as rich's Text.truncate does) and
    padded on the left (``right``) or on the right."""
    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…"
    padding = " " * (width - cell_len(text))
    return padding + text if right else text + padding
