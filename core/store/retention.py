"""Retention: what is older than ``retention`` leaves the store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb

from core.store import summaries
from core.store.ledger import KEPT_FROM
from core.store.transaction import transaction


def prune(con: duckdb.DuckDBPyConnection, cutoff: int, listed_from: date
          ) -> tuple[list[tuple[str, int]], int]:
    """Unlist segments whose newest flow is before ``cutoff`` (epoch seconds), delete older
    CloudTrail events and alerts, and forget the ledger entries of finished objects that are
    both older than the cutoff and dated before ``listed_from`` (no poll lists them again,
    so forgetting them cannot cause a second read). Returns the unlisted segments' names
    and record counts (their files are for the caller to remove), and the rows deleted."""
    old = con.execute("SELECT name, records FROM segments WHERE max_end < ?", [cutoff]).fetchall()
    cutoff_time = datetime.fromtimestamp(cutoff, UTC).replace(tzinfo=None)
    forget_before = min(cutoff_time.date(), listed_from) - timedelta(days=1)
    with transaction(con):
        summaries.forget(con, [name for name, _ in old])
        deleted = [con.execute(sql, params).fetchall()[0][0] for sql, params in (
            ("DELETE FROM segments WHERE max_end < ?", [cutoff]),
            ("DELETE FROM cloudtrail WHERE event_time < ?", [cutoff_time]),
            ("DELETE FROM alerts WHERE last_seen < ?", [cutoff]),
            ("DELETE FROM objects WHERE key_day < ? AND status IN ('done', 'skipped', "
             "'quarantined')", [forget_before]),
        )]
        # no listing goes before it again (a retention raised later would have the days
        # forgotten relisted, and their objects read twice: found by a review); written
        # when it moves (a day at most: a changed table is a new state for viewers)
        kept = con.execute("SELECT value FROM meta WHERE key = ?", [KEPT_FROM]).fetchall()
        if not kept or date.fromisoformat(kept[0][0]) < forget_before:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [KEPT_FROM, forget_before.isoformat()])
    return [(name, int(records)) for name, records in old], sum(deleted)
