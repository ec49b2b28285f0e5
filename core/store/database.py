"""The store: a DuckDB file (ledger, CloudTrail events, segment list, alerts) and Parquet
segments of flow records.

Flow records live in Parquet segments (see ``core.store.segments``), queried through the
``flows`` view; everything else lives in ``vpcwatch.duckdb``. Exactly-once rests on one rule:
an object's rows and its ledger entry are committed in the same transaction (the segment that
holds the rows is listed in that transaction). Several objects are committed together (group
commit) because a commit costs milliseconds; a crash loses the whole uncommitted batch,
whose objects are still ``pending`` (or absent) in the ledger and are read again. Use a Store
from one thread at a time.

This module ties the parts together; each part has its own module: ``ledger``, ``segments``,
``detections`` (the rules and the alerts they write), ``retention``, ``schema``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from core import killpoints
from core.objects import ObjectRef, ObjectResult, Status, constant_column
from core.rules import RuleEngine
from core.store import detections, ledger, publication, retention, schema, spill
from core.store.ledger import Candidate
from core.store.publication import Publisher
from core.store.segments import NewSegment, Segments, remove, remove_unlisted, segment_dir
from core.store.transaction import transaction

log = logging.getLogger(__name__)
DATABASE_NAME = "vpcwatch.duckdb"


@dataclass
class CommitStats:
    records: int = 0
    events: int = 0
    alerts: pa.Table | None = None  # alert rows this commit created or changed
    rule_errors: list[str] = field(default_factory=list)
    derived: pa.Table | None = None  # the parity alerts of the windows it touched


class TwiceInOneCommit(ValueError):
    """Two results for one object in one commit: a caller's mistake (its rows twice)."""


class AfterCommit(RuntimeError):
    """A commit's transaction was committed, and what follows it failed: its objects are
    stored (never to be committed again)."""


class StoreError(Exception):
    """The store cannot be opened or used (locked by another program, corrupt, read-only)."""


class Store:
    def __init__(self, state_dir: Path, read_only: bool = False,
                 engine: RuleEngine | None = None,
                 published: duckdb.DuckDBPyConnection | None = None):
        """``published``: a database loaded from the publication of a running collector
        (see ``publication``), opened read-only instead of the store's own file."""
        self.state_dir = state_dir
        self.segment_dir = segment_dir(state_dir)
        self.engine = engine
        # set (to a minimum level) by whoever wants each commit's parity alerts (watch)
        self.parity_level: int | None = None
        self.publisher: Publisher | None = None  # see start_publishing
        self.attached_to: str | None = None  # the collector a published store comes from
        self.generation: object = None  # the published state it holds (attached stores)
        self.manifest: dict[str, object] | None = None  # …and the manifest that named it
        self._publication_failed = False
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="vpcwatch-segments")
        path = state_dir / DATABASE_NAME
        read_only = read_only or published is not None
        try:
            self.con = published or spill.connect(state_dir, str(path), read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        self.segments = Segments(self.con, self.segment_dir)
        try:
            if read_only:
                schema.check_readable(schema.version(self.con), read_only=True)
            else:
                schema.create(self.con)
        except (schema.SchemaError, duckdb.Error) as exc:
            self.con.close()
            raise StoreError(f"{path}: {str(exc).splitlines()[0]}") from None
        if not read_only:
            # Checkpoints rewrite storage: keep them out of the per-batch commit path and
            # run them between polls instead (see checkpoint()).
            self.con.execute("SET checkpoint_threshold = '1GB'")
            self.con.execute("SET parquet_metadata_cache = true")
            removed = remove_unlisted(self.segment_dir, set(self.segment_names()))
            if removed:
                log.info("removed %d segment files no commit listed", len(removed))
            summarised = self.segments.summarise_unsummarised()
            if summarised:
                log.info("summarised %d segments written before traffic summaries",
                         summarised)
        self._refresh_view()
        (engine or RuleEngine([])).install(self.con)  # the SQL functions, for queries too
        if engine is not None and not read_only:
            engine.check(self.con)

    def segment_names(self, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        """The committed segments, oldest first (read through ``con`` from another thread)."""
        return self.segments.names(con)

    def _refresh_view(self) -> None:
        self.define_flows_view(self.con)

    def define_flows_view(self, con: duckdb.DuckDBPyConnection) -> None:
        """(Re)define the ``flows`` view of ``con`` over the segments committed now."""
        con.execute("CREATE OR REPLACE TEMP VIEW flows AS "
                    + self.segments_sql(self.segment_names(con)))

    def segments_sql(self, names: Sequence[str], filename: bool = False) -> str:
        """SQL for the rows of these segments, with every known column (``filename``: and
        the file each row is in)."""
        return self.segments.sql(names, filename)

    def reading_cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for another thread (the app's reader): the same database, with its
        own ``flows`` view (see define_flows_view) and the rules' SQL functions."""
        con = self.con.cursor()
        self.define_flows_view(con)
        (self.engine or RuleEngine([])).install(con)
        return con

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        try:
            self.segments.remove_retired(everything=True)  # (a writer's: a reader retires none)
        finally:
            self.con.close()

    # -- the ledger -----------------------------------------------------------------------

    def candidates(self, listed: Sequence[ObjectRef]) -> list[Candidate]:
        """The listed objects that must be read: new, changed, pending or blocked ones."""
        return ledger.candidates(self.con, listed)

    def record_prefixes(self, bucket: str, blocked: dict[str, str], ok: set[str]) -> None:
        ledger.record_prefixes(self.con, bucket, blocked, ok)

    def unfinished_before(self, scope: ledger.Scope, day: date) -> list[Candidate]:
        return ledger.unfinished_before(self.con, scope, day)

    def listing_marks(self, *labels: str) -> ledger.ListingMarks:
        return ledger.listing_marks(self.con, *labels)

    def set_listing_marks(self, bucket_label: str, marks: ledger.ListingMarks) -> None:
        ledger.set_listing_marks(self.con, bucket_label, marks)

    def retry_quarantined(self) -> int:
        """Make every quarantined object pending (attempts from 0), to be read again: after
        the cause was mended (a setting, a newer vpcwatch). Returns how many."""
        with transaction(self.con):
            count = ledger.retry_quarantined(self.con)
        if count:
            self._publish(lambda p: p.whole())
        return count

    # -- committing -----------------------------------------------------------------------

    def commit(self, results: Sequence[ObjectResult]) -> CommitStats:
        """Store the rows of every result, the alerts they raise and their ledger entries,
        in one transaction. Two results for one object are refused (TwiceInOneCommit): they
        would store its rows twice."""
        if not results:
            return CommitStats()
        keys = [(result.ref.bucket, result.ref.key) for result in results]
        if len(set(keys)) != len(keys):
            twice = sorted({key for key in keys if keys.count(key) > 1})
            raise TwiceInOneCommit("one commit with two results for "
                                   + ", ".join(f"s3://{b}/{k}" for b, k in twice))
        flows = _flow_batch(results)
        events = _event_batch(results)
        # Parquet encodes the segments on other cores while DuckDB runs the rules over the
        # same Arrow table: neither needs the other (the rules read committed segments only)
        writing = self._writer.submit(self.segments.add, flows) if flows is not None else None
        written: list[NewSegment] = []
        changed_objects = [(r.ref.bucket, r.ref.key) for r in results if r.replaces]
        additive = not changed_objects
        replaced: list[str] = []
        try:
            fresh, rule_errors = detections.evaluate(self.con, self.engine, flows, events,
                                                     self._committed, changed_objects)
            written = writing.result() if writing is not None else []
            killpoints.reached("segment-written")
            batch = {segment.name for segment in written}
            with transaction(self.con):
                self.segments.enlist(written)
                for result in results:
                    if result.replaces:
                        self.con.execute(
                            "DELETE FROM cloudtrail WHERE bucket = ? AND object_key = ?",
                            [result.ref.bucket, result.ref.key])
                        replaced += self.segments.drop_object_rows(result.ref, batch, written)
                inserted = self._insert_events(events)
                changed = detections.upsert(self.con, fresh)
                ledger.write(self.con, results)
        except BaseException:
            if writing is not None and not written:  # (the rules failed, or an interrupt)
                with contextlib.suppress(Exception):  # (a failed write removed its files)
                    written = writing.result()
            remove(self.segment_dir, [segment.name for segment in written])
            if self.engine is not None:
                self.engine.discard(self.con)
            raise
        try:  # (committed: a failure from here on must not look like a commit that failed)
            if self.engine is not None:
                self.engine.committed(self.con)
            self.segments.retire(replaced)
            self._refresh_view()
            self._publish(lambda p: p.commit(keys, changed) if additive
                          else p.whole(adds_flows=True), adds_flows=True)
        except Exception as exc:
            raise AfterCommit(f"committed, then failed: {exc}") from exc
        records = flows.num_rows if flows is not None else 0
        derived = None
        if flows is not None and self.parity_level is not None:
            try:  # (committed already: a failure here is reported, never raised)
                derived = detections.parity_of(self.con, flows, self.parity_level)
            except Exception as exc:
                rule_errors.append(f"parity alerts failed: {str(exc).splitlines()[0]}")
        return CommitStats(records, inserted, changed, rule_errors, derived)

    def _committed(self, source: str, first: int, last: int | None) -> str | None:
        """SQL for the committed records of ``source`` that may have a time in [first,
        last): for flows, the segments that may hold one (None when none may), so a rule
        reads what its windows need whatever the retention."""
        if source != "vpcflow":
            return "SELECT * FROM cloudtrail"
        names = self.segments.between(first, last)
        return self.segments.sql(names) if names else None

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

    # -- upkeep ---------------------------------------------------------------------------

    def prune(self, retention_seconds: float, listed_from: date, now: float | None = None) -> int:
        """Drop what is older than the retention period (see ``retention.prune``). Returns
        the flow records dropped."""
        cutoff = int((now or time.time()) - retention_seconds)
        old, deleted = retention.prune(self.con, cutoff, listed_from)
        if self.engine is not None and old:
            self.engine.forget_before(self.con, cutoff)
        killpoints.reached("pruning")
        self.segments.retire([name for name, _ in old])
        self._refresh_view()
        # rows gone: viewers need the tables whole; else only the listing marks may have
        # changed since the last commit (saved after it), and the small tables carry them
        self._publish(Publisher.whole if deleted else lambda p: p.commit([], None))
        return sum(records for _, records in old)

    # -- the publication for viewers ---------------------------------------------------------

    def start_publishing(self) -> None:
        """From now on, publish every committed state for viewers (``publication``): the
        collector does, so that reading commands and apps can attach while it runs."""
        if self.publisher is None:
            try:  # (a full disk must not stop collecting: the next poll tries again)
                self.publisher = Publisher(self.con, self.state_dir)
            except Exception:
                log.exception("publishing the store for viewers failed")

    def reload_publication(self) -> bool:
        """For a store attached to a running collector: take its newest published state.
        Returns whether there was a newer one."""
        manifest = publication.current(self.state_dir)
        if manifest.get("generation") == self.generation:
            return False
        publication.fill(self.con, self.state_dir, manifest, self.manifest)
        self.generation, self.manifest = manifest.get("generation"), manifest
        self._refresh_view()
        return True

    def _publish(self, action: Callable[[Publisher], None], adds_flows: bool = False) -> None:
        """A failure here never fails the commit (it is done): it is logged, and the next
        publication is a whole one, so viewers miss nothing for good (``adds_flows``: it
        stands for a commit's, as ``action`` does)."""
        if self.publisher is None:
            return
        try:
            if self._publication_failed:
                self.publisher.whole(adds_flows)
            else:
                action(self.publisher)
            self._publication_failed = False
        except Exception:  # (committed already: nothing here may fail the commit)
            self._publication_failed = True
            log.exception("publishing the store for viewers failed")

    def compact(self) -> int:
        """Merge small segments into one (queries open every file), and remove the files of
        segments retired long enough ago. Returns files merged."""
        merged = self.segments.compact()
        self.segments.remove_retired()
        if merged:
            self._refresh_view()
            self._publish(lambda p: p.commit([], None))  # (the new segment list)
        return merged

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")


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


def _with_origin(table: pa.Table, ref: ObjectRef) -> pa.Table:
    """Add the bucket and key columns, dictionary-encoded (one value per object: no copies)."""
    for name, value in (("bucket", ref.bucket), ("object_key", ref.key)):
        table = table.append_column(name, constant_column(table.num_rows, value))
    return table
