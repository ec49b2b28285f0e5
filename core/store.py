"""The store: one DuckDB file holding flows, CloudTrail events and the ledger of objects.

Exactly-once rests on one rule: an object's rows and its ledger entry are committed in the
same transaction. Several objects are committed together (group commit) because a DuckDB
commit costs milliseconds; a crash loses the whole uncommitted batch, whose objects are
still ``pending`` (or absent) in the ledger and are read again. Use a Store from one
thread at a time.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from core.fields import KNOWN_FIELDS, column_name, sql_type
from core.objects import ObjectRef, ObjectResult, Status
from core.statedir import StateLock, prepare

DATABASE_NAME = "vpcwatch.duckdb"
SCHEMA_VERSION = 1

_FLOWS = ",\n".join(f'"{column_name(f)}" {sql_type(f)}' for f in KNOWN_FIELDS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS flows (
{_FLOWS},
bucket VARCHAR,
object_key VARCHAR
);
CREATE TABLE IF NOT EXISTS cloudtrail (
event_id VARCHAR, event_time TIMESTAMP, event_source VARCHAR, event_name VARCHAR,
aws_region VARCHAR, source_ip VARCHAR, user_agent VARCHAR, user_arn VARCHAR,
user_type VARCHAR, account_id VARCHAR, error_code VARCHAR, error_message VARCHAR,
record VARCHAR, bucket VARCHAR, object_key VARCHAR
);
CREATE TABLE IF NOT EXISTS objects (
bucket VARCHAR, key VARCHAR, etag VARCHAR, size BIGINT, kind VARCHAR,
account_id VARCHAR, region VARCHAR, key_day DATE, status VARCHAR, attempts INTEGER,
last_error VARCHAR, records BIGINT, bad_lines BIGINT, bad_reasons VARCHAR,
discarded BIGINT, first_seen TIMESTAMP, updated TIMESTAMP
);
CREATE TABLE IF NOT EXISTS prefixes (
bucket VARCHAR, prefix VARCHAR, status VARCHAR, error VARCHAR, updated TIMESTAMP
);
"""

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


@dataclass
class CommitStats:
    records: int = 0
    events: int = 0


class StoreError(Exception):
    """The store cannot be opened or used (locked by another program, corrupt, read-only)."""


class Store:
    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        try:
            self.con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        if read_only:
            return
        # Checkpoints rewrite storage: keep them out of the per-batch commit path and run
        # them between polls instead (see checkpoint()).
        self.con.execute("SET checkpoint_threshold = '1GB'")
        self.con.execute(_SCHEMA)
        self.con.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )

    def close(self) -> None:
        self.con.close()

    # -- reading the ledger -------------------------------------------------------------

    def candidates(self, listed: Sequence[ObjectRef]) -> list[Candidate]:
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
        self.con.register("listed", table)
        try:
            rows = self.con.execute(
                """
                SELECT l.i, coalesce(o.attempts, 0), o.status = 'done' AND o.etag <> l.etag
                FROM listed l LEFT JOIN objects o ON o.bucket = l.bucket AND o.key = l.key
                WHERE o.key IS NULL OR o.etag <> l.etag OR o.status IN ('pending', 'blocked')
                ORDER BY l.i
                """
            ).fetchall()
        finally:
            self.con.unregister("listed")
        return [Candidate(listed[i], attempts, bool(replaces)) for i, attempts, replaces in rows]

    def counts(self, bucket: str | None = None) -> dict[str, int]:
        sql = "SELECT status, count(*) FROM objects"
        params: list[Any] = []
        if bucket is not None:
            sql += " WHERE bucket = ?"
            params.append(bucket)
        rows = self.con.execute(sql + " GROUP BY status", params).fetchall()
        totals = {status.value: 0 for status in Status}
        totals.update({status: count for status, count in rows})
        return totals

    # -- writing ------------------------------------------------------------------------

    def commit(self, results: Sequence[ObjectResult]) -> CommitStats:
        """Store the rows of every result and its ledger entry in one transaction."""
        stats = CommitStats()
        if not results:
            return stats
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            for result in results:
                if result.replaces:
                    self._delete_rows(result.ref)
            stats.records = self._insert_flows(results)
            stats.events = self._insert_events(results)
            self._write_ledger(results)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return stats

    def _delete_rows(self, ref: ObjectRef) -> None:
        for table in ("flows", "cloudtrail"):
            self.con.execute(
                f"DELETE FROM {table} WHERE bucket = ? AND object_key = ?", [ref.bucket, ref.key]
            )

    def _insert_flows(self, results: Sequence[ObjectResult]) -> int:
        tables = [
            _with_origin(r.flows, r.ref)
            for r in results
            if r.flows is not None and r.flows.num_rows and r.status is Status.DONE
        ]
        if not tables:
            return 0
        batch = pa.concat_tables(tables, promote_options="permissive")
        self._add_unknown_columns(batch.column_names)
        self.con.register("flow_batch", batch)
        try:
            self.con.execute("INSERT INTO flows BY NAME SELECT * FROM flow_batch")
        finally:
            self.con.unregister("flow_batch")
        return batch.num_rows

    def _add_unknown_columns(self, names: Iterable[str]) -> None:
        known = {row[0] for row in self.con.execute("DESCRIBE flows").fetchall()}
        for name in names:
            if name not in known:  # a field AWS added after this version: kept as text
                self.con.execute(f'ALTER TABLE flows ADD COLUMN "{name}" VARCHAR')

    def _insert_events(self, results: Sequence[ObjectResult]) -> int:
        tables = [
            _with_origin(r.events, r.ref)
            for r in results
            if r.events is not None and r.events.num_rows and r.status is Status.DONE
        ]
        if not tables:
            return 0
        batch = pa.concat_tables(tables)
        self.con.register("event_batch", batch)
        try:
            # CloudTrail delivers some events twice, even in different objects: store once.
            inserted = self.con.execute(
                """
                INSERT INTO cloudtrail BY NAME
                SELECT * EXCLUDE (n) FROM (
                    SELECT *, row_number() OVER (PARTITION BY event_id) AS n FROM event_batch
                ) WHERE n = 1 AND event_id NOT IN (SELECT event_id FROM cloudtrail)
                """
            ).fetchone()
        finally:
            self.con.unregister("event_batch")
        return int(inserted[0]) if inserted else 0

    def _write_ledger(self, results: Sequence[ObjectResult]) -> None:
        rows = [_ledger_row(result) for result in results]
        ledger = pa.Table.from_pylist(rows, schema=_LEDGER_SCHEMA)
        self.con.register("ledger_batch", ledger)
        try:
            self.con.execute(
                """
                CREATE OR REPLACE TEMP TABLE ledger_first_seen AS
                SELECT o.bucket, o.key, o.first_seen FROM objects o
                JOIN ledger_batch b ON o.bucket = b.bucket AND o.key = b.key
                """
            )
            self.con.execute(
                "DELETE FROM objects o USING ledger_batch b "
                "WHERE o.bucket = b.bucket AND o.key = b.key"
            )
            self.con.execute(
                """
                INSERT INTO objects BY NAME
                SELECT b.*, coalesce(f.first_seen, now()::TIMESTAMP) AS first_seen,
                       now()::TIMESTAMP AS updated
                FROM ledger_batch b
                LEFT JOIN ledger_first_seen f ON f.bucket = b.bucket AND f.key = b.key
                """
            )
        finally:
            self.con.unregister("ledger_batch")

    def record_prefix(self, bucket: str, prefix: str, status: str, error: str | None) -> None:
        self.con.execute("BEGIN TRANSACTION")
        self.con.execute("DELETE FROM prefixes WHERE bucket = ? AND prefix = ?", [bucket, prefix])
        if status != "ok":
            self.con.execute(
                "INSERT INTO prefixes VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                [bucket, prefix, status, error],
            )
        self.con.execute("COMMIT")

    def prune(self, retention_seconds: float, now: float | None = None) -> int:
        """Delete flows and events older than the retention period; returns flows deleted."""
        cutoff = int((now or time.time()) - retention_seconds)
        deleted = self.con.execute('DELETE FROM flows WHERE "end" < ?', [cutoff]).fetchone()
        cutoff_time = datetime.fromtimestamp(cutoff, UTC).replace(tzinfo=None)
        self.con.execute("DELETE FROM cloudtrail WHERE event_time < ?", [cutoff_time])
        return int(deleted[0]) if deleted else 0

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self.con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()


def _with_origin(table: pa.Table, ref: ObjectRef) -> pa.Table:
    """Add the bucket and key columns, dictionary-encoded (one value per object: no copies)."""
    zeros = pa.nulls(table.num_rows, pa.int32()).fill_null(0)
    for name, value in (("bucket", ref.bucket), ("object_key", ref.key)):
        table = table.append_column(
            name, pa.DictionaryArray.from_arrays(zeros, pa.array([value], pa.string()))
        )
    return table


def _ledger_row(result: ObjectResult) -> dict[str, Any]:
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
        "records": result.records if result.status is Status.DONE else 0,
        "bad_lines": result.bad_lines,
        "bad_reasons": json.dumps(dict(result.bad_reasons)) if result.bad_reasons else None,
        "discarded": result.discarded,
    }



@contextlib.contextmanager
def open_store(state_dir: Path, read_only: bool = False) -> Iterator[Store]:
    """The store of ``state_dir``, with the directory's lock held while it is open."""
    if read_only:
        if not (state_dir / DATABASE_NAME).exists():
            raise StoreError(f"{state_dir}: no store yet; run vpcwatch collect or scan first")
    else:
        prepare(state_dir)
    with StateLock(state_dir, exclusive=not read_only):
        store = Store(state_dir / DATABASE_NAME, read_only=read_only)
        try:
            yield store
        finally:
            store.close()
