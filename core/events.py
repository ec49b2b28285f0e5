"""What the core tells its user (the command line or the app), as plain data.

The core never imports Textual: the app wraps these in its own messages. Events are
published after the facts they report are committed to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from core.objects import ObjectResult, Status
from core.store import CommitStats


@dataclass
class PollSummary:
    """What one poll added, in the shape of ``collect --json``'s last line."""

    objects: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    records: int = 0
    bad_lines: int = 0
    bytes: int = 0
    events: int = 0
    alerts: int = 0  # alerts created or updated
    late: int = 0  # objects found by a relist in days the lookback no longer lists
    blocked_prefixes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, batch: Sequence[ObjectResult], stats: CommitStats) -> None:
        """Count a committed batch."""
        self.records += stats.records
        self.events += stats.events
        self.alerts += stats.alerts.num_rows if stats.alerts is not None else 0
        self.errors += [e for e in stats.rule_errors if e not in self.errors]
        for result in batch:
            self.objects[result.status.value] += 1
            self.bad_lines += result.bad_lines
            if result.status is Status.DONE:
                self.bytes += result.ref.size

    @property
    def incomplete(self) -> bool:
        """An error, or an object not read (pending, quarantined or blocked): exit 1."""
        unread = (Status.PENDING, Status.QUARANTINED, Status.BLOCKED)
        return bool(self.errors or any(self.objects[s.value] for s in unread))

    def as_json(self) -> dict[str, Any]:
        return {
            "objects": dict(self.objects),
            "records": self.records,
            "bad_lines": self.bad_lines,
            "bytes": self.bytes,
            "events": self.events,
            "alerts": self.alerts,
            "late": self.late,
            "blocked_prefixes": sorted(self.blocked_prefixes),
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ObjectOutcome:
    bucket: str
    key: str
    status: Status
    records: int
    bad_lines: int
    error: str | None


@dataclass(frozen=True)
class PollStarted:
    buckets: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class BatchCommitted:
    """A group of objects whose rows and ledger entries were just committed together."""

    outcomes: tuple[ObjectOutcome, ...]
    records: int
    events: int
    at: float


@dataclass(frozen=True)
class AlertsChanged:
    """Alerts created or updated by one commit, published after it (rows of ``alerts``);
    ``derived``: the parity alerts of the windows it touched, when the store was asked for
    them (``Store.parity_level``)."""

    alerts: pa.Table | None
    at: float
    derived: pa.Table | None = None


@dataclass(frozen=True)
class PrefixBlocked:
    bucket: str
    prefix: str
    error: str


@dataclass(frozen=True)
class PollFinished:
    summary: PollSummary
    at: float
    next_poll: float | None


@dataclass(frozen=True)
class PollFailed:
    """A poll stopped with an error; the next one runs at the next interval."""

    error: str
    at: float


CoreEvent = (PollStarted | BatchCommitted | AlertsChanged | PrefixBlocked | PollFinished
             | PollFailed)
Publish = Callable[[CoreEvent], None]
