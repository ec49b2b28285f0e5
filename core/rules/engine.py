"""Rule evaluation: SQL over the store, recomputed for the windows new records touch.

An alert's key is (rule, group key, bucket), where the bucket is the rule's ``suppress``
span (or its window) in record time. For every commit, each rule finds the buckets the new
records fall in and recomputes those buckets from everything stored, new records included.
So an alert is a pure function of the stored records: a window spanning several objects, or
an object that arrives late, updates the same alert; a crash and a re-read give the same
alerts (exactly once, with no per-rule state to lose).

Rules are evaluated before the commit's transaction begins (the store has one writer, so
nothing changes meanwhile); a rule that fails at run time is reported and skipped, and
cannot abort the commit. The transaction then writes the alerts that changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from core.rules import functions
from core.rules.model import Rule
from core.rules.per_event import PerEventRules
from core.rules.sqlparts import CONTEXT, MAX_OBJECTS, SHAPES, derived, literal, single
from core.rules.titles import title_sql

log = logging.getLogger(__name__)

# Passed as the stored relation: add the new records to the stored alerts (additive rules).
ADD_TO_STORED_ALERTS = "<stored alerts>"


def _add(new: str, old: str) -> str:
    """A sum carried over: NULL only when both sides are."""
    return (f"CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} "
            f"ELSE {new} + {old} END")


def _same(new: str, old: str) -> str:
    """A value every record agrees on, carried over (NULL when they disagree, as in _single)."""
    return f"CASE WHEN a.id IS NULL THEN {new} WHEN {new} = {old} THEN {new} END"


class RuleSql:
    """The SQL of one rule, for given relations of stored and new records.

    Group keys are computed once per record as ``_g0``, ``_g1``… next to the fields every
    alert has (``_t`` the record time, ``_vbytes``…); the rule's own SQL sees the record's
    columns unchanged.
    """

    def __init__(self, rule: Rule):
        self.rule = rule
        self.shape = SHAPES[rule.source]
        self.title = title_sql(rule)
        self.keys = rule.group_keys()
        self.g = [f"_g{i}" for i in range(len(self.keys))]

    def _rows(self, relation: str, condition: str = "") -> str:
        """``relation`` with the derived fields and group keys, optionally filtered."""
        keys = "".join(f", ({expr}) AS _g{i}" for i, (_, expr) in enumerate(self.keys))
        where = f" WHERE {condition}" if condition else ""
        return f"(SELECT *, {derived(self.shape)}{keys} FROM {relation}{where})"

    def bounds(self, new: str) -> str:
        """The first and last record time of the new records (not only those the rule
        matches: evaluating its condition twice costs more than reading a little more)."""
        return f"SELECT min({self.shape.time}), max({self.shape.time}) FROM {new}"

    @property
    def additive(self) -> bool:
        """Whether a stored alert plus the new records' alert gives the recomputed alert:
        no threshold, no baseline, one window per alert; only counts, sums and min/max.
        Such rules keep the first and last object of an alert and count them, instead of
        listing up to 20: with one alert per few flows, listing cost more than the rest."""
        rule = self.rule
        return (rule.windowed and not rule.baseline and rule.bucket == rule.window
                and rule.having.strip().lower() == "true")

    def alerts(self, stored: str, new: str, first: int, last: int) -> str:
        if self.rule.baseline:
            return self._baseline(stored, new, first, last)
        if stored == ADD_TO_STORED_ALERTS:
            return self._added(new, first, last)
        return self._windowed(stored, new, first, last)

    def _added(self, new: str, first: int, last: int) -> str:
        """The new records' alerts merged into the stored ones: the same result as a
        recompute for an additive rule, without reading the stored records."""
        carried = "".join(f"m.{g}, " for g in self.g)
        objects = "(m._objects || coalesce(from_json(a.objects, '[\"VARCHAR\"]'), []))"
        return f"""
        SELECT {carried}m._b, m._key, m._group,
               m._n + coalesce(a.count, 0) AS _n,
               {_add('m._sb', 'a.bytes')} AS _sb, {_add('m._sp', 'a.packets')} AS _sp,
               least(m._first, a.first_seen) AS _first, greatest(m._last, a.last_seen) AS _last,
               {_same('m._src', 'a.srcaddr')} AS _src, {_same('m._dst', 'a.dstaddr')} AS _dst,
               {_same('m._port', 'a.dstport')} AS _port,
               {_same('m._proto', 'a.protocol')} AS _proto,
               {", ".join(f"{_same(f'm._{c}', f'a.{c}')} AS _{c}" for c in CONTEXT)},
               list_sort(list_distinct([list_min({objects}), list_max({objects})])) AS _objects,
               m._object_count + coalesce(a.object_count, 0) AS _object_count
        FROM ({self._windowed(new, new, first, last)}) AS m
        LEFT JOIN alerts AS a ON a.id = md5(m._key)"""

    # -- the two kinds of windowed rule ------------------------------------------------

    def _touched(self, new: str) -> str:
        rule, b = self.rule, self.rule.bucket
        groups = "".join(f"{g}, " for g in self.g)
        not_null = "".join(f" AND {g} IS NOT NULL" for g in self.g)
        return (f"SELECT DISTINCT {groups}_t // {b} * {b} AS _b FROM {self._rows(new)} "
                f"WHERE ({rule.where}) AND _t IS NOT NULL{not_null}")

    def _source(self, stored: str, first: int, last: int) -> str:
        time = self.shape.time
        return self._rows(stored, f"{time} >= {first} AND {time} < {last}")

    def _window_aggregates(self) -> str:
        w = self.rule.window
        groups = "".join(f"{g}, " for g in self.g)
        return (f"{groups}_t // {w} * {w} AS _w, count(*) AS _n, sum(_vbytes) AS _sb, "
                f"sum(_vpackets) AS _sp, min(_t) AS _first, max(_tend) AS _last, "
                f"{single('_vsrc', '_src')}, {single('_vdst', '_dst')}, "
                f"{single('_vport', '_port')}, {single('_vproto', '_proto')}, "
                + "".join(f"{single(f'_v{c}', f'_{c}')}, " for c in CONTEXT)
                + self._object_aggregates())

    def _object_aggregates(self) -> str:
        if self.additive:
            return ("list_distinct([min(object_key), max(object_key)]) AS _objects, "
                    "count(DISTINCT object_key) AS _ocount")
        return "list(DISTINCT object_key) AS _objects, NULL::BIGINT AS _ocount"

    def _join_touched(self, left: str, time: str) -> str:
        b = self.rule.bucket
        on = [f"{left}.{g} = touched.{g}" for g in self.g]
        on.append(f"{time} // {b} * {b} = touched._b")
        return f"SEMI JOIN touched ON {' AND '.join(on)}"

    def _windowed(self, stored: str, new: str, first: int, last: int) -> str:
        rule, w = self.rule, self.rule.window
        # When nothing stored shares the new records' buckets, every bucket of the source is
        # touched: the join that picks the touched ones would only cost time.
        join = "" if stored == new else self._join_touched("src", "src._t")
        not_null = "".join(f" AND {g} IS NOT NULL" for g in self.g)  # as in `touched`
        source = f"{self._source(stored, first, last)} AS src {join} WHERE ({rule.where}){not_null}"
        if rule.having.strip().lower() == "true":
            return f"""
            WITH touched AS ({self._touched(new)}),
            windows AS (SELECT {self._window_aggregates()} FROM {source} GROUP BY ALL)
            {self._merge_windows()}"""
        # Most keys fail `having` (a scan threshold, an egress volume): find the windows that
        # pass with the rule's own aggregates first, then describe only those.
        keys = ", ".join([*self.g, f"_t // {w} * {w}"])
        on = " AND ".join([f"src.{g} = firing.{g}" for g in self.g]
                          + [f"src._t // {w} * {w} = firing._w"])
        return f"""
        WITH touched AS ({self._touched(new)}),
        firing AS (
            SELECT {"".join(f"{g}, " for g in self.g)}_t // {w} * {w} AS _w FROM {source}
            GROUP BY {keys} HAVING ({rule.having})
        ),
        windows AS (
            SELECT {self._window_aggregates()}
            FROM {self._source(stored, first, last)} AS src SEMI JOIN firing ON {on}
            WHERE ({rule.where}) GROUP BY ALL
        )
        {self._merge_windows()}"""

    def _baseline(self, stored: str, new: str, first: int, last: int) -> str:
        rule, w = self.rule, self.rule.window or 1
        span = rule.baseline_windows * w
        partition = f"PARTITION BY {', '.join(self.g)} " if self.g else ""
        frame = f"OVER ({partition}ORDER BY _w RANGE BETWEEN {span} PRECEDING AND {w} PRECEDING)"
        group_filter = (f"SEMI JOIN (SELECT DISTINCT {', '.join(self.g)} FROM touched) AS g ON "
                        + " AND ".join(f"src.{g} = g.{g}" for g in self.g)
                        if self.g else "")
        return f"""
        WITH touched AS ({self._touched(new)}),
        per_window AS (
            SELECT {self._window_aggregates()}, {rule.baseline} AS value
            FROM {self._source(stored, first - span, last)} AS src {group_filter}
            WHERE ({rule.where})
            GROUP BY ALL
        ),
        compared AS (
            SELECT *, coalesce(sum(value) {frame}, 0) / {rule.baseline_windows} AS baseline,
                   count(value) {frame} AS history
            FROM per_window
        ),
        windows AS (
            SELECT * FROM compared {self._join_touched("compared", "compared._w")}
            WHERE ({rule.compare})
        )
        {self._merge_windows()}"""

    def _merge_windows(self) -> str:
        """Firing windows of one key and bucket become one alert."""
        rule, b = self.rule, self.rule.bucket
        groups = "".join(f"{g}, " for g in self.g)
        key_parts = ", ".join([literal(rule.id)]
                              + [f"coalesce({g}::VARCHAR, '')" for g in self.g]
                              + ["_b::VARCHAR"])
        group_json = ("json_object(" + ", ".join(
            f"{literal(name)}, _g{i}" for i, (name, _) in enumerate(self.keys)) + ")"
                      ) if self.keys else "'{}'"
        return f"""
        , merged AS (
            SELECT {groups}_w // {b} * {b} AS _b, sum(_n) AS _n, sum(_sb) AS _sb,
                   sum(_sp) AS _sp, min(_first) AS _first, max(_last) AS _last,
                   {single('_src', '_src')}, {single('_dst', '_dst')},
                   {single('_port', '_port')}, {single('_proto', '_proto')},
                   {"".join(f"{single(f'_{c}', f'_{c}')}, " for c in CONTEXT)}
                   list_sort(list_distinct(flatten(list(_objects)))) AS _objects,
                   sum(_ocount) AS _ocount
            FROM windows GROUP BY ALL
        )
        SELECT *, coalesce(_ocount, len(_objects)) AS _object_count,
               concat_ws('|', {key_parts}) AS _key,
               {group_json} AS _group
        FROM merged"""

    def select(self, stored: str, new: str, first: int, last: int) -> str:
        """Alert rows, in the alerts table's columns."""
        rule = self.rule
        return f"""
        SELECT md5(_key) AS id, {literal(rule.id)} AS rule_id, {rule.level} AS level,
               {self.title} AS title, {literal(rule.source)} AS source,
               _b AS window_start, _first AS first_seen, _last AS last_seen, _n::BIGINT AS count,
               _sb::BIGINT AS bytes, _sp::BIGINT AS packets, _group::VARCHAR AS group_key,
               _src AS srcaddr, _dst AS dstaddr, _port::INTEGER AS dstport,
               _proto::INTEGER AS protocol, {literal(json.dumps(list(rule.mitre)))} AS mitre,
               {rule.wazuh_id} AS wazuh_id, to_json(_objects[1:{MAX_OBJECTS}])::VARCHAR AS objects,
               _object_count::BIGINT AS object_count{"".join(f", _{c} AS {c}" for c in CONTEXT)},
               NULL::VARCHAR AS details
        FROM ({self.alerts(stored, new, first, last)})"""


class RuleEngine:
    """The loaded rules, ready to run over a store connection: windowed rules one query each,
    per-event rules one query per source for all of them (see ``per_event``)."""

    def __init__(self, rules: list[Rule], blocklist: list[Path] | None = None):
        self.blocklist = blocklist or []
        # read now: a bad blocklist stops vpcwatch before it touches the state directory
        self.blocklist_entries = functions.read_blocklist(self.blocklist)
        self.sql: list[RuleSql] = []  # windowed rules
        self.per_event: list[Rule] = []
        self.errors: list[str] = []
        for rule in rules:
            try:
                sql = RuleSql(rule)  # (checks the title of every kind of rule)
            except ValueError as exc:
                self.errors.append(f"{rule.file}: rule {rule.id!r}: {exc}")
                continue
            if rule.windowed:
                self.sql.append(sql)
            else:
                self.per_event.append(rule)

    @property
    def rules(self) -> list[Rule]:
        return [sql.rule for sql in self.sql] + self.per_event

    def install(self, con: duckdb.DuckDBPyConnection) -> None:
        functions.install(con, self.blocklist_entries)

    def check(self, con: duckdb.DuckDBPyConnection) -> None:
        """Compile every rule against empty relations; drop (and report) those that fail."""
        relations = {"vpcflow": ("flows", "flows"), "cloudtrail": ("cloudtrail", "cloudtrail")}

        def compiles(rule: Rule, *queries: str) -> bool:
            try:
                for query in queries:
                    con.execute("EXPLAIN " + query)
            except duckdb.Error as exc:
                message = str(exc).splitlines()[0]
                self.errors.append(f"{rule.file}: rule {rule.id!r}: {message}")
                return False
            return True

        self.sql = [sql for sql in self.sql if compiles(
            sql.rule, sql.bounds(relations[sql.rule.source][1]),
            sql.select(*relations[sql.rule.source], 0, 1),
            *([sql.select(ADD_TO_STORED_ALERTS, relations[sql.rule.source][1], 0, 1)]
              if sql.additive else []))]
        self.per_event = [rule for rule in self.per_event if compiles(
            rule, PerEventRules([rule]).select(relations[rule.source][1]))]

    def evaluate(self, con: duckdb.DuckDBPyConnection, relations: dict[str, tuple[str, str]],
                 stored_between: Callable[[str, int, int], bool] | None = None,
                 additive: bool = True) -> tuple[pa.Table | None, list[str]]:
        """Alert rows for the new records. ``relations`` maps a source to its (stored, new)
        relation names; a source without new records is absent. ``stored_between(source,
        first, last)`` says whether earlier records may fall in that time range (if not, the
        rules read the new records only). ``additive`` False: every rule recomputes (when
        stored records were replaced, adding to stored alerts would count them twice)."""
        tables: list[pa.Table] = []
        errors: list[str] = []
        for source, (_, new) in relations.items():
            rules = [rule for rule in self.per_event if rule.source == source]
            if rules and not self._run(con, PerEventRules(rules).select(new), rules, tables):
                for rule in rules:  # one of them failed: each alone, to keep the others
                    self._run(con, PerEventRules([rule]).select(new), [rule], tables, errors)
        bounds: dict[str, tuple[int | None, int | None]] = {}
        for sql in self.sql:
            if sql.rule.source not in relations:
                continue
            stored, new = relations[sql.rule.source]
            try:
                if sql.rule.source not in bounds:
                    bounds[sql.rule.source] = con.execute(sql.bounds(new)).fetchall()[0]
            except duckdb.Error as exc:
                errors.append(_failed([sql.rule], exc))
                continue
            low, high = bounds[sql.rule.source]
            if low is None or high is None:
                continue
            b = sql.rule.bucket
            first, last = low // b * b, high // b * b
            begin = first - (sql.rule.baseline_windows * (sql.rule.window or 0)
                             if sql.rule.baseline else 0)
            end = last + b
            if stored_between is not None and not stored_between(sql.rule.source, begin, end):
                stored = new
            elif additive and sql.additive:
                stored = ADD_TO_STORED_ALERTS
            self._run(con, sql.select(stored, new, first, end), [sql.rule], tables, errors)
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return None, errors
        return pa.concat_tables(tables, promote_options="permissive"), errors

    @staticmethod
    def _run(con: duckdb.DuckDBPyConnection, query: str, rules: list[Rule],
             tables: list[pa.Table], errors: list[str] | None = None) -> bool:
        """Run one query of alert rows. A failure is reported in ``errors`` (naming its
        rules), not raised; without ``errors`` the caller handles it. Returns success."""
        try:
            tables.append(con.sql(query).to_arrow_table())
        except duckdb.Error as exc:
            if errors is not None:
                message = _failed(rules, exc)
                log.error("%s", message)
                errors.append(message)
            return False
        return True


def _failed(rules: list[Rule], exc: duckdb.Error) -> str:
    names = ", ".join(repr(rule.id) for rule in rules)
    return f"rule{'s' if len(rules) > 1 else ''} {names} failed: {str(exc).splitlines()[0]}"
