"""The traffic index's address ids (``core.traffic_index``): each address its rows hold has
an integer id, kept in ``ix_addr``, a temp table of the index's connection, so that address
and network filter terms stay SQL (``core.filters``), and in Python both ways, for the
conversations' names and a filter's single address. Id 0 is a missing address."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
from numpy.typing import NDArray


class AddressIds:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.names: list[str | None] = [None]  # each id's address
        self._ids: dict[str, int] = {}  # and the other way
        con.execute("CREATE OR REPLACE TEMP TABLE ix_addr (id INTEGER, address VARCHAR)")

    def add(self, rows: str) -> None:
        """Give an id to each address of relation ``rows`` (``srcaddr``, ``dstaddr``) that
        has none."""
        [(before,)] = self.con.execute("SELECT coalesce(max(id), 0) FROM ix_addr").fetchall()
        self.con.execute(f"""
            INSERT INTO ix_addr
            SELECT ? + row_number() OVER (), a
            FROM (SELECT srcaddr AS a FROM {rows} UNION SELECT dstaddr FROM {rows}) n
            WHERE a IS NOT NULL AND a NOT IN (SELECT address FROM ix_addr)""", [before])
        self._name(self.con.execute("SELECT id, address FROM ix_addr WHERE id > ?", [before])
                   .fetchall())

    def forget_unused(self, src: NDArray[np.int32], dst: NDArray[np.int32]) -> None:
        """Drop the ids no row uses (``src``, ``dst``: the index's address columns)."""
        ids = self.con.execute("SELECT id FROM ix_addr").fetchnumpy()["id"]
        used = np.zeros(int(ids.max(initial=0)) + 1, bool)
        used[src] = used[dst] = True
        unused = ids[~used[ids]].tolist()
        self.con.execute("DELETE FROM ix_addr WHERE id IN (SELECT unnest(?))", [unused])
        self._name([(i, None) for i in unused])

    def id_of(self, address: str) -> int | None:
        return self._ids.get(address)

    def _name(self, rows: Sequence[tuple[int, str | None]]) -> None:
        """Keep ``names`` and its reverse in step with ``ix_addr``."""
        top = max((i for i, _ in rows), default=0)
        self.names.extend([None] * (top + 1 - len(self.names)))
        for i, address in rows:
            old = self.names[i]
            if old is not None:
                del self._ids[old]
            if address is not None:
                self._ids[address] = i
            self.names[i] = address
