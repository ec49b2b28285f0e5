"""The conversations pane: the peers of one address, or the top talkers, in scope."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import pyarrow as pa
from rich.text import Text

from tui.cells import day_clock, number, plain, protocol_name, size, sparkline
from tui.widgets.rowtable import Column, RowTable

# bytes each way next to the addresses: they are what a pane of 64 columns must show
COLUMNS = (Column("address", 17), Column("peer", 17), Column("dir", 3),
           Column("bytes →", 10, True), Column("bytes ←", 10, True), Column("flows", 9, True),
           Column("ports", 17), Column("proto", 8), Column("pkts →", 11, True),
           Column("pkts ←", 11, True), Column("accept", 9, True), Column("reject", 9, True),
           Column("first", 14), Column("last", 14), Column("trend", 8))


class Conversations(RowTable):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COLUMNS, **kwargs)
        self.rows_shown: list[dict[str, Any]] = []

    def show(self, table: pa.Table, zone: tzinfo) -> None:
        self.rows_shown = table.to_pylist()
        self.set_rows(self.rows_shown, lambda row: _cells(row, zone))

    @property
    def selected(self) -> dict[str, Any] | None:
        if not self.rows_shown or not 0 <= self.cursor_row < len(self.rows_shown):
            return None
        return self.rows_shown[self.cursor_row]


def direction(row: dict[str, Any]) -> str:
    sent, received = row["packets_out"] or 0, row["packets_in"] or 0
    return "↔" if sent and received else "→" if sent else "←"


def _cells(row: dict[str, Any], zone: tzinfo) -> list[Text]:
    ports = ",".join(str(p) for p in row["ports"] or [] if p is not None)
    protocols = ",".join(protocol_name(p) for p in row["protocols"] or [])
    return [
        plain(row["address"], 39),
        plain(row["peer"], 39),
        Text(direction(row)),
        size(row["bytes_out"]),
        size(row["bytes_in"]),
        number(row["flows"]),
        plain(ports, 17),
        plain(protocols, 12),
        number(row["packets_out"]),
        number(row["packets_in"]),
        number(row["accepted"]),
        number(row["rejected"]),
        Text(day_clock(row["first_seen"], zone)),
        Text(day_clock(row["last_seen"], zone)),
        sparkline(row["trend"]),
    ]
