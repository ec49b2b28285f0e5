"""Flow records on disk: immutable Parquet segment files in ``state_dir/flows/``.

Why files and not a DuckDB table: a flow-log batch is append-only, and writing a Parquet
file costs about half of a DuckDB insert into the 58-column ``flows`` schema (most columns
are NULL for most formats), and it runs outside the store's single thread. DuckDB queries
the files through the ``flows`` view.

A segment is written under a temporary name, fsynced, then renamed. It only *exists* once
the ``segments`` table in the DuckDB file lists it, in the same transaction as the ledger
entries of the objects it holds. A file the table does not list (a crash between the rename
and the commit, or after a rewrite's commit but before the old files were removed) is
deleted when the store is next opened for writing.

A segment that compaction, retention or a replaced object unlists is *retired*: its file
stays ``RETIRE_SECONDS`` longer, so a reader that took the list before (an attached
``query`` over a month of flows, a reader's copy of the store) still finds every file it
was told of; the writer removes it after that, or when it closes.
"""

from __future__ import annotations

import itertools
import os
import re
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import killpoints
from core.objects import ObjectRef
from core.store import summaries
from core.store.schema import EMPTY_FLOWS, NOW
from core.store.transaction import transaction

SEGMENT_DIR = "flows"
# How segments are read: columns by name (formats differ), and never a column made of a
# folder of the path (DuckDB takes ``x=y`` in a path for a Hive partition: a state_dir under
# ``…/bucket=prod/`` replaced every record's bucket)
READ_OPTIONS = "union_by_name=true, hive_partitioning=false"
# the column naming the file a row was read from: no field of a log can be named so (field
# names start with a letter); ``filename``, DuckDB's default, can (it stopped collection)
FILE_COLUMN = "_file"
_PREFIX = "seg-"
_TMP_PREFIX = ".tmp-"
_SEGMENT_NAME = re.compile(rf"{_PREFIX}[0-9a-f]+\.parquet")
_ADDRESSES = {"srcaddr", "dstaddr", "pkt_srcaddr", "pkt_dstaddr"}
ROW_GROUP_ROWS = 131_072
COMPACT_BELOW = 262_144  # segments smaller than this are merged…
COMPACT_AT = 8  # …once there are this many of them
COMPACT_MAX_ROWS = 4_000_000  # rows merged at once (bounds the memory compaction takes)
FUTURE_SLACK = 86_400  # flows ending later than a day from now are kept apart
MAX_PARTS = 4  # a large table is written as up to this many segments at once…
RETIRE_SECONDS = 600.0  # how long an unlisted segment's file outlives its listing
PART_ROWS = 500_000  # …none smaller than this: a default commit's size (commit_records),
# so that splitting never leaves more, smaller segments than the collector writes anyway
# (each segment costs the app's index and range reads a few queries of its own)


@dataclass(frozen=True)
class NewSegment:
    """A segment file written and not yet listed, with its rows."""

    name: str
    table: pa.Table


def is_segment_name(name: str) -> bool:
    """Is ``name`` one a segment file is given (no path: a publication's list of segments is
    joined to the segments' folder)?"""
    return _SEGMENT_NAME.fullmatch(name) is not None


def segment_dir(state_dir: Path) -> Path:
    return state_dir / SEGMENT_DIR


def write_segment(directory: Path, table: pa.Table) -> str:
    """Write ``table`` atomically; return the new segment's file name."""
    directory.mkdir(mode=0o700, exist_ok=True)
    name = f"{_PREFIX}{uuid.uuid4().hex}.parquet"
    temporary = directory / f"{_TMP_PREFIX}{name}"
    try:
        _write_parquet(table, temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.rename(temporary, directory / name)
    _fsync_dir(directory)
    return name


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write and fsync."""
    pq.write_table(
        table,
        path,
        compression="snappy",
        # Row groups are what DuckDB prunes by their min/max and reads in parallel: at 131,072
        # rows (DuckDB's own are 122,880) rather than a million, the app's index of a day of
        # 10 M flows built in 5.2 s instead of 6.3 (the same store both ways, median of 3),
        # for the same write time and size (bench/RESULTS.md, 2026-12-05 14:44).
        row_group_size=ROW_GROUP_ROWS,
        # Measured: 20% faster than dictionary-encoding and min/max-ing every column.
        # Addresses rarely repeat within a segment; times and ports are what filters prune on.
        use_dictionary=[f.name for f in table.schema
                        if not pa.types.is_integer(f.type) and f.name not in _ADDRESSES],
        write_statistics=[f.name for f in table.schema if pa.types.is_integer(f.type)],
    )
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def read_segment(directory: Path, name: str) -> pa.Table:
    return pq.read_table(directory / name)


def read_failure(message: str) -> str:
    """DuckDB's first line of ``message``, saying why when a segment a read used is gone: a
    collector merged or pruned it more than ``RETIRE_SECONDS`` after the read started, or
    restarted meanwhile (without one running when it did, the reader reads a copy of the
    store, and the segments that copy lists)."""
    first = message.splitlines()[0] if message else message
    if "No files found that match the pattern" in first and f"/{_PREFIX}" in first:
        return (f"{first} (a collector merged or pruned the segment since this read "
                "started: run it again)")
    return first


def remove_unlisted(directory: Path, listed: set[str]) -> list[str]:
    """Delete segment files the store does not list (and leftover temporary files)."""
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        if path.name.startswith(_TMP_PREFIX) or (
            path.name.startswith(_PREFIX) and path.name not in listed
        ):
            path.unlink()
            removed.append(path.name)
    if removed:
        _fsync_dir(directory)
    return removed


def remove(directory: Path, names: list[str]) -> None:
    for name in names:
        (directory / name).unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- the segment list (the ``segments`` table): what exists for readers -----------------------


class Segments:
    """The committed segments of one store: their list in the DuckDB file and their files."""

    def __init__(self, con: duckdb.DuckDBPyConnection, directory: Path):
        self.con = con
        self.directory = directory
        self._retired: dict[str, float] = {}  # file name -> when it was unlisted (monotonic)

    def retire(self, names: Sequence[str]) -> None:
        """Segments unlisted by a committed transaction: their files go ``RETIRE_SECONDS``
        from now (``remove_retired``), not at once, for readers that listed them before."""
        now = time.monotonic()
        self._retired.update((name, now) for name in names)
        self.remove_retired()

    def remove_retired(self, now: float | None = None, everything: bool = False) -> None:
        """Remove the files retired ``RETIRE_SECONDS`` before ``now`` (``everything``: all
        of them, as the writer closes)."""
        now = time.monotonic() if now is None else now
        due = [name for name, since in self._retired.items()
               if everything or now - since >= RETIRE_SECONDS]
        remove(self.directory, due)
        for name in due:
            del self._retired[name]

    def names(self, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        """The committed segments, oldest first (read through ``con`` from another thread)."""
        rows = (con or self.con).execute(
            "SELECT name FROM segments ORDER BY created, name").fetchall()
        return [row[0] for row in rows]

    def sql(self, names: Sequence[str], filename: bool = False) -> str:
        """SQL for the rows of these segments, with every known column (``filename``: and
        the file each row is in, as ``FILE_COLUMN``)."""
        files = self.files_literal(names)
        if not files:
            return EMPTY_FLOWS
        option = f", filename='{FILE_COLUMN}'" if filename else ""
        return (f"{EMPTY_FLOWS} UNION ALL BY NAME "
                f"SELECT * FROM read_parquet({files}, {READ_OPTIONS}{option})")

    def listed(self, con: duckdb.DuckDBPyConnection | None = None
               ) -> list[tuple[str, int | None, int | None, int | None]]:
        """Each committed segment's name, first start, last end and records, oldest first
        (read through ``con`` from another thread)."""
        return (con or self.con).execute(
            "SELECT name, min_start, max_end, records FROM segments ORDER BY created, name"
        ).fetchall()

    def between(self, first: int, last: int | None = None,
                con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        """The segments that may hold a flow starting in [first, last) (``last`` None: no
        end), read through ``con`` from another thread."""
        rows = (con or self.con).execute(
            "SELECT name FROM segments WHERE (? IS NULL OR min_start < ?) AND max_end >= ? "
            "ORDER BY created, name", [last, last, first]).fetchall()
        return [row[0] for row in rows]

    def files_literal(self, names: Sequence[str]) -> str:
        """A SQL list literal of segment paths ('' when there are none)."""
        if not names:
            return ""
        for name in names:  # (names a publication lists are read from files: checked)
            if not is_segment_name(name):
                raise ValueError(f"{name!r}: not the name of a segment")
        quoted = (str(self.directory / n).replace("'", "''") for n in names)
        return "[" + ", ".join(f"'{path}'" for path in quoted) + "]"

    def add(self, table: pa.Table) -> list[NewSegment]:
        """Write ``table`` as new segment files (not yet listed: see ``enlist``). A large
        table becomes several segments, written at once on as many cores: encoding and
        compressing Parquet runs on one core per file (measured: a million flows in 0.14 s
        as two files, 0.23 s as one). Flows dated in the future (beyond ``FUTURE_SLACK``)
        go to a segment of their own: retention drops whole segments by their newest flow,
        and the others' would wait for them."""
        ahead = _future(table)
        if ahead is None:
            return self._add(table)
        parts = (table.filter(pc.invert(ahead)), table.filter(ahead))
        return [segment for part in parts if part.num_rows for segment in self._add(part)]

    def _add(self, table: pa.Table) -> list[NewSegment]:
        parts = _parts(table)
        if len(parts) == 1:
            return [NewSegment(write_segment(self.directory, table), table)]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="segment") as pool:
            futures = [pool.submit(write_segment, self.directory, part) for part in parts]
        written = [f.result() for f in futures if f.exception() is None]
        if len(written) < len(parts):  # (a file written beside a failed one is not kept)
            remove(self.directory, written)
            next(f for f in futures if f.exception() is not None).result()
        return [NewSegment(name, part) for name, part in zip(written, parts, strict=True)]

    def enlist(self, segments: Sequence[NewSegment]) -> None:
        """List written segments, and write their summaries (inside the caller's
        transaction): they now exist."""
        for segment in segments:
            table = segment.table
            self.con.execute(
                f"INSERT INTO segments VALUES (?, ?, ?, ?, {NOW})",
                [segment.name, table.num_rows, _bound(table, "start", "min"),
                 _bound(table, "end", "max")],
            )
            summaries.write(self.con, segment.name, table)

    def unlist(self, names: Sequence[str]) -> None:
        """Unlist segments and delete their summary (inside the caller's transaction); their
        files are for the caller to remove once it has committed."""
        self.con.execute("DELETE FROM segments WHERE list_contains(?, name)", [list(names)])
        summaries.forget(self.con, names)

    def summarise_unsummarised(self) -> int:
        """Write the summary of every listed segment that has none (a store written before
        summaries existed), one transaction per segment. Returns how many."""
        names = summaries.unsummarised(self.con)
        for name in names:
            with transaction(self.con):
                self.con.execute(f"INSERT INTO {summaries.TABLE} BY NAME "
                                 + summaries.summary_sql(name, f"({self.sql([name])})"))
        return len(names)

    def drop_object_rows(self, ref: ObjectRef, batch: set[str], written: list[NewSegment]
                         ) -> list[str]:
        """Rewrite the segments holding rows of ``ref`` without them, but those of
        ``batch`` (the commit's own, with its new rows), inside the caller's transaction;
        new files are appended to ``written``. Returns the old names. A segment rewritten
        for another object of the same commit is rewritten again: it may hold this one's
        old rows too.

        Only for an object whose content changed after it was read (AWS never does this).
        """
        holding = [name for name in self._holding(ref) if name not in batch]
        for name in holding:
            table = read_segment(self.directory, name)
            other = pc.invert(pc.and_(pc.equal(table["bucket"].cast(pa.string()), ref.bucket),
                                      pc.equal(table["object_key"].cast(pa.string()), ref.key)))
            kept = table.filter(other)
            self.unlist([name])
            if kept.num_rows:
                rewritten = self.add(kept)
                written += rewritten
                self.enlist(rewritten)
        return holding

    def _holding(self, ref: ObjectRef) -> list[str]:
        files = self.files_literal(self.names())
        if not files:
            return []
        rows = self.con.execute(
            f"SELECT DISTINCT {FILE_COLUMN} FROM read_parquet({files}, {READ_OPTIONS}, "
            f"filename='{FILE_COLUMN}') WHERE bucket = ? AND object_key = ?",
            [ref.bucket, ref.key],
        ).fetchall()
        return [Path(row[0]).name for row in rows]

    def compact(self) -> int:
        """Merge small segments into one (queries open every file): those of flows dated in
        the future apart from the others, which they would keep from retention until then
        (found by an adversarial test). Returns files merged."""
        horizon = int(time.time()) + FUTURE_SLACK
        return sum(self._compact(f"coalesce(max_end, 0) {side} {horizon}")
                   for side in ("<=", ">"))

    def _compact(self, which: str) -> int:
        small = self.con.execute(
            "SELECT name, sum(records) OVER (ORDER BY created, name) FROM segments "
            f"WHERE records < ? AND {which} ORDER BY created, name",
            [COMPACT_BELOW],
        ).fetchall()
        names = [name for name, running in small if running <= COMPACT_MAX_ROWS]
        if len(names) < COMPACT_AT:
            return 0
        tables = [read_segment(self.directory, name) for name in names]
        merged = pa.concat_tables(tables, promote_options="permissive")
        new = self.add(merged)
        killpoints.reached("compacting")
        try:
            with transaction(self.con):
                self.unlist(names)
                self.enlist(new)
        except BaseException:
            remove(self.directory, [segment.name for segment in new])
            raise
        self.retire(names)
        return len(names)


def _future(table: pa.Table) -> pa.ChunkedArray | None:
    """Which rows hold a flow ending beyond ``FUTURE_SLACK`` from now; None when none do
    (one pass over ``end`` for the usual table)."""
    if "end" not in table.column_names:
        return None
    horizon = int(time.time()) + FUTURE_SLACK
    newest = pc.max(table["end"]).as_py()
    if newest is None or newest <= horizon:
        return None
    return pc.fill_null(pc.greater(table["end"], horizon), False)


def _parts(table: pa.Table) -> list[pa.Table]:
    """``table`` cut into equal parts, as many as this process has cores (at most
    ``MAX_PARTS``), none under ``PART_ROWS`` rows."""
    count = min(_cores(), MAX_PARTS, table.num_rows // PART_ROWS)
    if count <= 1:
        return [table]
    size, rest = divmod(table.num_rows, count)
    starts = [n * size + min(n, rest) for n in range(count + 1)]
    return [table.slice(start, end - start) for start, end in itertools.pairwise(starts)]


def _cores() -> int:
    """The cores this process may run on (a container's or an affinity's limit)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _bound(table: pa.Table, column: str, which: str) -> int | None:
    if column not in table.column_names:
        return None
    value = pc.min_max(table[column])[which].as_py()
    return int(value) if value is not None else None
