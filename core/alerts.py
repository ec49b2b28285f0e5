"""Alerts as the command line and the app show them: the stored detections, and the
Wazuh-parity alerts derived from the flows of the range asked for (``core.rules.parity``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from core.rules import parity
from core.store import Store, StoreError
from core.store.segments import Segments, read_failure

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
    are made or read (DuckDB out of memory) is a StoreError of one line.

    Without a ``limit``, the parity alerts are derived into a temporary table first, the
    stored ones added, and that one table sorted: DuckDB sorts a table through its spill
    directory when memory runs short, where sorting the union with the derivation ran out
    (a day of 10 M flows, 7 M alerts: out of memory at a 4 GB limit; so, within 1 GB). With
    a limit, the newest few are picked as the rows are derived, no table needed."""
    stored, params, derived = parts = _parts(store, since, min_level, True)
    try:
        if derived is None or limit is not None:
            yield from _batches(_relation(store, parts, limit))
            return
        store.con.execute(f"CREATE OR REPLACE TEMP TABLE {_ALL} AS {stored} LIMIT 0", params)
        store.con.execute(f"INSERT INTO {_ALL} BY NAME {derived}")
        store.con.execute(f"INSERT INTO {_ALL} BY NAME {stored}", params)
        yield from _batches(store.con.sql(f"SELECT * FROM {_ALL}{_ORDER}"))
    except duckdb.Error as exc:
        raise _failed(exc) from None
    finally:
        if derived is not None and limit is None:
            with contextlib.suppress(duckdb.Error):
                store.con.execute(f"DROP TABLE IF EXISTS {_ALL}")


_ALL = "alerts_printed"  # (alert_batches' table)
_ORDER = " ORDER BY last_seen DESC, level DESC, id"


def _batches(relation: duckdb.DuckDBPyRelation) -> Iterator[pa.RecordBatch]:
    reader = relation.to_arrow_reader(BATCH_ROWS)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowException, OSError, duckdb.Error) as exc:
            raise _failed(exc) from None
        yield batch


def _failed(exc: Exception) -> StoreError:
    return StoreError(f"reading the alerts failed: {read_failure(str(exc))}")


def alerts_relation(store: Store, since: int | None = None, min_level: int = 0,
                    limit: int | None = None, with_parity: bool = True
                    ) -> duckdb.DuckDBPyRelation:
    """Alerts whose last record is at or after ``since`` (epoch seconds), newest first: the
    stored ones and, when ``min_level`` lets them in (and ``with_parity``), the parity alerts
    of those flows."""
    return _relation(store, _parts(store, since, min_level, with_parity), limit)


def _relation(store: Store, parts: tuple[str, list[Any], str | None], limit: int | None
              ) -> duckdb.DuckDBPyRelation:
    sql, params, derived = parts
    params = list(params)
    if derived is not None:
        sql += f" UNION ALL BY NAME SELECT * FROM ({derived})"
    sql += _ORDER
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return store.con.sql(sql, params=params)


def _parts(store: Store, since: int | None, min_level: int, with_parity: bool
           ) -> tuple[str, list[Any], str | None]:
    """The stored alerts' query and its parameters, and the parity alerts' (None: none)."""
    sql = "SELECT *, false AS derived FROM alerts WHERE level >= ?"
    params: list[Any] = [min_level]
    if since is not None:
        sql += " AND last_seen >= ?"
        params.append(since)
    wanted = with_parity and min_level <= parity.MAX_LEVEL
    flows = parity_flows(store.con, store.segments, since, None) if wanted else None
    derived = None if flows is None else parity.select(flows, min_level, seen_since=since)
    return sql, params, derived


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
            out[name] = _iso(out[name])
    for name in ("created", "updated"):
        if isinstance(out.get(name), datetime):
            out[name] = out[name].strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("mitre", "objects"):
        out[name] = json.loads(out[name]) if out.get(name) else []
    out["group"] = json.loads(out.pop("group_key") or "{}")
    out["details"] = json.loads(out.get("details") or "{}")
    return out


def _iso(seconds: int) -> str:
    """Epoch seconds in ISO 8601 UTC; a time no date can show (a store written before such
    records were refused as bad lines) as its number, not a failure of the whole output."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return str(seconds)
