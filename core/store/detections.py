"""Detections: run the rules over a commit's new records and write the alerts that changed.

Rules are evaluated before the commit's transaction begins (the store has one writer, so
nothing changes meanwhile); ``upsert`` then writes, inside the transaction, the alerts that
are new or whose figures changed (``revision`` counts the changes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from core.rules import CONTEXT, RuleEngine, parity
from core.store.schema import EMPTY_FLOWS, NOW, with_every_column

# A stored alert is rewritten (and published again) only when one of these changed.
_ALERT_CHANGES = ("count", "bytes", "packets", "first_seen", "last_seen", "object_count",
                  "title", "level", "srcaddr", "dstaddr", "dstport", "protocol", *CONTEXT,
                  "details")


def evaluate(con: duckdb.DuckDBPyConnection, engine: RuleEngine | None,
             flows: pa.Table | None, events: pa.Table | None,
             committed: Callable[[str, int, int | None], str | None],
             replaced: Sequence[tuple[str, str]] = ()) -> tuple[pa.Table | None, list[str]]:
    """Run the rules over the stored records plus the new ones (not yet committed).
    ``committed(source, first, last)`` is SQL for the committed records of ``source`` that
    may fall in [first, last) (``last`` None: no end), or None when none may. ``replaced``:
    the (bucket, key) of objects whose stored records the commit replaces: the rules read
    the stored records without theirs (they counted twice, old and new: found by an
    adversarial test), and every rule recomputes (adding to stored alerts would count the
    old ones). The caller tells ``engine`` whether the records were committed
    (``committed``/``discard``)."""
    if engine is None or not engine.rules or (flows is None and events is None):
        return None, []
    if replaced:
        con.register("replaced_objects", pa.table({
            "bucket": [bucket for bucket, _ in replaced],
            "object_key": [key for _, key in replaced]}))
    kept = _without_replaced if replaced else (lambda stored: stored)
    new: dict[str, str] = {}
    if flows is not None:
        con.register("new_flows", with_every_column(flows, engine.flow_words))
        new["vpcflow"] = "new_flows"
    if events is not None:
        con.register("new_events", events)
        new["cloudtrail"] = "new_events"
    views: dict[str, str] = {}  # committed SQL -> the view of it and the new records

    def with_stored(source: str, first: int, last: int) -> str | None:
        stored = committed(source, first, last)
        if stored is None:
            return None
        if stored not in views:
            views[stored] = f"rule_records_{len(views)}"
            added = ("SELECT * FROM new_flows" if source == "vpcflow" else
                     # CloudTrail delivers some events twice: count the stored one only
                     "SELECT * FROM new_events WHERE event_id NOT IN "
                     f"(SELECT event_id FROM ({kept('SELECT * FROM cloudtrail')}))")
            con.execute(f"CREATE OR REPLACE TEMP VIEW {views[stored]} AS "
                        f"{kept(stored)} UNION ALL BY NAME {added}")
        return views[stored]

    try:
        return engine.evaluate(con, new, with_stored, not replaced, committed)
    finally:
        for name in ("new_flows", "new_events", "replaced_objects"):
            with contextlib.suppress(duckdb.Error):
                con.unregister(name)
        for view in views.values():
            con.execute(f"DROP VIEW IF EXISTS {view}")


def _without_replaced(stored: str) -> str:
    """``stored`` (records with their object's bucket and key) less the replaced objects'."""
    return (f"SELECT s.* FROM ({stored}) AS s ANTI JOIN replaced_objects AS r "
            "ON s.bucket = r.bucket AND s.object_key = r.object_key")


def upsert(con: duckdb.DuckDBPyConnection, fresh: pa.Table | None) -> pa.Table | None:
    """Write the alerts that are new or differ from their stored version (inside the
    caller's transaction); return them."""
    if fresh is None:
        return None
    con.register("fresh_alerts", fresh)
    # One event delivered in two objects of a batch raises its per-event alerts twice.
    duplicates = pc.count_distinct(fresh["id"]).as_py() != fresh.num_rows
    unique = "(SELECT DISTINCT ON (id) * FROM fresh_alerts)" if duplicates else "fresh_alerts"
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE changed_alerts AS
            SELECT f.*, coalesce(a.created, {NOW}) AS created, {NOW} AS updated,
                   coalesce(a.revision, 0) + 1 AS revision
            FROM {unique} f LEFT JOIN alerts a ON a.id = f.id
            WHERE a.id IS NULL OR {" OR ".join(
                f"a.{c} IS DISTINCT FROM f.{c}" for c in _ALERT_CHANGES)}
            """
        )
    finally:
        con.unregister("fresh_alerts")
    con.execute("DELETE FROM alerts WHERE id IN (SELECT id FROM changed_alerts)")
    con.execute("INSERT INTO alerts BY NAME SELECT * FROM changed_alerts")
    changed = con.sql("SELECT * FROM changed_alerts").to_arrow_table()
    return changed if changed.num_rows else None


def parity_of(con: duckdb.DuckDBPyConnection, committed: pa.Table, min_level: int
              ) -> pa.Table | None:
    """The parity alerts of the windows ``committed`` (flows that were just committed) falls
    in, with their figures so far: from every stored flow of those windows."""
    con.register("committed_flows_arrow", committed)
    try:
        new = f"({EMPTY_FLOWS} UNION ALL BY NAME SELECT * FROM committed_flows_arrow)"
        low, high = con.execute(f"SELECT min(start), max(start) FROM {new}").fetchall()[0]
        if low is None:
            return None
        flows = (f"(SELECT * FROM flows WHERE start >= {parity.window_floor(low)} "
                 f"AND start < {parity.window_floor(high) + parity.WINDOW})")
        rows = con.sql(f"{parity.select(flows, min_level, parity.touched(new))} "
                       "ORDER BY window_start, id").to_arrow_table()
    finally:
        con.unregister("committed_flows_arrow")
    return rows if rows.num_rows else None
