"""Traffic summaries written at commit time: what the app shows over long ranges.

``traffic_minutes`` holds, for each segment, its flows, packets and bytes per minute of
start time, account, VPC, interface and action. A segment's rows are written in the
transaction that lists it and deleted in the one that unlists it (retention, compaction, a
replaced object's rewrite), so the summary always equals the same aggregation over the
listed segments: exactly once by construction, with no state of its own to repair after a
crash. Rows of one minute and key may exist once per segment; readers add them up.

Size: one row per minute, interface and action seen in a segment, whatever the number of
flows (docs/app.md gives the figures).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from core.rules.sqlparts import as_bigint, literal

TABLE = "traffic_minutes"  # (created with the other tables: core.store.schema)
DIMENSIONS = ("account_id", "vpc_id", "interface_id", "action")
MINUTE = 60


def summary_sql(segment: str, relation: str) -> str:
    """The summary rows of ``relation`` (flows of one segment), as SQL."""
    dims = ", ".join(f"{d}::VARCHAR AS {d}" for d in DIMENSIONS)
    return (f"SELECT {literal(segment)} AS segment, "
            f"start // {MINUTE} * {MINUTE} AS minute, {dims}, "
            f"count(*) AS flows, {as_bigint('coalesce(sum(packets), 0)')} AS packets, "
            f"{as_bigint('coalesce(sum(bytes), 0)')} AS bytes FROM {relation} GROUP BY ALL")


def flows_per_minute(con: duckdb.DuckDBPyConnection, since: int) -> list[tuple[int, int]]:
    """(minute, flows) of the minutes from ``since`` on, newest first."""
    rows = con.execute(f"SELECT minute, sum(flows) FROM {TABLE} WHERE minute >= ? "
                       "GROUP BY minute ORDER BY minute DESC", [since]).fetchall()
    return [(int(minute), int(flows)) for minute, flows in rows]


def flows_between(con: duckdb.DuckDBPyConnection, first: int, end: int) -> int:
    """The flows that start in the minutes of [first, end)."""
    [(flows,)] = con.execute(f"SELECT coalesce(sum(flows), 0) FROM {TABLE} WHERE minute >= ? "
                             "AND minute < ?", [first // MINUTE * MINUTE, end]).fetchall()
    return int(flows)


def write(con: duckdb.DuckDBPyConnection, segment: str, flows: pa.Table) -> None:
    """Summarise a segment being listed (inside the caller's transaction)."""
    needed = {name: pa.string() for name in DIMENSIONS} | {
        name: pa.int64() for name in ("start", "packets", "bytes")}
    con.register("summarised_flows", pa.table({  # (only these: a commit's batch is big)
        name: flows[name] if name in flows.column_names else pa.nulls(flows.num_rows, kind)
        for name, kind in needed.items()}))
    try:
        con.execute(f"INSERT INTO {TABLE} BY NAME {summary_sql(segment, 'summarised_flows')}")
    finally:  # (after a failed statement the transaction is aborted, and this fails too:
        with contextlib.suppress(duckdb.Error):  # the statement's error is the one to see)
            con.unregister("summarised_flows")


def forget(con: duckdb.DuckDBPyConnection, segments: Sequence[str]) -> None:
    """Delete the summary of segments being unlisted (inside the caller's transaction)."""
    con.execute(f"DELETE FROM {TABLE} WHERE list_contains(?, segment)", [list(segments)])


def unsummarised(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Listed segments without a summary: those of a store written before summaries."""
    rows = con.execute(f"SELECT name FROM segments WHERE name NOT IN "
                       f"(SELECT DISTINCT segment FROM {TABLE}) ORDER BY created, name"
                       ).fetchall()
    return [row[0] for row in rows]
