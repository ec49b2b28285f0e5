"""Modal screens: help, raw flows of a conversation, the SQL prompt, problems."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pyarrow as pa
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from tui.cells import plain

MAX_CELL = 60


def fill_table(table: DataTable[Any], data: pa.Table) -> None:
    """Replace ``table``'s content with ``data``; every cell literal text (never markup)."""
    table.clear(columns=True)
    table.add_columns(*[plain(name, MAX_CELL) for name in data.column_names])
    for row in zip(*(c.to_pylist() for c in data.columns), strict=True):  # (names repeat)
        table.add_row(*[plain(v, MAX_CELL) for v in row])


class Closable(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_screen", "close"),
                Binding("q", "dismiss_screen", "close", show=False)]

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class HelpScreen(Closable):
    """Every key, from the same table the bindings are made of."""

    def __init__(self, keys: Sequence[tuple[str, str]]):
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        text = Text("vpcwatch keys (Esc closes)\n\n", style="bold")
        for key, description in self.keys:
            text.append(f"{key:>16}  ", style="bold cyan")
            text.append(f"{description}\n")
        text.append("\nFilter terms: IP, CIDR, src:, dst:, port:, proto:tcp|udp|icmp|N, "
                    "action:accept|reject, rule:ID, level>=N, eni:, vpc:, acct:, !negation; "
                    "terms combine with AND.", style="dim")
        with Vertical(id="help"):
            yield Static(text, id="help-text")


class TableScreen(Closable):
    """A title and a table (raw flows of a conversation, problems)."""

    def __init__(self, title: Text, data: pa.Table):
        super().__init__()
        self.heading, self.data = title, data

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Static(self.heading)
            yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        fill_table(self.query_one(DataTable), self.data)


class SqlScreen(Closable):
    """``:`` — one read-only query against the store; the result as a table."""

    def __init__(self, run: Callable[[str], Any], stop: Callable[[], None]):
        super().__init__()
        self.run = run  # async: the app runs it on the sandbox's thread and calls show()
        self.stop = stop  # interrupts a query still running (when the screen closes)

    def on_unmount(self) -> None:
        self.stop()

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal"):
            yield Input(placeholder="SELECT … FROM flows | alerts | cloudtrail | objects "
                        "(Enter runs, Esc closes)", id="sql-input")
            yield Static("", id="sql-status")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="sql-result")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#sql-status", Static).update(Text("running…"))
        self.run(event.value)

    def show(self, result: pa.Table | None, error: str | None, more: bool = False) -> None:
        """A query's rows (``more``: it had more than these), or why it failed. Nothing once
        the screen is closed (Esc stops the query and closes it: the stopped query's answer
        then found no status line, and showed an internal error)."""
        if not self.is_attached:
            return
        status = self.query_one("#sql-status", Static)
        if error is not None:
            status.update(plain(error, None, style="red"))
            return
        assert result is not None
        status.update(Text(f"the first {result.num_rows} rows (`vpcwatch query` prints all)"
                           if more else f"{result.num_rows} rows"))
        fill_table(self.query_one("#sql-result", DataTable), result)
