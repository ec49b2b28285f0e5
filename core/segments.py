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
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEGMENT_DIR = "flows"
_PREFIX = "seg-"
_TMP_PREFIX = ".tmp-"
_ADDRESSES = {"srcaddr", "dstaddr", "pkt_srcaddr", "pkt_dstaddr"}


def segment_dir(state_dir: Path) -> Path:
    return state_dir / SEGMENT_DIR


def write_segment(directory: Path, table: pa.Table) -> str:
    """Write ``table`` atomically; return the new segment's file name."""
    directory.mkdir(mode=0o700, exist_ok=True)
    name = f"{_PREFIX}{uuid.uuid4().hex}.parquet"
    temporary = directory / f"{_TMP_PREFIX}{name}"
    pq.write_table(
        table,
        temporary,
        compression="snappy",
        row_group_size=1 << 20,
        # Measured: 20% faster than dictionary-encoding and min/max-ing every column.
        # Addresses rarely repeat within a segment; times and ports are what filters prune on.
        use_dictionary=[f.name for f in table.schema
                        if not pa.types.is_integer(f.type) and f.name not in _ADDRESSES],
        write_statistics=[f.name for f in table.schema if pa.types.is_integer(f.type)],
    )
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.rename(temporary, directory / name)
    _fsync_dir(directory)
    return name


def read_segment(directory: Path, name: str) -> pa.Table:
    return pq.read_table(directory / name)


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
