"""Where a memory-bounded hot window starts (``index_memory``; docs/app.md, "Bounded
memory"): from the traffic summary's flows per minute, at a cost per flow that counts the
estate's own share of address pairs."""

from __future__ import annotations

import duckdb

from core.store import Store, summaries
from core.store.summaries import MINUTE


def start_within(con: duckdb.DuckDBPyConnection, since: int, memory: int,
                 flow_bytes: float) -> int:
    """The first minute from which the flows since ``since``, at ``flow_bytes`` each, fit
    in ``memory`` bytes (counted newest minute first)."""
    held = 0
    for minute, flows in summaries.flows_per_minute(con, since):
        held += flows
        if held * flow_bytes > memory:
            return minute + MINUTE
    return since


def pair_ratio(store: Store, con: duckdb.DuckDBPyConnection, since: int) -> float:
    """Distinct address pairs per flow among the flows that start from ``since``
    (HyperLogLog's estimate: within a few percent; 1, the worst case, when no segment
    holds such flows)."""
    names = store.segments.between(since, None, con=con)
    if not names:
        return 1.0
    [(ratio,)] = con.execute(
        "SELECT approx_count_distinct(hash(least(srcaddr, dstaddr), "
        "greatest(srcaddr, dstaddr))) / greatest(count(*), 1) "
        f"FROM ({store.segments_sql(names)}) WHERE start >= ?", [since]).fetchall()
    return float(ratio or 0.0)
