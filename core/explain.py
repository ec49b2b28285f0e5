"""What made a peak: the conversations of a time range by bytes, each with its share of the
range's bytes, its usual volume and whether the pair is new, the service ports and accounts
involved, and the alerts of the range (the app's ``w`` key; docs/app.md).

- **share**: the pair's bytes in the range (flows starting in it, in the filter's scope) over
  all such bytes;
- **usual**: the pair's mean bytes in the same window on the previous days the store holds
  (up to 7), or, with less than a day stored before the range, in the windows of the same
  length just before it (up to 6), in the same scope;
- **new**: the pair has no flow at all before the range in the store (retention).

Runs on the explorer's thread (its cursor). Reading "new" and "usual" reads the address
columns of the segments of those times: the cost grows with what is stored before the range
(a per-pair summary would bound it; not built yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from core.explorer import Explorer, Scope
from core.timeline import Axis, TimeRange

DAY = 86_400
USUAL_DAYS = 7
USUAL_WINDOWS = 6
TOP_PORTS = 5
TOP_ACCOUNTS = 5
ALERTS = 50
# keeps the flows of the pairs given as two lists (lower address, higher address)
_PAIRS = ("SEMI JOIN (SELECT unnest(?) AS lo, unnest(?) AS hi) p "
          "ON least(f.srcaddr, f.dstaddr) = p.lo AND greatest(f.srcaddr, f.dstaddr) = p.hi")


@dataclass(frozen=True)
class PeakExplanation:
    span: TimeRange
    total: int  # bytes of the flows in scope that start in the span
    pairs: list[dict[str, Any]]  # address, peer, bytes, share, usual, new, … (by bytes)
    usual_basis: str  # what "usual" is the mean of
    ports: list[tuple[int, int]]  # (service port: the lower of the two, bytes)
    accounts: list[tuple[str, int]]  # (account, bytes)
    alerts: pa.Table  # the feed's alerts of the span, newest first
    too_long: bool = False  # no pairs: the span has more flows than index_memory allows


def explain(explorer: Explorer, scope: Scope, span: TimeRange, limit: int = 20
            ) -> PeakExplanation:
    """What made the traffic of ``span`` in ``scope`` (its range is replaced by ``span``)."""
    return explorer.retry(lambda: _explain(explorer, scope, span, limit))


def _explain(explorer: Explorer, scope: Scope, span: TimeRange, limit: int
             ) -> PeakExplanation:
    ranged = Scope(scope.filter, span, scope.min_level)
    total = sum(explorer.histogram(ranged, Axis(span.start, span.end - span.start, 1)))
    rows = explorer.conversations(ranged, None, limit).to_pylist()
    pairs = [(min(r["address"], r["peer"]), max(r["address"], r["peer"])) for r in rows]
    windows, basis = _usual_windows(explorer, span)
    usual = _pair_bytes(explorer, scope, pairs, windows)
    seen = _seen_before(explorer, pairs, span.start)
    for row, pair in zip(rows, pairs, strict=True):
        row["bytes"] = row["bytes_out"] + row["bytes_in"]
        row["share"] = row["bytes"] / total if total else 0.0
        row["usual"] = usual.get(pair, 0) / len(windows) if windows else None
        row["new"] = pair not in seen
    where, params = scope.filter.flows_sql()
    ports = _top(explorer, span, "least(srcport, dstport)", where, params, TOP_PORTS)
    accounts = _top(explorer, span, "account_id", where, params, TOP_ACCOUNTS)
    return PeakExplanation(span, total, rows, basis, ports, accounts,
                           explorer.feed(ranged, 0, ALERTS), explorer.range_too_long(ranged))


def _usual_windows(explorer: Explorer, span: TimeRange) -> tuple[list[TimeRange], str]:
    """The windows "usual" is the mean over: the same window on previous days stored, else
    the windows of the same length before it, within what is stored."""
    stored = explorer.span()
    first = stored.start if stored else span.start
    days = [TimeRange(span.start - k * DAY, span.end - k * DAY)
            for k in range(1, USUAL_DAYS + 1) if span.start - k * DAY >= first]
    if days:
        return days, f"the same window on the {len(days)} previous day(s)"
    width = span.end - span.start
    before = [TimeRange(span.start - k * width, span.end - k * width)
              for k in range(1, USUAL_WINDOWS + 1) if span.start - k * width >= first]
    return before, f"the {len(before)} window(s) of the same length before"


def _segments_sql(explorer: Explorer, windows: list[TimeRange]) -> str | None:
    """SQL of the segments that may hold a flow starting in one of ``windows``."""
    names: list[str] = []
    for window in windows:
        names += [n for n in explorer.segments_between(window.start, window.end)
                  if n not in names]
    return f"({explorer.segments_sql(names)})" if names else None


def _pair_bytes(explorer: Explorer, scope: Scope, pairs: list[tuple[str, str]],
                windows: list[TimeRange]) -> dict[tuple[str, str], int]:
    """Each pair's bytes over all ``windows`` (in scope)."""
    source = _segments_sql(explorer, windows) if pairs and windows else None
    if source is None:
        return {}
    where, params = scope.filter.flows_sql()
    inside = " OR ".join("(start >= ? AND start < ?)" for _ in windows)
    bounds = [t for w in windows for t in (w.start, w.end)]
    rows = explorer.rows(
        f"""SELECT least(srcaddr, dstaddr) AS lo, greatest(srcaddr, dstaddr) AS hi,
                   coalesce(sum(bytes), 0)
            FROM {source} f {_PAIRS} WHERE ({inside}) AND {where} GROUP BY ALL""",
        [[lo for lo, _ in pairs], [hi for _, hi in pairs], *bounds, *params])
    return {(lo, hi): int(total) for lo, hi, total in rows}


def _seen_before(explorer: Explorer, pairs: list[tuple[str, str]], before: int
                 ) -> set[tuple[str, str]]:
    """The pairs with a flow (any) that starts before ``before``."""
    stored = explorer.span()
    if not pairs or stored is None or stored.start >= before:
        return set()
    source = _segments_sql(explorer, [TimeRange(stored.start, before)])
    if source is None:
        return set()
    rows = explorer.rows(
        f"""SELECT DISTINCT least(srcaddr, dstaddr), greatest(srcaddr, dstaddr)
            FROM {source} f {_PAIRS} WHERE start < ?""",
        [[lo for lo, _ in pairs], [hi for _, hi in pairs], before])
    return {(lo, hi) for lo, hi in rows}


def _top(explorer: Explorer, span: TimeRange, key: str, where: str, params: list[Any],
         limit: int) -> list[tuple[Any, int]]:
    """The ``key`` values with the most bytes among the span's flows in scope."""
    source = _segments_sql(explorer, [span])
    if source is None:
        return []
    rows = explorer.rows(
        f"SELECT {key} AS k, coalesce(sum(bytes), 0) AS b FROM {source} "
        f"WHERE start >= ? AND start < ? AND {where} AND {key} IS NOT NULL "
        "GROUP BY k ORDER BY b DESC, k LIMIT ?", [span.start, span.end, *params, limit])
    return [(k, int(b)) for k, b in rows]
