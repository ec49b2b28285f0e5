"""The flows in memory as integer columns, for the app's interactive questions (its read side).

The Parquet segments stay the record. Answering "who talked to 10.0.2.45" from them means
reading two address-string columns of every row: about 150 ms per column per 10 million rows
on two cores, before any grouping. The index keeps the columns the app filters and groups on
as numpy arrays, with each address replaced by an integer id (``core.address_ids``: in
``ix_addr``, a temp table of the reading connection, so that address and network terms stay
SQL) and each address pair by a pair id; texts become small integer codes (action: fixed
ones; interface, VPC and account: given in ``ix_text`` as they first appear).
Filter terms are evaluated on the arrays (:meth:`select`) and the sums run as compiled
loops (``core.traffic_kernels``).

:meth:`TrafficIndex.sync` follows the segment list: rows of new segments are added, rows of
segments that compaction merged or retention dropped are removed; when a sync removes more
rows than it adds (retention, not compaction), addresses no flow uses any more leave
``ix_addr`` too. Memory: about 55 bytes a flow, plus 36 a pair.

An index may cover a time span instead of the whole store: the *hot window* (the last
``hot_seconds`` before the newest flow; its start follows new data by whole hours, so it
spans up to an hour more) or a fixed ``window`` (a past range being looked at). It holds
exactly the flows that start in its span [``start``, ``end``). What lies outside comes from
the traffic summary or the segments (``core.explorer``; docs/app.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from core import index_budget
from core import traffic_kernels as kernels
from core.address_ids import AddressIds
from core.address_pairs import PAIR_COST, AddressPairs
from core.filters import IndexTest
from core.growing_columns import Columns, GrowingColumns
from core.store import Store
from core.store.segments import FILE_COLUMN
from core.store.summaries import MINUTE  # (a hot window starts on the summary's unit)
from core.timeline import Axis, TimeRange
from core.traffic_kernels import Rows

TEXT = ("interface_id", "vpc_id", "account_id")  # kept as codes (0: missing)
ACTIONS = {"ACCEPT": 1, "REJECT": 2}  # the action column's codes (0: other or missing)
# Segment codes are reused once their segment leaves (at most 65,535 indexed at once: the
# collector compacts small ones); text codes start at 16 bits and widen past 65,535 values.
DTYPES: dict[str, type[np.generic]] = {
    "segment": np.uint16, "src": np.int32, "dst": np.int32, "pair": np.int32,
    "start": np.uint32, "end": np.uint32, "srcport": np.int32, "dstport": np.int32,
    "protocol": np.int16, "packets": np.int64, "bytes": np.int64, "action": np.int8,
    "interface_id": np.uint16, "vpc_id": np.uint16, "account_id": np.uint16}
SEGMENT_CODES = np.iinfo(DTYPES["segment"]).max
# A flow's bytes in the index (55) with the worst case of a new address pair for each.
FLOW_COST = sum(np.dtype(kind).itemsize for kind in DTYPES.values()) + PAIR_COST
TOP_PORTS = 3
_SERIALS = itertools.count(1)
CHUNK_ROWS = 250_000  # small segments are indexed together up to this many rows, and a
# large one this many rows at a time: the copies a batch makes stay small beside the index
Listed = tuple[str, int | None, int | None, int | None]  # name, min start, max end, records
TRIM_SECONDS = 3600  # a hot window's start moves by at least this much at a time
OVER_BUDGET = 1.25  # the budget is looked at again before the hour when this far over it


@dataclass(frozen=True)
class PairFigures:
    """The conversations pane's figures for one pair (see traffic_kernels.pair_details)."""

    address: int  # ids; "out" is from address to peer
    peer: int
    figures: list[int]
    protocols: list[int]
    ports: list[int]


class TrafficIndex:
    def __init__(self, store: Store, con: duckdb.DuckDBPyConnection,
                 hot_seconds: float | None = None, window: TimeRange | None = None,
                 memory: int | None = None):
        """``hot_seconds``: cover the last this many seconds before the newest flow (None:
        everything); ``window``: cover this span instead. ``memory``: a hot window's
        budget in bytes: it starts later when the flows of ``hot_seconds`` would not fit
        (see _start_within_budget)."""
        self._store, self.con = store, con
        self._hot_seconds, self.window = hot_seconds, window
        self._memory = memory
        self._budget = (0, 0)  # (newest flow then, the first minute that fit the budget)
        self.trimmed = False  # the budget, not hot_seconds, chose the hot window's start
        self.newest: int | None = None  # the newest flow's end, when a hot window last moved
        self.start: int | None = window.start if window else None  # None: from the first flow
        self.end: int | None = window.end if window else None  # None: to the newest
        self.indexed: dict[str, int] = {}  # segment name -> its code in the segment column
        self.version = 0  # changes whenever the indexed rows change
        self._storage = GrowingColumns(DTYPES)
        self.serial = next(_SERIALS)  # tells indexes apart (an id() may be reused)
        self._spans: dict[str, tuple[int | None, int | None]] = {}  # segment: first, last
        self._blocks: tuple[int, list[tuple[int, int, str]]] = (-1, [])  # see rows_in
        self._codes: dict[str, dict[str, int]] = {c: {} for c in TEXT} | {"action": ACTIONS}
        self.pairs = AddressPairs()  # each row's address pair, and the conversations' sums
        self._id_limit = 0  # no indexed row has a higher address id
        self.addresses = AddressIds(con)
        con.execute("CREATE OR REPLACE TEMP TABLE ix_text (kind VARCHAR, value VARCHAR, "
                    "code INTEGER)")
        kernels.warm_up()

    @property
    def rows(self) -> int:
        return self._storage.rows

    @property
    def columns(self) -> Columns:
        """The indexed rows' columns (views: valid until the index next changes)."""
        return self._storage.view()

    # -- following the segments -----------------------------------------------------------

    def sync(self) -> bool:
        """Index the segments listed now that hold flows of the span (which moves with the
        newest flow for a hot window); True when anything changed."""
        listed = self._store.segments.listed(self.con)
        version = self.version
        removed = moved = self._follow_hot_window(listed)
        wanted = {name for name, first, last, _ in listed
                  if (self.start is None or last is None or last >= self.start)
                  and (self.end is None or first is None or first < self.end)}
        gone = set(self.indexed) - wanted
        new = [(name, records) for name, _, _, records in listed
               if name in wanted and name not in self.indexed]
        self._spans.update({name: (first, last) for name, first, last, _ in listed
                            if name in wanted and name not in self.indexed})
        added = 0
        if gone:
            removed += self._remove(gone)
        if new:
            self._storage.reserve(sum(records or 0 for _, records in new))  # (at most)
            for chunk in _chunks(new):
                added += self._add(chunk)
        if added and self._over_budget():  # (late data for the hours held)
            dropped = self._follow_hot_window(listed)
            removed, moved = removed + dropped, moved + dropped
        if removed > added or moved:  # (retention, or the hot window moved on)
            self.addresses.forget_unused(self.columns["src"], self.columns["dst"])
            self.pairs.forget_unused(self.columns["pair"])
        return self.version != version

    def _follow_hot_window(self, listed: Sequence[Listed]) -> int:
        """Move a hot window's start after the newest flow, by whole TRIM_SECONDS (dropping
        the rows before it moves every column); returns the rows dropped."""
        if self._hot_seconds is None:
            return 0
        newest = max((end for _, _, end, _ in listed if end is not None), default=None)
        if newest is None:
            return 0
        self.newest = int(newest)
        target = int(newest - self._hot_seconds) // MINUTE * MINUTE
        if self._memory is not None:
            if (self.start is None or self.newest - self._budget[0] >= TRIM_SECONDS
                    or self._over_budget()):
                self._budget = (self.newest, self._start_within_budget(target))
            fits = self._budget[1]  # (looked for when the window may move: hourly)
            self.trimmed, target = fits > target, max(target, fits)
        if self.start is not None and target - self.start < TRIM_SECONDS:
            return 0
        self.start = target
        return self._keep(self.columns["start"] >= target)

    def _over_budget(self) -> bool:
        """Whether the index is well over its budget (then it is looked at before the hour)."""
        held = self.rows * self._storage.row_bytes + PAIR_COST * len(self.pairs)
        return self._memory is not None and held > self._memory * OVER_BUDGET

    def _start_within_budget(self, since: int) -> int:
        """A flow costs its columns and its share of address pairs: the index's own ratio of
        pairs to flows, or before there is one, the ratio among the flows since ``since``."""
        assert self._memory is not None
        ratio = (len(self.pairs) / self.rows if self.rows
                 else index_budget.pair_ratio(self._store, self.con, since))
        return index_budget.start_within(self.con, since, self._memory,
                                         self._storage.row_bytes + PAIR_COST * ratio)

    def _remove(self, names: set[str]) -> int:
        codes = [self.indexed.pop(name) for name in names]
        for name in names:
            self._spans.pop(name, None)
        return self._keep(~np.isin(self.columns["segment"], codes))

    def _keep(self, mask: NDArray[np.bool_]) -> int:
        dropped = self._storage.keep(mask)
        if dropped:
            self.version += 1
        return dropped

    def _add(self, names: Sequence[str]) -> int:
        """Index these segments: their new addresses and texts first, then their rows, all
        numbers by then, streamed CHUNK_ROWS at a time. Reading the Parquet files again costs
        less than copying their rows first; they are immutable."""
        bounds = [f"start >= {int(self.start)}"] if self.start is not None else []
        bounds += [f"start < {int(self.end)}"] if self.end is not None else []
        rows = f"({self._store.segments_sql(names, filename=True)})"
        if bounds:
            rows = f"(SELECT * FROM {rows} WHERE {' AND '.join(bounds)})"
        self.addresses.add(rows)
        for column in TEXT:
            self._code_texts(column, rows)
        codes = self._free_segment_codes(len(names))
        texts = ", ".join(f"coalesce(t{i}.code, 0) AS {c}" for i, c in enumerate(TEXT))
        joins = " ".join(f"LEFT JOIN ix_text t{i} ON t{i}.kind = '{c}' AND t{i}.value = n.{c}"
                         for i, c in enumerate(TEXT))
        result = self.con.sql(f"""
            SELECT k.code::INTEGER AS segment, coalesce(s.id, 0) AS src,
                   coalesce(d.id, 0) AS dst, {_seconds('"start"')}, {_seconds('"end"')},
                   coalesce(srcport, -1)::INTEGER AS srcport,
                   coalesce(dstport, -1)::INTEGER AS dstport,
                   coalesce(protocol, -1)::SMALLINT AS protocol,
                   coalesce(packets, 0)::BIGINT AS packets, coalesce(bytes, 0)::BIGINT AS bytes,
                   (CASE action WHEN 'ACCEPT' THEN 1 WHEN 'REJECT' THEN 2 ELSE 0 END)::TINYINT
                     AS action, {texts}
            FROM {rows} n
            JOIN (SELECT unnest($names) AS name, unnest($codes) AS code) k
              ON k.name = parse_filename(n.{FILE_COLUMN})
            LEFT JOIN ix_addr s ON s.address = n.srcaddr
            LEFT JOIN ix_addr d ON d.address = n.dstaddr {joins}""",
            params={"names": list(names), "codes": codes})
        first_row = self.rows
        try:
            with result.to_arrow_reader(batch_size=CHUNK_ROWS) as reader:
                for arrow in reader:
                    self._append(arrow)
        except BaseException:  # (a segment gone mid-read: none of these rows stay)
            self._storage.truncate(first_row)
            raise
        if len(names) > 1:  # each segment's rows together (see rows_in)
            self._storage.sort_from(first_row, "segment")
        self.version += 1
        self.indexed.update(zip(names, codes, strict=True))
        return self.rows - first_row

    def _free_segment_codes(self, count: int) -> list[int]:
        used = set(self.indexed.values())
        codes = list(itertools.islice((c for c in itertools.count(1) if c not in used), count))
        if codes[-1] > SEGMENT_CODES:
            raise RuntimeError(f"more than {SEGMENT_CODES} segments to index at once")
        return codes

    def _append(self, arrow: pa.RecordBatch) -> None:
        batch = {}
        for name, column in zip(arrow.schema.names, arrow.columns, strict=True):
            values = column.to_numpy(zero_copy_only=False)
            if name in TEXT and int(values.max(initial=0)) > np.iinfo(
                    self._storage.dtype(name)).max:
                self._storage.widen(name, np.int32)  # (more texts than 16 bits count)
            batch[name] = np.asarray(values, self._storage.dtype(name))
        batch["pair"] = self.pairs.ids(batch["src"], batch["dst"])
        self._storage.append(batch)
        self._id_limit = max(self._id_limit, int(batch["src"].max(initial=0)),
                             int(batch["dst"].max(initial=0)))

    def _code_texts(self, column: str, rows: str) -> None:
        """Give the column's new texts codes (0: missing), the same in every batch."""
        [(before,)] = self.con.execute(
            "SELECT coalesce(max(code), 0) FROM ix_text WHERE kind = ?", [column]).fetchall()
        self.con.execute(f"""
            INSERT INTO ix_text
            SELECT ?, v, ? + row_number() OVER ()
            FROM (SELECT DISTINCT {column} AS v FROM {rows}) n
            WHERE v IS NOT NULL AND v NOT IN (SELECT value FROM ix_text WHERE kind = ?)""",
                         [column, before, column])
        self._codes[column].update(self.con.execute(
            "SELECT value, code FROM ix_text WHERE kind = ? AND code > ?",
            [column, before]).fetchall())

    @property
    def names(self) -> list[str | None]:
        """Each address id's text (id 0: missing)."""
        return self.addresses.names

    def address_id(self, address: str) -> int | None:
        return self.addresses.id_of(address)

    # -- questions ------------------------------------------------------------------------

    def rows_in(self, span: TimeRange | None) -> Rows | None:
        """The rows of the segments that may hold a flow starting in ``span`` (None: all
        rows): a segment's rows are kept together, so a short range reads few of them."""
        if span is None:
            return None
        blocks = self._segment_blocks()
        kept = [np.arange(first, last, dtype=np.int32) for first, last, name in blocks
                if _may_hold(self._spans.get(name, (None, None)), span)]
        if len(kept) == len(blocks):
            return None
        return np.concatenate(kept) if kept else np.empty(0, np.int32)

    def _segment_blocks(self) -> list[tuple[int, int, str]]:
        """(first row, end row, segment) of each segment's rows, for this version."""
        if self._blocks[0] != self.version:
            blocks: list[tuple[int, int, str]] = []
            if self.rows:  # (none: no block, not one of no row: a range then failed)
                segment = self.columns["segment"]
                edges = (np.flatnonzero(segment[1:] != segment[:-1]) + 1).tolist()
                starts, ends = [0, *edges], [*edges, self.rows]
                names = {code: name for name, code in self.indexed.items()}
                blocks = [(first, last, names[code]) for first, last, code
                          in zip(starts, ends, segment[starts].tolist(), strict=True)]
            self._blocks = (self.version, blocks)
        return self._blocks[1]

    def select(self, tests: Sequence[tuple[IndexTest, bool]], within: Rows | None = None
               ) -> Rows:
        """The rows (of ``within``, default all) that pass every test (negated ones: that
        fail it), as ascending row numbers."""
        keep: NDArray[np.bool_] | None = None
        for test, negated in tests:
            match = self._match(test)
            if negated:
                np.logical_not(match, out=match)
            if keep is None:
                keep = match
            else:
                keep &= match
        if within is not None:
            return within if keep is None else within[keep[within]]
        return np.arange(self.rows, dtype=np.int32) if keep is None else kernels.rows_of(keep)

    def _match(self, test: IndexTest) -> NDArray[np.bool_]:
        """Rows where any of the test's columns matches (missing values never match)."""
        first, last = self.columns[test.columns[0]], self.columns[test.columns[-1]]
        if test.address is not None:
            return kernels.either_is(self.address_id(test.address) or -1,  # type: ignore[no-any-return]
                                     first, last)
        if test.ids is None:
            code = self._value_code(test.columns[0], test.value)
            if first.dtype == last.dtype == np.int32:
                return kernels.either_is(code, first, last)  # type: ignore[no-any-return]
            return (first == code) | (last == code)  # type: ignore[no-any-return]
        sql, params = test.ids
        ids = self.con.execute(sql, params).fetchnumpy()["id"]
        wanted = np.zeros(max(int(ids.max(initial=0)), self._id_limit) + 1, bool)
        wanted[ids] = True
        wanted[0] = False  # (a missing address)
        return kernels.either_in(wanted, first, last)  # type: ignore[no-any-return]

    def _value_code(self, column: str, value: object) -> int:
        if column in self._codes:
            return self._codes[column].get(str(value), -1)  # -1: no row has it
        return int(value)  # type: ignore[call-overload]

    def histogram(self, rows: Rows, axis: Axis) -> list[int]:
        """Bytes per bucket of ``axis`` of ``rows``."""
        values = kernels.histogram(rows, self.columns["start"], self.columns["bytes"],
                                   axis.start, axis.size, axis.count)
        return [int(v) for v in values]

    def top_pairs(self, rows: Rows, window: TimeRange | None, me: int,
                  limit: int, spark: tuple[int, int]) -> list[PairFigures]:
        """Of ``rows``, those that start in ``window``: the ``limit`` pairs with the most bytes
        (ties: more flows, then lower ids), with their figures; each as (me, peer) when
        ``me`` >= 0, else as (low id, high id)."""
        c, ends = self.columns, self.pairs.ends
        low, high = (window.start, window.end) if window else (-(2**62), 2**62)
        chosen, figures, protocols, ports = self.pairs.summed(lambda sums: kernels.top_pairs(
            rows, low, high, limit, me, ends, c["pair"], c["src"], c["dst"], c["srcport"],
            c["dstport"], c["protocol"], c["action"], c["start"], c["end"], c["bytes"],
            c["packets"], spark[0], spark[1], TOP_PORTS, *sums))
        seen = [np.flatnonzero(counts).tolist() for counts in protocols]
        out = []
        for pair, numbers, kinds, best in zip(chosen.tolist(), figures.tolist(), seen,
                                              ports.tolist(), strict=True):
            first, second = ends[pair].tolist()
            shown = (first, second) if me < 0 else (me, second if first == me else first)
            out.append(PairFigures(*shown, numbers, kinds, [p for p in best if p >= 0]))
        return out


def _seconds(column: str) -> str:
    """A time column as the index keeps it: unsigned 32-bit seconds (to 2106; a hostile
    value out of that range is clamped, not wrapped; missing: 0)."""
    return f"least(greatest(coalesce({column}, 0), 0), {2**32 - 1})::UINTEGER AS {column}"


def _may_hold(bounds: tuple[int | None, int | None], span: TimeRange) -> bool:
    """Whether a segment whose flows start from ``bounds[0]`` and end by ``bounds[1]`` may
    hold one that starts in ``span`` (unknown bounds: it may)."""
    first, last = bounds
    return (last is None or last >= span.start) and (first is None or first < span.end)


def _chunks(segments: Sequence[tuple[str, int | None]]) -> list[list[str]]:
    """The segments' names in groups of about CHUNK_ROWS records (one segment at least)."""
    chunks: list[list[str]] = [[]]
    rows = 0
    for name, records in segments:
        if chunks[-1] and rows + (records or 0) > CHUNK_ROWS:
            chunks.append([])
            rows = 0
        chunks[-1].append(name)
        rows += records or 0
    return chunks
