"""Stored alerts as the command line and the app show them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from core.store import Store

_TIMES = ("window_start", "first_seen", "last_seen")


def recent_alerts(store: Store, since: int | None = None, min_level: int = 0,
                  limit: int | None = None) -> pa.Table:
    """Alerts whose last record is at or after ``since`` (epoch seconds), newest first."""
    sql = "SELECT * FROM alerts WHERE level >= ?"
    params: list[Any] = [min_level]
    if since is not None:
        sql += " AND last_seen >= ?"
        params.append(since)
    sql += " ORDER BY last_seen DESC, level DESC, id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return store.con.sql(sql, params=params).to_arrow_table()


def alert_documents(table: pa.Table) -> list[dict[str, Any]]:
    """One JSON-ready object per alert: times in ISO 8601 UTC, lists and the group decoded."""
    return [_document(row) for row in table.to_pylist()]


def _document(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _TIMES:
        if out.get(name) is not None:
            out[name] = datetime.fromtimestamp(out[name], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("created", "updated"):
        if isinstance(out.get(name), datetime):
            out[name] = out[name].strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("mitre", "objects"):
        out[name] = json.loads(out[name]) if out.get(name) else []
    out["group"] = json.loads(out.pop("group_key") or "{}")
    return out
