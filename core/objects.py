"""The objects vpcwatch reads, the ledger's words for their states, the result of reading one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import pyarrow as pa

from core.layouts import Kind


class Status(StrEnum):
    """An object's state in the ledger. These words are used everywhere: code, CLI and UI."""

    DONE = "done"  # its records are in the store, exactly once
    PENDING = "pending"  # not read yet, or failed for a reason that may pass: tried again
    QUARANTINED = "quarantined"  # its content is bad: kept aside with the reason, shown
    BLOCKED = "blocked"  # access denied: tried again each poll, reported
    SKIPPED = "skipped"  # not ours to read (other file types, filtered flow-log ids)


@dataclass(frozen=True)
class ObjectRef:
    """One S3 object (or local file) as listed."""

    bucket: str
    key: str
    etag: str
    size: int
    kind: Kind
    account_id: str | None = None
    region: str | None = None
    day: date | None = None


@dataclass
class ObjectResult:
    """What reading one object produced: rows to store and its new ledger state."""

    ref: ObjectRef
    status: Status
    attempts: int = 1
    error: str | None = None
    flows: pa.Table | None = None
    events: pa.Table | None = None
    bad_lines: int = 0
    bad_reasons: Counter[str] = field(default_factory=Counter)
    discarded: int = 0
    replaces: bool = False  # the object changed since it was read: drop its old rows first

    @property
    def records(self) -> int:
        """Flow records."""
        return self.flows.num_rows if self.flows is not None else 0

    @property
    def rows(self) -> int:
        """Flow records and CloudTrail events: what the ledger counts for the object."""
        return self.records + (self.events.num_rows if self.events is not None else 0)


def constant_column(rows: int, value: str) -> pa.DictionaryArray:
    """``value`` for each of ``rows`` rows, dictionary-encoded (one copy of the text)."""
    zeros = pa.nulls(rows, pa.int32()).fill_null(0)
    return pa.DictionaryArray.from_arrays(zeros, pa.array([value], pa.string()))
