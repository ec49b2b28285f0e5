"""A batch whose commit fails because of one object's rows: that object is quarantined and
the others are committed (docs/ingest.md, "What a failure means").

A batch commits many objects in one transaction. Rows that a parser let through but the
store cannot take (a column that clashes with one the store adds was one) fail the whole
transaction, and the objects are read again at the next poll, with the same rows: without
this, one such object stopped collection for good, the good objects read with it too.

So a batch whose commit fails for a reason that is not the machine's (a full disk, memory,
an interrupt: those fail the poll as before, nothing set aside) is committed again one object
at a time; an object whose commit fails alone is quarantined with the reason, provided that
its ledger entry alone commits (otherwise its rows were not the cause, and the first error
is raised).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from core.objects import ObjectResult, Status
from core.store.database import AfterCommit, CommitStats, Store, TwiceInOneCommit

log = logging.getLogger(__name__)

# failures of the machine (or the caller), not of the rows: never a reason to set one aside
_NOT_THE_ROWS = (OSError, MemoryError, duckdb.IOException, duckdb.OutOfMemoryException,
                 duckdb.InterruptException, TwiceInOneCommit, AfterCommit)


def commit_isolating(store: Store, results: Sequence[ObjectResult]) -> CommitStats:
    """``store.commit(results)``; when it fails because of some object's rows, each is
    committed alone and those that fail so are quarantined (changed in place)."""
    try:
        return store.commit(results)
    except _NOT_THE_ROWS:
        raise
    except Exception as failure:
        if len(results) > 1:
            log.warning("a commit of %d objects failed (%s); committing them one at a time",
                        len(results), _reason(failure))
        totals = CommitStats()
        for result in results:
            _add(totals, _commit_alone(store, result, failure))
        return totals


def _commit_alone(store: Store, result: ObjectResult, failure: Exception) -> CommitStats:
    try:
        return store.commit([result])
    except _NOT_THE_ROWS:
        raise
    except Exception as exc:
        reason = f"its rows could not be stored: {_reason(exc)}"
        aside = ObjectResult(result.ref, Status.QUARANTINED, result.attempts, reason,
                             replaces=result.replaces)  # (a changed object's old rows go)
        try:
            stats = store.commit([aside])
        except _NOT_THE_ROWS:
            raise
        except Exception:
            raise failure from None  # (the ledger entry alone failed too: not its rows)
        log.warning("quarantined s3://%s/%s: %s", result.ref.bucket, result.ref.key, reason)
        result.status, result.error, result.flows, result.events = (
            Status.QUARANTINED, reason, None, None)
        return stats


def _add(totals: CommitStats, stats: CommitStats) -> None:
    totals.records += stats.records
    totals.events += stats.events
    totals.rule_errors += [e for e in stats.rule_errors if e not in totals.rule_errors]
    totals.alerts = _concat(totals.alerts, stats.alerts)
    totals.derived = _concat(totals.derived, stats.derived)


def _concat(one: pa.Table | None, other: pa.Table | None) -> pa.Table | None:
    if one is None or other is None:
        return one if other is None else other
    return pa.concat_tables([one, other], promote_options="permissive")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
