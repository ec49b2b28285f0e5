"""The store: a DuckDB file (ledger, CloudTrail events, segment list) and Parquet segments.

Flow records live in Parquet segments (see ``core.segments``), queried through the ``flows``
view; everything else lives in ``vpcwatch.duckdb``. Exactly-once rests on one rule: an
object's rows and its ledger entry are committed in the same transaction (the segment that
holds the rows is listed in that transaction). Several objects are committed together (group
commit) because a commit costs milliseconds; a crash loses the whole uncommitted batch,
whose objects are still ``pending`` (or absent) in the ledger and are read again. Use a Store
from one thread at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from core.fields import KNOWN_FIELDS, column_name, sql_type
from core.layouts import Kind
from core.objects import ObjectRef, ObjectResult, Status
from core.rules import ALERTS_SCHEMA, RuleEngine
from core.segments import read_segment, remove, remove_unlisted, segment_dir, write_segment
from core.statedir import StateLock, prepare

log = logging.getLogger(__name__)
DATABASE_NAME = "vpcwatch.duckdb"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS segments (
name VARCHAR, records BIGINT, min_start BIGINT, max_end BIGINT, created TIMESTAMP
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

# The flows view always has every known column, whatever the segments hold.
_EMPTY_FLOWS = "SELECT " + ", ".join(
    [f'NULL::{sql_type(f)} AS "{column_name(f)}"' for f in KNOWN_FIELDS]
    + ["NULL::VARCHAR AS bucket", "NULL::VARCHAR AS object_key"]
) + " WHERE false"
_NOW = "(now() AT TIME ZONE 'UTC')"
# A stored alert is rewritten (and published again) only when one of these changed.
_ALERT_CHANGES = ("count", "bytes", "packets", "first_seen", "last_seen", "object_count",
                  "title", "level", "srcaddr", "dstaddr", "dstport", "protocol")
COMPACT_BELOW = 262_144  # segments smaller than this are merged…
COMPACT_AT = 8  # …once there are this many of them
COMPACT_MAX_ROWS = 4_000_000  # rows merged at once (bounds the memory compaction takes)

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
    alerts: pa.Table | None = None  # alert rows this commit created or changed
    rule_errors: list[str] = field(default_factory=list)


class StoreError(Exception):
    """The store cannot be opened or used (locked by another program, corrupt, read-only)."""


class Store:
    def __init__(self, state_dir: Path, read_only: bool = False,
                 engine: RuleEngine | None = None):
        self.segment_dir = segment_dir(state_dir)
        self.engine = engine
        path = state_dir / DATABASE_NAME
        try:
            self.con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        if not read_only:
            # Checkpoints rewrite storage: keep them out of the per-batch commit path and
            # run them between polls instead (see checkpoint()).
            self.con.execute("SET checkpoint_threshold = '1GB'")
            self.con.execute("SET parquet_metadata_cache = true")
            self.con.execute(_SCHEMA)
            self.con.execute(ALERTS_SCHEMA)
            self.con.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )
            removed = remove_unlisted(self.segment_dir, set(self.segment_names()))
            if removed:
                log.info("removed %d segment files no commit listed", len(removed))
        self._refresh_view()
        (engine or RuleEngine([])).install(self.con)  # the SQL functions, for queries too
        if engine is not None and not read_only:
            engine.check(self.con)

    def segment_names(self, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        """The committed segments, oldest first (read through ``con`` from another thread)."""
        rows = (con or self.con).execute(
            "SELECT name FROM segments ORDER BY created, name").fetchall()
        return [row[0] for row in rows]

    def _refresh_view(self) -> None:
        self.define_flows_view(self.con)

    def define_flows_view(self, con: duckdb.DuckDBPyConnection) -> None:
        """(Re)define the ``flows`` view of ``con`` over the segments committed now."""
        con.execute("CREATE OR REPLACE TEMP VIEW flows AS "
                    + self.segments_sql(self.segment_names(con)))

    def segments_sql(self, names: Sequence[str], filename: bool = False) -> str:
        """SQL for the rows of these segments, with every known column (``filename``: and
        the file each row is in)."""
        files = self._segment_files(names)
        if not files:
            return _EMPTY_FLOWS
        option = ", filename=true" if filename else ""
        return (f"{_EMPTY_FLOWS} UNION ALL BY NAME "
                f"SELECT * FROM read_parquet({files}, union_by_name=true{option})")

    def reading_cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for another thread (the app's reader): the same database, with its
        own ``flows`` view (see define_flows_view) and the rules' SQL functions."""
        con = self.con.cursor()
        self.define_flows_view(con)
        (self.engine or RuleEngine([])).install(con)
        return con

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

    # -- writing ------------------------------------------------------------------------

    def commit(self, results: Sequence[ObjectResult]) -> CommitStats:
        """Store the rows of every result, the alerts they raise and their ledger entries,
        in one transaction."""
        if not results:
            return CommitStats()
        flows = _flow_batch(results)
        events = _event_batch(results)
        written = [write_segment(self.segment_dir, flows)] if flows is not None else []
        additive = not any(result.replaces for result in results)
        fresh, rule_errors = self._evaluate(flows, events, additive)
        replaced: list[str] = []
        self.con.execute("BEGIN TRANSACTION")
        try:
            if flows is not None:
                self._list_segment(written[0], flows)
            for result in results:
                if result.replaces:
                    replaced += self._drop_object_rows(result.ref, written)
            inserted = self._insert_events(events)
            changed = self._upsert_alerts(fresh)
            self._write_ledger(results)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            remove(self.segment_dir, written)
            raise
        remove(self.segment_dir, replaced)
        self._refresh_view()
        records = flows.num_rows if flows is not None else 0
        return CommitStats(records, inserted, changed, rule_errors)

    def _evaluate(self, flows: pa.Table | None, events: pa.Table | None, additive: bool
                  ) -> tuple[pa.Table | None, list[str]]:
        """Run the rules over the stored records plus the new ones (not yet committed)."""
        if self.engine is None or not self.engine.sql or (flows is None and events is None):
            return None, []
        relations: dict[str, tuple[str, str]] = {}
        con = self.con
        if flows is not None:
            con.register("new_flows_arrow", flows)
            con.execute("CREATE OR REPLACE TEMP VIEW new_flows AS " + _EMPTY_FLOWS
                        + " UNION ALL BY NAME SELECT * FROM new_flows_arrow")
            con.execute("CREATE OR REPLACE TEMP VIEW rule_flows AS SELECT * FROM flows "
                        "UNION ALL BY NAME SELECT * FROM new_flows")
            relations["vpcflow"] = ("rule_flows", "new_flows")
        if events is not None:
            con.register("new_events", events)
            con.execute("CREATE OR REPLACE TEMP VIEW rule_events AS SELECT * FROM cloudtrail "
                        "UNION ALL BY NAME SELECT * FROM new_events "
                        "WHERE event_id NOT IN (SELECT event_id FROM cloudtrail)")
            relations["cloudtrail"] = ("rule_events", "new_events")
        try:
            return self.engine.evaluate(con, relations, self._stored_between, additive)
        finally:
            for name in ("new_flows_arrow", "new_events"):
                with contextlib.suppress(duckdb.Error):
                    con.unregister(name)

    def _stored_between(self, source: str, first: int, last: int) -> bool:
        """Whether committed records of ``source`` may have a time in [first, last)."""
        if source != "vpcflow":
            return True
        rows = self.con.execute(
            "SELECT count(*) FROM segments WHERE min_start < ? AND max_end >= ?", [last, first]
        ).fetchall()
        return bool(rows[0][0])

    def _upsert_alerts(self, fresh: pa.Table | None) -> pa.Table | None:
        """Write the alerts that are new or differ from their stored version; return them."""
        if fresh is None:
            return None
        self.con.register("fresh_alerts", fresh)
        # One event delivered in two objects of a batch raises its per-event alerts twice.
        duplicates = pc.count_distinct(fresh["id"]).as_py() != fresh.num_rows
        unique = "(SELECT DISTINCT ON (id) * FROM fresh_alerts)" if duplicates else "fresh_alerts"
        try:
            self.con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE changed_alerts AS
                SELECT f.*, coalesce(a.created, {_NOW}) AS created, {_NOW} AS updated,
                       coalesce(a.revision, 0) + 1 AS revision
                FROM {unique} f LEFT JOIN alerts a ON a.id = f.id
                WHERE a.id IS NULL OR {" OR ".join(
                    f"a.{c} IS DISTINCT FROM f.{c}" for c in _ALERT_CHANGES)}
                """
            )
        finally:
            self.con.unregister("fresh_alerts")
        self.con.execute("DELETE FROM alerts WHERE id IN (SELECT id FROM changed_alerts)")
        self.con.execute("INSERT INTO alerts BY NAME SELECT * FROM changed_alerts")
        changed = self.con.sql("SELECT * FROM changed_alerts").to_arrow_table()
        return changed if changed.num_rows else None

    def _list_segment(self, name: str, table: pa.Table) -> None:
        self.con.execute(
            "INSERT INTO segments VALUES (?, ?, ?, ?, (now() AT TIME ZONE 'UTC'))",
            [name, table.num_rows, _bound(table, "start", "min"), _bound(table, "end", "max")],
        )

    def _drop_object_rows(self, ref: ObjectRef, written: list[str]) -> list[str]:
        """Rewrite the segments holding rows of ``ref`` without them; return the old names.

        Only for an object whose content changed after it was read (AWS never does this).
        """
        self.con.execute(
            "DELETE FROM cloudtrail WHERE bucket = ? AND object_key = ?", [ref.bucket, ref.key]
        )
        holding = [name for name in self._segments_holding(ref) if name not in written]
        for name in holding:
            table = read_segment(self.segment_dir, name)
            other = pc.invert(pc.and_(pc.equal(table["bucket"].cast(pa.string()), ref.bucket),
                                      pc.equal(table["object_key"].cast(pa.string()), ref.key)))
            kept = table.filter(other)
            self.con.execute("DELETE FROM segments WHERE name = ?", [name])
            if kept.num_rows:
                written.append(write_segment(self.segment_dir, kept))
                self._list_segment(written[-1], kept)
        return holding

    def _segments_holding(self, ref: ObjectRef) -> list[str]:
        files = self._segment_files(self.segment_names())
        if not files:
            return []
        rows = self.con.execute(
            f"SELECT DISTINCT filename FROM read_parquet({files}, filename=true, "
            "union_by_name=true) WHERE bucket = ? AND object_key = ?",
            [ref.bucket, ref.key],
        ).fetchall()
        return [Path(row[0]).name for row in rows]

    def _segment_files(self, names: Sequence[str]) -> str:
        """A SQL list literal of segment paths ('' when there are none)."""
        if not names:
            return ""
        quoted = (str(self.segment_dir / n).replace("'", "''") for n in names)
        return "[" + ", ".join(f"'{path}'" for path in quoted) + "]"

    def _insert_events(self, batch: pa.Table | None) -> int:
        if batch is None:
            return 0
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
            ).fetchall()
        finally:
            self.con.unregister("event_batch")
        return int(inserted[0][0])

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
                SELECT b.*, coalesce(f.first_seen, (now() AT TIME ZONE 'UTC')) AS first_seen,
                       (now() AT TIME ZONE 'UTC') AS updated
                FROM ledger_batch b
                LEFT JOIN ledger_first_seen f ON f.bucket = b.bucket AND f.key = b.key
                """
            )
        finally:
            self.con.unregister("ledger_batch")

    def record_prefixes(self, bucket: str, blocked: dict[str, str], ok: set[str]) -> None:
        """Remember which prefixes S3 refused to list (and forget those it listed again)."""
        self.con.execute("BEGIN TRANSACTION")
        self.con.execute(
            "DELETE FROM prefixes WHERE bucket = ? AND list_contains(?, prefix)",
            [bucket, [*blocked, *ok]],
        )
        for prefix, error in blocked.items():
            self.con.execute(
                "INSERT INTO prefixes VALUES (?, ?, 'blocked', ?, (now() AT TIME ZONE 'UTC'))",
                [bucket, prefix, error],
            )
        self.con.execute("COMMIT")

    def unfinished_before(self, bucket: str, day: date) -> list[Candidate]:
        """Pending or blocked objects of ``bucket`` dated before ``day``: no listing will
        show them again, so they are retried from the ledger."""
        rows = self.con.execute(
            "SELECT key, etag, size, kind, account_id, region, key_day, attempts FROM objects "
            "WHERE bucket = ? AND status IN ('pending', 'blocked') AND key_day < ?",
            [bucket, day],
        ).fetchall()
        return [
            Candidate(ObjectRef(bucket, key, etag, size, Kind(kind), account, region, key_day),
                      attempts, replaces=False)
            for key, etag, size, kind, account, region, key_day, attempts in rows
        ]

    def backfilled_through(self, bucket_label: str) -> date | None:
        rows = self.con.execute(
            "SELECT value FROM meta WHERE key = ?", [f"backfilled:{bucket_label}"]
        ).fetchall()
        return date.fromisoformat(rows[0][0]) if rows else None

    def set_backfilled_through(self, bucket_label: str, day: date) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"backfilled:{bucket_label}", str(day)]
        )

    def prune(self, retention_seconds: float, listed_from: date, now: float | None = None) -> int:
        """Drop segments whose newest flow is older than the retention period, old CloudTrail
        events, and the ledger entries of finished objects that are both older than the
        retention period and dated before ``listed_from`` (no poll lists them again, so
        forgetting them cannot cause a second read). Returns the flow records dropped."""
        cutoff = int((now or time.time()) - retention_seconds)
        old = self.con.execute(
            "SELECT name, records FROM segments WHERE max_end < ?", [cutoff]
        ).fetchall()
        cutoff_time = datetime.fromtimestamp(cutoff, UTC).replace(tzinfo=None)
        forget_before = min(cutoff_time.date(), listed_from) - timedelta(days=1)
        self.con.execute("BEGIN TRANSACTION")
        self.con.execute("DELETE FROM segments WHERE max_end < ?", [cutoff])
        self.con.execute("DELETE FROM cloudtrail WHERE event_time < ?", [cutoff_time])
        self.con.execute("DELETE FROM alerts WHERE last_seen < ?", [cutoff])
        self.con.execute(
            "DELETE FROM objects WHERE key_day < ? AND status IN ('done', 'skipped', "
            "'quarantined')",
            [forget_before],
        )
        self.con.execute("COMMIT")
        remove(self.segment_dir, [name for name, _ in old])
        self._refresh_view()
        return sum(records for _, records in old)

    def compact(self) -> int:
        """Merge small segments into one (queries open every file). Returns files merged."""
        small = self.con.execute(
            "SELECT name, sum(records) OVER (ORDER BY created, name) FROM segments "
            "WHERE records < ? ORDER BY created, name",
            [COMPACT_BELOW],
        ).fetchall()
        names = [name for name, running in small if running <= COMPACT_MAX_ROWS]
        if len(names) < COMPACT_AT:
            return 0
        tables = [read_segment(self.segment_dir, name) for name in names]
        merged = pa.concat_tables(tables, promote_options="permissive")
        new = write_segment(self.segment_dir, merged)
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute("DELETE FROM segments WHERE list_contains(?, name)", [names])
            self._list_segment(new, merged)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            remove(self.segment_dir, [new])
            raise
        remove(self.segment_dir, names)
        self._refresh_view()
        return len(names)

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self.con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()


def _batch(results: Sequence[ObjectResult], attribute: str) -> pa.Table | None:
    """The ``flows`` or ``events`` rows of every result that is done, with their origin."""
    tables = [
        _with_origin(table, r.ref)
        for r in results
        if (table := getattr(r, attribute)) is not None and table.num_rows
        and r.status is Status.DONE
    ]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _flow_batch(results: Sequence[ObjectResult]) -> pa.Table | None:
    return _batch(results, "flows")


def _event_batch(results: Sequence[ObjectResult]) -> pa.Table | None:
    """Events with plain text origins: the rules' SQL lists and compares them."""
    batch = _batch(results, "events")
    if batch is None:
        return None
    return batch.cast(pa.schema([f.with_type(pa.string()) if pa.types.is_dictionary(f.type)
                                 else f for f in batch.schema]))


def _bound(table: pa.Table, column: str, which: str) -> int | None:
    if column not in table.column_names:
        return None
    value = pc.min_max(table[column])[which].as_py()
    return int(value) if value is not None else None


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
def open_store(state_dir: Path, read_only: bool = False, engine: RuleEngine | None = None
               ) -> Iterator[Store]:
    """The store of ``state_dir``, with the directory's lock held while it is open."""
    if read_only:
        if not (state_dir / DATABASE_NAME).exists():
            raise StoreError(f"{state_dir}: no store yet; run vpcwatch collect or scan first")
    else:
        prepare(state_dir)
    with StateLock(state_dir, exclusive=not read_only):
        store = Store(state_dir, read_only=read_only, engine=engine)
        try:
            yield store
        finally:
            store.close()
