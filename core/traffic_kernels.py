"""The traffic index's loops over selected flows, compiled with numba.

A filter's tests make a mask over all rows (``either_in``, ``either_is``); ``rows_of``
turns it into the numbers of the rows kept, and the sums read only those: a loop over all
rows that skips the others spends most of its time on mispredicted branches when the kept
rows are scattered (a filter keeping 250,000 of 10 million rows: 98 ms for the histogram
and the conversations' sums over the mask, 38 ms over the row numbers). Each sum takes the
index's column arrays, the rows and a time window (``start`` within [low, high)), and adds
the rows up in one pass without the GIL. Grouping 2 million flows by address pair and then
by a dozen details took DuckDB 190-280 ms and numpy (one pass per figure) 160 ms on two
cores; a compiled pass takes 20-50 ms. Compiled code is cached next to this file, so only
the first run on a machine compiles (about 7 s, on the app's reader thread).
"""

from __future__ import annotations

import heapq

import numba
import numpy as np
from numpy.typing import NDArray

SPARK_BUCKETS = 8
PORTS = 65536
Mask = NDArray[np.bool_]
Rows = NDArray[np.int32]  # row numbers, ascending
_jit = numba.njit(cache=True, nogil=True)


@_jit  # type: ignore[misc]
def rows_of(keep: Mask) -> Rows:
    """The numbers of the rows ``keep`` is true for (without a branch per row)."""
    count = 0
    for i in range(len(keep)):
        count += keep[i]
    rows = np.empty(count + 1, np.int32)
    j = 0
    for i in range(len(keep)):
        rows[j] = i
        j += keep[i]
    return rows[:count]


@_jit  # type: ignore[misc]
def histogram(rows: Rows, start: NDArray[np.uint32], nbytes: NDArray[np.int64], first: int,
              size: int, count: int) -> NDArray[np.int64]:
    """Bytes per bucket of ``size`` seconds from ``first`` (rows outside are left out)."""
    values = np.zeros(count, np.int64)
    for i in rows:
        bucket = (start[i] - first) // size
        if 0 <= bucket < count:
            values[bucket] += nbytes[i]
    return values


@_jit  # type: ignore[misc]
def either_in(wanted: NDArray[np.bool_], a: NDArray[np.int32], b: NDArray[np.int32]) -> Mask:
    """Rows whose ``a`` or ``b`` id is wanted (a lookup by id; one pass over both columns)."""
    keep = np.empty(len(a), np.bool_)
    for i in range(len(a)):
        keep[i] = wanted[a[i]] or wanted[b[i]]
    return keep


@_jit  # type: ignore[misc]
def either_is(value: int, a: NDArray[np.int32], b: NDArray[np.int32]) -> Mask:
    """Rows whose ``a`` or ``b`` equals ``value`` (one pass over both columns)."""
    keep = np.empty(len(a), np.bool_)
    for i in range(len(a)):
        keep[i] = a[i] == value or b[i] == value
    return keep


@_jit  # type: ignore[misc]
def pair_totals(rows: Rows, low: int, high: int, start: NDArray[np.uint32],
                pair: NDArray[np.int32], nbytes: NDArray[np.int64], total: NDArray[np.int64],
                flows: NDArray[np.int32]) -> NDArray[np.int32]:
    """Add the bytes and flows of each address pair (rows without a pair are left out) into
    ``total`` and ``flows`` (all zero on entry: see ``top_pairs``); returns the pairs
    touched. Only those entries are written: zeroing arrays over all pairs (ten million on
    a large estate) cost more than adding up a filter's rows."""
    touched = np.empty(len(rows), np.int32)
    count = 0
    for i in rows:
        p = pair[i]
        if p >= 0 and low <= start[i] < high:
            if flows[p] == 0:
                touched[count] = p
                count += 1
            total[p] += nbytes[i]
            flows[p] += 1
    return touched[:count]


@_jit  # type: ignore[misc]
def pair_details(rows: Rows, low: int, high: int, slot_of_pair: NDArray[np.int32],
                 slots: int, me: int,
                 pair: NDArray[np.int32], src: NDArray[np.int32], dst: NDArray[np.int32],
                 srcport: NDArray[np.int32], dstport: NDArray[np.int32],
                 protocol: NDArray[np.int16], action: NDArray[np.int8],
                 start: NDArray[np.uint32], end: NDArray[np.uint32],
                 nbytes: NDArray[np.int64], packets: NDArray[np.int64],
                 spark_first: int, spark_width: int
                 ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int32]]:
    """Everything the conversations pane shows, for the pairs given a slot.

    "out" is from ``me`` (or, with ``me`` < 0, from the pair's lower address id). Returns
    ``figures`` (slot × [bytes out, bytes in, packets out, packets in, flows, accepted,
    rejected, first start, last end, then SPARK_BUCKETS byte totals]), ``protocols`` (slot ×
    256 flow counts) and ``ports`` (slot × 65536 flow counts of the lower port of each
    flow, its service port)."""
    figures = np.zeros((slots, 9 + SPARK_BUCKETS), np.int64)
    figures[:, 7] = np.iinfo(np.int64).max
    figures[:, 8] = np.iinfo(np.int64).min
    protocols = np.zeros((slots, 256), np.int64)
    ports = np.zeros((slots, PORTS), np.int32)
    for i in rows:
        p = pair[i]
        if p < 0 or slot_of_pair[p] < 0 or not low <= start[i] < high:
            continue
        g = slot_of_pair[p]
        out = src[i] == me if me >= 0 else src[i] <= dst[i]
        way = 0 if out else 1
        figures[g, way] += nbytes[i]
        figures[g, 2 + way] += packets[i]
        figures[g, 4] += 1
        if action[i] == 1:
            figures[g, 5] += 1
        elif action[i] == 2:
            figures[g, 6] += 1
        figures[g, 7] = min(figures[g, 7], start[i])
        figures[g, 8] = max(figures[g, 8], end[i])
        bucket = min(SPARK_BUCKETS - 1, max(0, (start[i] - spark_first) // spark_width))
        figures[g, 9 + bucket] += nbytes[i]
        if protocol[i] >= 0:
            protocols[g, protocol[i]] += 1
        service = _service_port(srcport[i], dstport[i])  # (not ``low``: the range's start)
        if service >= 0:
            ports[g, service] += 1
    return figures, protocols, ports


@_jit  # type: ignore[misc]
def top_pairs(rows: Rows, low: int, high: int, limit: int, me: int,
              pair_ends: NDArray[np.int32], pair: NDArray[np.int32], src: NDArray[np.int32],
              dst: NDArray[np.int32], srcport: NDArray[np.int32], dstport: NDArray[np.int32],
              protocol: NDArray[np.int16], action: NDArray[np.int8],
              start: NDArray[np.uint32], end: NDArray[np.uint32], nbytes: NDArray[np.int64],
              packets: NDArray[np.int64], spark_first: int, spark_width: int, ports: int,
              total: NDArray[np.int64], flows: NDArray[np.int32],
              slot_of_pair: NDArray[np.int32]
              ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64],
                         NDArray[np.int32]]:
    """The conversations pane in one call: of ``rows`` that start in [low, high), the
    ``limit`` pairs with the most bytes (ties: more flows, then lower address ids) and, per
    pair, its figures and protocols (see ``pair_details``) and its ``ports`` service ports
    with the most flows. (One call, so that the thread never waits for the GIL in between
    while the app's thread draws.) ``total``, ``flows`` (zeros) and ``slot_of_pair`` (-1)
    are scratch arrays of one entry per pair, left as they were found."""
    touched = pair_totals(rows, low, high, start, pair, nbytes, total, flows)
    chosen = _most_bytes(touched.astype(np.int64), total, flows, pair_ends, limit)
    for slot in range(len(chosen)):
        slot_of_pair[chosen[slot]] = slot
    figures, protocols, counts = pair_details(
        rows, low, high, slot_of_pair, len(chosen), me, pair, src, dst, srcport, dstport,
        protocol, action, start, end, nbytes, packets, spark_first, spark_width)
    for p in touched:  # (the scratch arrays back to their resting state)
        total[p] = 0
        flows[p] = 0
    for p in chosen:
        slot_of_pair[p] = -1
    return chosen, figures, protocols, top_ports(counts, ports)


@_jit  # type: ignore[misc]
def _most_bytes(candidates: NDArray[np.int64], total: NDArray[np.int64],
                flows: NDArray[np.int32], pair_ends: NDArray[np.int32], limit: int
                ) -> NDArray[np.int64]:
    """Of ``candidates`` (pairs with flows, in any order), the ``limit`` with the most bytes,
    ordered (ties: more flows, then the lower ends)."""
    if 0 < limit < len(candidates):  # only those that can make the cut need sorting
        candidates = candidates[total[candidates] >= _kth_largest(total[candidates], limit)]
    order = np.arange(len(candidates))  # stable sorts, the last key first
    for key in (pair_ends[candidates, 1].astype(np.int64), pair_ends[candidates, 0].astype(
            np.int64), -flows[candidates].astype(np.int64), -total[candidates]):
        order = order[np.argsort(key[order], kind="mergesort")]
    return candidates[order[:limit]]


@_jit  # type: ignore[misc]
def _kth_largest(values: NDArray[np.int64], k: int) -> int:
    """The ``k``-th largest of ``values`` (more than ``k`` of them), through a heap of ``k``
    (np.partition would do, but takes numba 6 s to compile)."""
    heap = [values[0] for _ in range(0)]  # (an empty list of the values' type)
    for value in values:
        if len(heap) < k:
            heapq.heappush(heap, value)
        elif value > heap[0]:
            heapq.heapreplace(heap, value)
    return heap[0]


@_jit  # type: ignore[misc]
def _service_port(a: int, b: int) -> int:
    """The lower of two ports, either of which may be missing (-1)."""
    if a < 0:
        return b
    if b < 0:
        return a
    return min(a, b)


@_jit  # type: ignore[misc]
def top_ports(ports: NDArray[np.int32], keep: int) -> NDArray[np.int32]:
    """Per slot, the ``keep`` ports with the most flows (ties: the lower port), -1 padded."""
    slots = ports.shape[0]
    best = np.full((slots, keep), -1, np.int32)
    for g in range(slots):
        counts = np.zeros(keep, np.int64)
        for port in range(PORTS):
            n = ports[g, port]
            if n == 0 or n <= counts[keep - 1]:
                continue
            k = keep - 1
            while k > 0 and n > counts[k - 1]:
                counts[k], best[g, k] = counts[k - 1], best[g, k - 1]
                k -= 1
            counts[k], best[g, k] = n, port
    return best


@_jit  # type: ignore[misc]
def used_ids(ids: NDArray[np.int32], count: int) -> Mask:
    """Which of the ids 0 .. count-1 occur in ``ids`` (negative ones: none)."""
    used = np.zeros(count, np.bool_)
    for i in ids:
        if i >= 0:
            used[i] = True
    return used


@_jit  # type: ignore[misc]
def renumber(ids: NDArray[np.int32], new: NDArray[np.int32]) -> None:
    """Replace each id (>= 0) by ``new[id]``, in place (no copy of a column)."""
    for k in range(len(ids)):
        if ids[k] >= 0:
            ids[k] = new[ids[k]]


def warm_up() -> None:
    """Load (or, on a machine's first run, compile) every loop now, so that the first view
    does not wait for it (the first load takes ~0.3 s)."""
    keep, ids = np.ones(1, np.bool_), np.zeros(1, np.int32)
    numbers, seconds = np.zeros(1, np.int64), np.zeros(1, np.uint32)
    rows = rows_of(keep)
    histogram(rows, seconds, numbers, 0, 1, 1)
    either_in(keep, ids, ids)
    either_is(0, ids, ids)
    renumber(np.zeros(1, np.int32), np.zeros(1, np.int32))
    used_ids(ids, 1)
    top_pairs(rows, 0, 1, 1, -1, np.zeros((1, 2), np.int32), ids, ids, ids, ids, ids,
              np.zeros(1, np.int16), np.zeros(1, np.int8), seconds, seconds, numbers, numbers,
              0, 1, 3, np.zeros(1, np.int64), np.zeros(1, np.int32), np.full(1, -1, np.int32))
