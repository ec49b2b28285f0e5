"""The app's tools: export, copy, SQL, problems, help and the command palette's entries.
Mixed into :class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from rich.text import Text
from textual.app import SystemCommand
from textual.screen import Screen

from core.alerts import each_alert_document
from core.export import export_rows
from core.permissions import write_private
from core.safetext import visible
from core.sandbox import QueryStopped, ReadOnlyError, Sandbox
from tui.keys import KEYS, key_label
from tui.screens import HelpScreen, SqlScreen, TableScreen
from tui.widgets.conversations import Conversations
from tui.widgets.feed import AlertFeed

SQL_ROW_LIMIT = 1000  # rows the SQL prompt shows


class Tools:
    def action_export(self, fmt: str) -> None:
        self._background("export", self._export(fmt))

    async def _export(self, fmt: str) -> Path:
        explorer = self.explorer
        assert explorer is not None
        rows: Iterable[dict[str, Any]]
        if self.focused is self.query_one(Conversations):
            rows = self.query_one(Conversations).rows_shown
            count, stem = len(rows), "vpcwatch-conversations"
        else:
            table = await self._read(explorer.feed, self.scope, 0, 10_000_000)
            rows, count, stem = each_alert_document(table), table.num_rows, "vpcwatch-alerts"
        path = await asyncio.to_thread(export_rows, rows, self.export_dir, stem, fmt)
        self.notify(visible(f"{count:,} rows written to {path}"), title="export", markup=False)
        self.last_export = path
        return path

    def action_copy(self) -> None:
        table = self.focused if isinstance(self.focused, Conversations) else self.query_one(
            AlertFeed)
        row = table.selected  # type: ignore[union-attr]
        if row is None:
            return
        text = "\t".join("" if v is None else str(v) for v in row.values())
        self.copy_to_clipboard(text)  # OSC 52: base64, so the row's text cannot escape it
        path = self.export_dir / "vpcwatch-copied.txt"
        try:
            write_private(path, text + "\n")
        except OSError as exc:
            self.notify(visible(f"copied (OSC 52); not written to {path}: {exc.strerror}"),
                        severity="warning", markup=False)
            return
        self.notify(visible(f"copied (OSC 52); also written to {path}"), markup=False)

    def action_sql(self) -> None:
        screen = SqlScreen(lambda text: self._background("sql", self._sql(screen, text)),
                           self._stop_sql)
        self.push_screen(screen)

    async def _sql(self, screen: SqlScreen, text: str) -> None:
        """Run on the sandbox's own thread (core.sandbox): a slow query never holds up the
        views; the previous one, if still running, is interrupted."""
        if self.sandbox is None:
            self.sandbox = await self._read(Sandbox, self.store)
        self._stop_sql()
        try:
            result = await asyncio.to_thread(self.sandbox.run, text, SQL_ROW_LIMIT + 1)
        except (ReadOnlyError, QueryStopped, duckdb.Error) as exc:
            screen.show(None, str(exc).splitlines()[0] if str(exc) else repr(exc))
            return
        more = result.num_rows > SQL_ROW_LIMIT  # (one row past the limit tells)
        screen.show(result.slice(0, SQL_ROW_LIMIT), None, more)

    def _stop_sql(self) -> None:
        if self.sandbox is not None:
            self.sandbox.interrupt()

    def action_problems(self) -> None:
        self._background("problems", self._problems())

    async def _problems(self) -> None:
        assert self.explorer is not None
        table = await self._read(self.explorer.problems)
        rows = table.to_pylist() + [{"bucket": "", "key": "", "status": "error", "error": e,
                                     "updated": None} for e in self.activity.errors]
        data = pa.Table.from_pylist(rows) if rows else table
        await self.push_screen(TableScreen(Text(f"{len(rows)} problems (Esc closes)"), data))

    def action_help(self) -> None:
        self.push_screen(HelpScreen([(key_label(k), d) for k, _, _, d in KEYS]))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Filter by IP…", "open the filter bar", self.action_open_filter)
        yield SystemCommand("Jump to biggest peak", "select the chart's biggest peak",
                            self.action_biggest_peak)
        yield SystemCommand("Export view… (CSV)", "the feed, or the focused conversations",
                            lambda: self.action_export("csv"))
        yield SystemCommand("Export view… (JSON)", "the feed, or the focused conversations",
                            lambda: self.action_export("json"))
        yield SystemCommand("SQL on the store…", "read-only", self.action_sql)
        yield SystemCommand("Problems", "quarantined objects, denied prefixes, errors",
                            self.action_problems)
