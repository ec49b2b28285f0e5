"""The ledger: what became of every object listed (``objects``), the prefixes S3 refused to
list (``prefixes``), and how far a backfill got (``meta``). Objects' entries are written in
the commit that stores their rows (see ``core.store.database``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

from core.layouts import Kind
from core.objects import ObjectRef, ObjectResult, Status
from core.store.schema import NOW
from core.store.transaction import transaction

_LEDGER_SCHEMA = pa.schema(
    [
        ("bucket", pa.string()),
        ("key", pa.string()),
        ("etag", pa.string()),
        ("size", pa.int64()),
        ("kind", pa.string()),
        ("account_id", pa.string()),
        ("region", pa.string()),
        ("key_day", pa.date32()),
        ("status", pa.string()),
        ("attempts", pa.int32()),
        ("last_error", pa.string()),
        ("records", pa.int64()),
        ("bad_lines", pa.int64()),
        ("bad_reasons", pa.string()),
        ("discarded", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Candidate:
    """A listed object the ledger says must be read."""

    ref: ObjectRef
    attempts: int  # attempts made in earlier polls
    replaces: bool  # it was done with another ETag: its old rows go
    known: bool = False  # the ledger had it already (pending, blocked or changed)


def candidates(con: duckdb.DuckDBPyConnection, listed: Sequence[ObjectRef]) -> list[Candidate]:
    """The listed objects that must be read: new, changed, pending or blocked ones."""
    if not listed:
        return []
    table = pa.table(
        {
            "i": pa.array(range(len(listed)), pa.int64()),
            "bucket": [ref.bucket for ref in listed],
            "key": [ref.key for ref in listed],
            "etag": [ref.etag for ref in listed],
        }
    )
    con.register("listed", table)
    try:
        rows = con.execute(
            """
            SELECT l.i, coalesce(o.attempts, 0), o.status = 'done' AND o.etag <> l.etag,
                   o.key IS NOT NULL
            FROM listed l LEFT JOIN objects o ON o.bucket = l.bucket AND o.key = l.key
            WHERE o.key IS NULL OR o.etag <> l.etag OR o.status IN ('pending', 'blocked')
            ORDER BY l.i
            """
        ).fetchall()
    finally:
        con.unregister("listed")
    return [Candidate(listed[i], attempts, bool(replaces), known)
            for i, attempts, replaces, known in rows]


def write(con: duckdb.DuckDBPyConnection, results: Sequence[ObjectResult]) -> None:
    """The results' ledger entries (inside the caller's transaction), keeping first_seen."""
    ledger = pa.Table.from_pylist([_row(result) for result in results], schema=_LEDGER_SCHEMA)
    con.register("ledger_batch", ledger)
    try:
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE ledger_first_seen AS
            SELECT o.bucket, o.key, o.first_seen FROM objects o
            JOIN ledger_batch b ON o.bucket = b.bucket AND o.key = b.key
            """
        )
        con.execute(
            "DELETE FROM objects o USING ledger_batch b "
            "WHERE o.bucket = b.bucket AND o.key = b.key"
        )
        con.execute(
            f"""
            INSERT INTO objects BY NAME
            SELECT b.*, coalesce(f.first_seen, {NOW}) AS first_seen, {NOW} AS updated
            FROM ledger_batch b
            LEFT JOIN ledger_first_seen f ON f.bucket = b.bucket AND f.key = b.key
            """
        )
    finally:
        con.unregister("ledger_batch")


def record_prefixes(con: duckdb.DuckDBPyConnection, bucket: str, blocked: dict[str, str],
                    ok: set[str]) -> None:
    """Remember which prefixes S3 refused to list (and forget those it listed again)."""
    with transaction(con):
        con.execute(
            "DELETE FROM prefixes WHERE bucket = ? AND list_contains(?, prefix)",
            [bucket, [*blocked, *ok]],
        )
        for prefix, error in blocked.items():
            con.execute(f"INSERT INTO prefixes VALUES (?, ?, 'blocked', ?, {NOW})",
                        [bucket, prefix, error])


@dataclass(frozen=True)
class Scope:
    """The objects one ``[[bucket]]`` entry lists: two entries may share a bucket (flow logs
    and CloudTrail, or two accounts' roles), and each must retry only its own objects."""

    bucket: str
    prefix: str  # every key the entry lists starts with it
    kinds: tuple[Kind, ...]
    accounts: tuple[str, ...] = ()  # () for every account
    regions: tuple[str, ...] = ()  # () for every region


def retry_quarantined(con: duckdb.DuckDBPyConnection) -> int:
    """Quarantined objects become pending, their attempts counted from 0 (see
    ``Store.retry_quarantined``)."""
    rows = con.execute("UPDATE objects SET status = 'pending', attempts = 0, updated = "
                       f"{NOW} WHERE status = 'quarantined'").fetchall()
    return int(rows[0][0]) if rows else 0


def unfinished_before(con: duckdb.DuckDBPyConnection, scope: Scope, day: date
                      ) -> list[Candidate]:
    """Pending or blocked objects of ``scope`` dated before ``day``: no listing will show
    them again, so they are retried from the ledger."""
    rows = con.execute(
        "SELECT key, etag, size, kind, account_id, region, key_day, attempts FROM objects "
        "WHERE bucket = ? AND starts_with(key, ?) AND list_contains(?, kind) "
        "AND (len(?) = 0 OR list_contains(?, account_id)) "
        "AND (len(?) = 0 OR list_contains(?, region)) "
        "AND status IN ('pending', 'blocked') AND key_day < ?",
        [scope.bucket, scope.prefix, [kind.value for kind in scope.kinds],
         list(scope.accounts), list(scope.accounts), list(scope.regions), list(scope.regions),
         day],
    ).fetchall()
    return [
        Candidate(ObjectRef(scope.bucket, key, etag, size, Kind(kind), account, region,
                            key_day), attempts, replaces=False)
        for key, etag, size, kind, account, region, key_day, attempts in rows
    ]


@dataclass(frozen=True)
class ListingMarks:
    """How far one bucket entry's listing got (see ``core.listing_plan``), and, for every
    entry, the first day whose ledger entries retention has kept."""

    backfilled_through: date | None = None  # the last day of a finished backfill
    listed_from: date | None = None  # the first day any poll listed
    relisted_at: float | None = None  # when the last relist finished (epoch seconds)
    # Days before this one have had their finished entries forgotten (``retention``):
    # listing them again would read those objects twice
    kept_from: date | None = None


_MARKS = {"backfilled_through": "backfilled", "listed_from": "listed_from",
          "relisted_at": "relisted"}
KEPT_FROM = "ledger_kept_from"  # (one for the store: written by retention)


def listing_marks(con: duckdb.DuckDBPyConnection, *labels: str) -> ListingMarks:
    """The marks of the first of ``labels`` that has any (an entry's marks key, then what
    an older version called it)."""
    names = [f"{name}:{label}" for label in labels for name in _MARKS.values()]
    values = dict(con.execute("SELECT key, value FROM meta WHERE list_contains(?, key)",
                              [[*names, KEPT_FROM]]).fetchall())
    label = next((label for label in labels
                  if any(f"{name}:{label}" in values for name in _MARKS.values())), labels[0])

    def get(field: str) -> str | None:
        return values.get(f"{_MARKS[field]}:{label}")

    backfilled, listed, relisted = (get(f) for f in _MARKS)
    kept = values.get(KEPT_FROM)
    return ListingMarks(
        date.fromisoformat(backfilled) if backfilled else None,
        date.fromisoformat(listed) if listed else None,
        float(relisted) if relisted else None,
        date.fromisoformat(kept) if kept else None)


def set_listing_marks(con: duckdb.DuckDBPyConnection, label: str, marks: ListingMarks) -> None:
    with transaction(con):
        for field, name in _MARKS.items():
            value = getattr(marks, field)
            if value is not None:
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [f"{name}:{label}", str(value)])


def _row(result: ObjectResult) -> dict[str, Any]:
    ref = result.ref
    return {
        "bucket": ref.bucket,
        "key": ref.key,
        "etag": ref.etag,
        "size": ref.size,
        "kind": ref.kind.value,
        "account_id": ref.account_id,
        "region": ref.region,
        "key_day": ref.day,
        "status": result.status.value,
        "attempts": result.attempts,
        "last_error": result.error,
        "records": result.rows if result.status is Status.DONE else 0,
        "bad_lines": result.bad_lines,
        "bad_reasons": json.dumps(dict(result.bad_reasons)) if result.bad_reasons else None,
        "discarded": result.discarded,
    }
