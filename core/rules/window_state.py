"""What the threshold and baseline rules of flows already know about their open windows, so
that a commit's check reads its new records and this, not the stored segments.

Per rule, temporary tables on the writer's connection hold partial aggregates
(``partials``) of every committed record it takes with a time in ``[lo, hi)``, grouped by the
rule's keys, its window (``_w``) and the values its DISTINCT aggregates count. A check
merges those rows for the touched windows with the new records' own partial rows. After the
commit's transaction, the table of the new records' partial rows, less those outside
``[lo, hi)``, joins the held ones (``committed``): it is not copied (inserting a large
commit's rows into one table cost 30-40 ms of its 200 ms of rule work). While a rule has
more than ``MAX_TABLES``, its two neighbouring tables with the fewest rows are merged, so a
row is copied a few times at most, not at every commit.

The tables are derived from the store, never the other way round, so they are kept only in
memory: after a restart the first commit of a rule fills them from the segments (what
every check read before), and whatever makes them doubtful drops them (``reset``: a batch
that replaces records; ``forget_before``: retention). A commit whose windows lie far
before ``[lo, hi)`` (an object days late) checks from the segments, as before, and adds
only its own records inside the range; one far after it (new data after a quiet spell)
starts again. Rows of windows older than the rule's span behind the newest ones are
dropped, so the tables stay the size of an hour or two of traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

from core.rules.partials import Partials, split
from core.rules.windowed import WindowedRule

log = logging.getLogger(__name__)

# (begin, end) -> SQL of the committed records that may have a time in [begin, end) (end
# None: no end), or None when none may
Committed = Callable[[int, int | None], str | None]

SLACK = 3600  # seconds kept beyond a rule's own span: late objects of the last hour are cheap
NO_END = 2**62
# A check aggregates every row of its range first when the new rows are at least this share
# of the rows held there: a large commit touches most keys, and joining the held rows to
# them first keeps nearly all (measured, four 500,000-record commits of one hour: the checks
# took 72 ms a commit aggregating first, 85 ms joining first); a small one touches few, and
# the join leaves little to aggregate
AGGREGATE_FIRST_SHARE = 0.5
# Fewer new rows than this join first without counting the rows held in range: the join
# leaves little either way, and the count cost a 10-record commit about 0.7 ms a rule
FEW_ROWS = 10_000
# Held tables of one rule before two are merged: each adds a scan to every check
MAX_TABLES = 8


@dataclass
class _Table:
    name: str
    rows: int


@dataclass
class _Held:
    """One rule's tables and the range of record times they hold whole."""

    name: str  # (its tables' names start with it)
    partials: Partials
    window: int
    keep: int  # seconds behind the newest window that are kept
    ahead: int = 0  # how far a check reaches past its records (a baseline's later windows)
    lo: int | None = None
    hi: int = NO_END
    newest: int = 0
    staged: str | None = None  # the table of the new records' partial rows, until committed
    staged_rows: int = 0
    tables: list[_Table] = field(default_factory=list)  # (none: nothing held, or lo is None)
    serial: int = 0  # (for the next table's name)

    def new_table(self) -> str:
        self.serial += 1
        return f"{self.name}_{self.serial}"

    def rows(self, where: str = "", tables: list[_Table] | None = None) -> str:
        """SQL of the held rows (``where``: those that pass it; ``tables``: of these)."""
        return " UNION ALL BY NAME ".join(f"SELECT * FROM {table.name} {where}"
                                          for table in self.tables if tables is None
                                          or table in tables)


class WindowState:
    """The held windows of every flow rule with a check whose expression splits into
    partials (the others read the segments)."""

    def __init__(self, rules: list[WindowedRule], con: duckdb.DuckDBPyConnection | None = None):
        """``con``: a connection with the ``flows`` view, to check that each rule's check
        over partial rows compiles (a rule whose check does not reads the segments)."""
        self.held: dict[str, _Held] = {}
        for n, sql in enumerate(rules):
            rule = sql.rule
            if rule.source != "vpcflow" or not sql.needs_check:
                continue
            partials = split(rule.baseline or rule.having)
            if partials is None or (con is not None and not _compiles(con, sql, partials)):
                continue
            span = rule.baseline_windows * (rule.window or 0) if rule.baseline else 0
            self.held[rule.id] = _Held(f"rule_state_{n}", partials, rule.window or 1,
                                       span + rule.bucket + SLACK, ahead=span)

    def stage(self, con: duckdb.DuckDBPyConnection, sql: WindowedRule, new: str
              ) -> bool | None:
        """Keep the partial rows of the new records ``sql`` takes, for ``check`` and
        ``committed``. Returns whether there are any; None when the rule holds nothing (no
        partials, or this failed)."""
        held = self.held.get(sql.rule.id)
        if held is None:
            return None
        staged = held.new_table()
        try:
            rows = con.execute(f"CREATE OR REPLACE TEMP TABLE {staged} AS "
                               f"{sql.partial_rows(new, held.partials)}").fetchall()
        except duckdb.Error as exc:  # (the rule's own check then reads the segments)
            self._failed(con, held, exc)
            return None
        held.staged, held.staged_rows = staged, int(rows[0][0]) if rows else 0
        return held.staged_rows > 0

    def check(self, con: duckdb.DuckDBPyConnection, sql: WindowedRule, begin: int, end: int,
              committed: Committed) -> str | None:
        """``sql``'s check over the partial rows of every record, committed or staged, of
        its windows in [begin, end); None when it must read the segments (nothing staged,
        or windows far from those held)."""
        held = self.held.get(sql.rule.id)
        if held is None or held.staged is None:
            return None
        try:
            if not self._cover(con, sql, held, begin, end, committed):
                return None
            in_range = held.rows(f"WHERE _w >= {begin} AND _w < {end}")
            large = not sql.rule.baseline and _aggregate_first(con, held, in_range)
        except duckdb.Error as exc:
            self._failed(con, held, exc)
            return None
        held.newest = max(held.newest, end - held.ahead)
        rows = f"SELECT * FROM {held.staged}"
        rows = f"({rows} UNION ALL BY NAME {in_range})" if in_range else f"({rows})"
        return sql.check_parts(rows, held.staged, held.partials, aggregate_first=large,
                               unique=not in_range)

    def _failed(self, con: duckdb.DuckDBPyConnection, held: _Held, exc: duckdb.Error) -> None:
        log.warning("%s: the rule's held windows failed, it reads the segments: %s",
                    held.name, str(exc).splitlines()[0])
        self._drop(con, held)

    def _cover(self, con: duckdb.DuckDBPyConnection, sql: WindowedRule, held: _Held,
               begin: int, end: int, committed: Committed) -> bool:
        """Extend [lo, hi) to [begin, end) by reading the segments; False when [begin, end)
        lies far before it (an object days late: the check reads the segments). Far after
        it (new data after a quiet spell), what is held is dropped and [lo, hi) starts
        again at [begin, end)."""
        if held.lo is not None and end > held.hi + held.keep:
            self._drop_held(con, held)
        if held.lo is None:
            held.lo = held.hi = begin
        elif begin < held.lo - held.keep:
            return False
        # (lo <= hi always: the two reads below never overlap)
        for low, high in ((begin, held.lo), (held.hi, end)):
            stored = committed(low, high) if low < high else None
            if stored is not None:
                table = _Table(held.new_table(), 0)
                held.tables.append(table)  # (listed first: a failure drops it too)
                rows = sql.partial_rows(f"({stored})", held.partials, low, high)
                table.rows = _changed(con, f"CREATE TEMP TABLE {table.name} AS {rows}")
                if not table.rows:
                    _drop_listed(con, held, table)
        held.lo = min(held.lo, begin)
        if end > held.hi:
            held.hi = end if committed(end, None) else NO_END
        return True

    def committed(self, con: duckdb.DuckDBPyConnection) -> None:
        """The staged rows are committed: hold those in [lo, hi), and drop old windows. (A
        failure here drops what is held: the commit is done, and must not fail.)"""
        for held in self.held.values():
            try:
                self._take_staged(con, held)
            except duckdb.Error as exc:
                self._failed(con, held, exc)

    def _take_staged(self, con: duckdb.DuckDBPyConnection, held: _Held) -> None:
        if held.staged is None:
            return
        staged = held.staged
        outside = held.staged_rows if held.lo is None else _changed(
            con, f"DELETE FROM {staged} WHERE _w < {held.lo} OR _w >= {held.hi}")
        if outside < held.staged_rows:
            held.tables.append(_Table(staged, held.staged_rows - outside))
        else:
            con.execute(f"DROP TABLE {staged}")
        held.staged = None
        if held.lo is None:
            return
        while len(held.tables) > MAX_TABLES:
            _merge_smallest_pair(con, held)
        if held.lo < held.newest - held.keep - SLACK:
            self._drop_before(con, held, held.newest - held.keep)

    def discard(self, con: duckdb.DuckDBPyConnection) -> None:
        """The staged rows were not committed."""
        for held in self.held.values():
            if held.staged is not None:
                _quietly(con, f"DROP TABLE IF EXISTS {held.staged}")
                held.staged = None

    def forget_before(self, con: duckdb.DuckDBPyConnection, cutoff: int) -> None:
        """Records with a time before ``cutoff`` may be gone (retention)."""
        for held in self.held.values():
            if held.lo is not None and held.lo < cutoff:
                try:
                    self._drop_before(con, held, cutoff)
                except duckdb.Error as exc:  # (the prune is done: this must not fail it)
                    self._failed(con, held, exc)

    def reset(self, con: duckdb.DuckDBPyConnection) -> None:
        """Stored records were replaced: nothing held can be trusted."""
        for held in self.held.values():
            self._drop(con, held)

    def _drop(self, con: duckdb.DuckDBPyConnection, held: _Held) -> None:
        self._drop_held(con, held)
        if held.staged is not None:
            _quietly(con, f"DROP TABLE IF EXISTS {held.staged}")
            held.staged = None

    @staticmethod
    def _drop_held(con: duckdb.DuckDBPyConnection, held: _Held) -> None:
        """Drop every held row, and the range they held."""
        for table in held.tables:
            _quietly(con, f"DROP TABLE IF EXISTS {table.name}")
        held.tables = []
        held.lo, held.hi = None, NO_END

    def _drop_before(self, con: duckdb.DuckDBPyConnection, held: _Held, time: int) -> None:
        # the windows from the first boundary at or after ``time`` hold all their records
        lo = -(-time // held.window) * held.window
        if lo >= held.hi:  # (nothing left of [lo, hi))
            self._drop_held(con, held)
            return
        for table in held.tables:
            table.rows -= _changed(con, f"DELETE FROM {table.name} WHERE _w < {lo}")
        for table in [table for table in held.tables if not table.rows]:
            _drop_listed(con, held, table)
        held.lo = lo


def _aggregate_first(con: duckdb.DuckDBPyConnection, held: _Held, in_range: str) -> bool:
    """Whether the new rows are at least AGGREGATE_FIRST_SHARE of those held in range (the
    rows held in all, an upper bound, and FEW_ROWS spare most commits the count)."""
    staged, limit = held.staged_rows, AGGREGATE_FIRST_SHARE
    if not in_range or staged >= limit * sum(table.rows for table in held.tables):
        return True
    if staged < FEW_ROWS:
        return False
    return staged >= limit * con.execute(f"SELECT count(*) FROM ({in_range})").fetchall()[0][0]


def _merge_smallest_pair(con: duckdb.DuckDBPyConnection, held: _Held) -> None:
    """Merge the two neighbouring tables with the fewest rows (neighbours: of similar
    ages, so that old windows still leave whole tables)."""
    _, n = min((a.rows + b.rows, n)
               for n, (a, b) in enumerate(zip(held.tables, held.tables[1:], strict=False)))
    pair = held.tables[n:n + 2]
    merged = _Table(held.new_table(), pair[0].rows + pair[1].rows)
    held.tables.insert(n + 2, merged)  # (listed first: a failure drops every table listed)
    con.execute(f"CREATE TEMP TABLE {merged.name} AS {held.rows(tables=pair)}")
    for table in pair:
        _drop_listed(con, held, table)


def _drop_listed(con: duckdb.DuckDBPyConnection, held: _Held, table: _Table) -> None:
    """Drop a held table, then stop listing it (a failed DROP leaves it listed, so that
    dropping everything held after the failure drops it too)."""
    con.execute(f"DROP TABLE {table.name}")
    held.tables.remove(table)


def _changed(con: duckdb.DuckDBPyConnection, statement: str) -> int:
    """Run a CREATE TABLE AS or a DELETE; the rows it wrote or removed."""
    return int(con.execute(statement).fetchall()[0][0])


def _quietly(con: duckdb.DuckDBPyConnection, statement: str) -> None:
    """A DROP that must not fail what called it (after a commit): logged instead."""
    try:
        con.execute(statement)
    except duckdb.Error as exc:
        log.warning("%s failed: %s", statement, str(exc).splitlines()[0])


def _compiles(con: duckdb.DuckDBPyConnection, sql: WindowedRule, partials: Partials) -> bool:
    parts = f"({sql.partial_rows('flows', partials)})"
    try:
        for aggregate_first in (False, True):
            con.execute("EXPLAIN " + sql.check_parts(parts, parts, partials, aggregate_first)
                        ).fetchall()
    except duckdb.Error:
        return False
    return True
