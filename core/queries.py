"""Questions the interfaces ask the store about traffic. Plain SQL, parameters bound, no UI."""

from __future__ import annotations

from dataclasses import dataclass

from core.store import Store


@dataclass(frozen=True)
class Conversation:
    srcaddr: str
    dstaddr: str
    bytes: int
    packets: int
    flows: int


@dataclass(frozen=True)
class Peak:
    minute: int  # epoch seconds of the minute's start
    bytes: int


def top_conversations(store: Store, since: int, until: int, limit: int = 10) -> list[Conversation]:
    """Address pairs by bytes in [since, until). NAT'd flows count under their pkt-* addresses."""
    rows = store.con.execute(
        """
        SELECT coalesce(pkt_srcaddr, srcaddr), coalesce(pkt_dstaddr, dstaddr),
               sum(bytes), sum(packets), count(*)
        FROM flows
        WHERE start >= ? AND start < ? AND srcaddr IS NOT NULL
        GROUP BY ALL ORDER BY 3 DESC, 1, 2 LIMIT ?
        """,
        [since, until, limit],
    ).fetchall()
    return [Conversation(*row) for row in rows]


def peak_minute(store: Store, since: int, until: int) -> Peak | None:
    """The minute with the most bytes in [since, until)."""
    rows = store.con.execute(
        """
        SELECT start // 60 * 60 AS minute, sum(bytes) FROM flows
        WHERE start >= ? AND start < ? AND bytes IS NOT NULL
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1
        """,
        [since, until],
    ).fetchall()
    return Peak(int(rows[0][0]), int(rows[0][1])) if rows else None
