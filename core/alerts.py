"""Alerts as the command line and the app show them: the stored detections, and the
Wazuh-parity alerts derived from the flows of the range asked for (``core.rules.parity``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from core.rules import parity
from core.store import Store, StoreError
from core.store.segments import Segments

_TIMES = ("window_start", "first_seen", "last_seen")


BATCH_ROWS = 10_000  # (alert_batches)


def recent_alerts(store: Store, since: int | None = None, min_level: int = 0,
                  limit: int | None = None, with_parity: bool = True) -> pa.Table:
    """``alerts_relation``'s rows, all at once."""
    return alerts_relation(store, since, min_level, limit, with_parity).to_arrow_table()


def alert_batches(store: Store, since: int | None = None, min_level: int = 0,
                  limit: int | None = None) -> Iterator[pa.RecordBatch]:
    """``alerts_relation``'s rows, a batch at a time, whatever their number: what the command
    line prints (a day of dense traffic derives millions of parity alerts; all at once, and
    as Python objects, they took more memory than a 24 GB host had). A failure while they
    are read (DuckDB out of memory) is a StoreError of one line."""
    reader = alerts_relation(store, since, min_level, limit).to_arrow_reader(BATCH_ROWS)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowException, OSError, duckdb.Error) as exc:
            raise StoreError(f"reading the alerts failed: {str(exc).splitlines()[0]}"
                             ) from None
        yield batch


def alerts_relation(store: Store, since: int | None = None, min_level: int = 0,
                    limit: int | None = None, with_parity: bool = True
                    ) -> duckdb.DuckDBPyRelation:
    """Alerts whose last record is at or after ``since`` (epoch seconds), newest first: the
    stored ones and, when ``min_level`` lets them in (and ``with_parity``), the parity alerts
    of those flows."""
    sql = "SELECT *, false AS derived FROM alerts WHERE level >= ?"
    params: list[Any] = [min_level]
    if since is not None:
        sql += " AND last_seen >= ?"
        params.append(since)
    wanted = with_parity and min_level <= parity.MAX_LEVEL
    flows = parity_flows(store.con, store.segments, since, None) if wanted else None
    if flows is not None:
        derived = parity.select(flows, min_level, seen_since=since)
        sql += f" UNION ALL BY NAME SELECT * FROM ({derived})"
    sql += " ORDER BY last_seen DESC, level DESC, id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return store.con.sql(sql, params=params)


def parity_flows(con: duckdb.DuckDBPyConnection, segments: Segments, since: int | None,
                 until: int | None) -> str | None:
    """The flows of every parity window that may hold an alert seen in [since, until)
    (last record at or after ``since``, first before ``until``): whole windows, as
    ``parity.select`` needs; the caller keeps the alerts seen in the range. Read from the
    segments that may hold them only (half the time of the ``flows`` view over every
    segment, for 10 minutes of 10 M flows). None when there is none. ``con``: the caller's
    connection (its thread's)."""
    low = 0
    if since is not None:  # from the window of the first flow still running at ``since``
        crossing = segments.sql(segments.between(since, since + 1, con=con))
        first = con.execute(f'SELECT min(start) FROM ({crossing}) WHERE start < ? '
                            'AND "end" >= ?', [since, since]).fetchall()[0][0]
        low = parity.window_floor(min(since, int(first)) if first is not None else since)
    high = None if until is None else parity.window_floor(until - 1) + parity.WINDOW
    names = segments.between(low, high, con=con)
    if not names:
        return None
    bounds = f"start >= {low}" + ("" if high is None else f" AND start < {high}")
    return f"(SELECT * FROM ({segments.sql(names)}) WHERE {bounds})"


def alert_documents(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """One JSON-ready object per alert: times in ISO 8601 UTC, lists and the group decoded."""
    return [_document(row) for row in table.to_pylist()]


def each_alert_document(table: pa.Table) -> Iterator[dict[str, Any]]:
    """``alert_documents``, made a batch at a time as they are asked for."""
    for batch in table.to_batches(BATCH_ROWS):
        yield from alert_documents(batch)


def _document(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out.setdefault("derived", False)  # (stored alerts as a commit reports them)
    for name in _TIMES:
        if out.get(name) is not None:
            out[name] = datetime.fromtimestamp(out[name], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("created", "updated"):
        if isinstance(out.get(name), datetime):
            out[name] = out[name].strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("mitre", "objects"):
        out[name] = json.loads(out[name]) if out.get(name) else []
    out["group"] = json.loads(out.pop("group_key") or "{}")
    out["details"] = json.loads(out.get("details") or "{}")
    return out
