"""A windowed rule's SQL: which windows new records touch, whether one fires, and its alerts.

An alert's key is (rule, group key, bucket), where the bucket is the rule's ``suppress``
span (or its window) in record time. Each rule recomputes the buckets the new records fall
in from everything stored, new records included (see docs/rules.md). Three statements, from
cheap to costly, so that a commit pays for the last one only when something happened:
``screen_condition`` (does any new record match?), ``check`` (does a touched window fire?) and
``select`` (the alert rows).
"""

from __future__ import annotations

import json

from core.rules.model import Rule
from core.rules.partials import Partials
from core.rules.sqlparts import (
    CONTEXT,
    MAX_OBJECTS,
    SHAPES,
    as_bigint,
    derived,
    literal,
    single,
)
from core.rules.titles import title_sql

# Passed as the stored relation: add the new records to the stored alerts (additive rules).
ADD_TO_STORED_ALERTS = "<stored alerts>"


def _add(new: str, old: str) -> str:
    """A sum carried over: NULL only when both sides are."""
    return (f"CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} "
            f"ELSE {new} + {old} END")


def _same(new: str, old: str) -> str:
    """A value every record agrees on, carried over (NULL when they disagree, as in _single)."""
    return f"CASE WHEN a.id IS NULL THEN {new} WHEN {new} = {old} THEN {new} END"


class WindowedRule:
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
        self._key_columns = "".join(f", ({expr}) AS _g{i}"
                                    for i, (_, expr) in enumerate(self.keys))
        self._keys_present = "".join(f" AND {g} IS NOT NULL" for g in self.g)

    def _rows(self, relation: str, condition: str = "") -> str:
        """``relation`` with the derived fields and group keys, optionally filtered."""
        where = f" WHERE {condition}" if condition else ""
        return f"(SELECT *, {derived(self.shape)}{self._key_columns} FROM {relation}{where})"

    def _keyed(self, relation: str) -> str:
        """``relation`` with the time (``_t``) and the group keys only: cheaper to plan
        than ``_rows``, for what needs no more."""
        return f"(SELECT *, {self.shape.time} AS _t{self._key_columns} FROM {relation})"

    def screen_condition(self) -> str:
        """Whether a record (with its time as ``_t``) is one this rule's windows take: when
        no new record is, the commit cannot change any of its alerts."""
        not_null = "".join(f" AND ({expr}) IS NOT NULL" for _, expr in self.keys)
        return f"({self.rule.where}) AND _t IS NOT NULL{not_null}"

    @property
    def needs_check(self) -> bool:
        """Whether a touched window may raise nothing (a threshold or a baseline): then
        ``check`` runs first, and ``select`` only when it finds a firing window."""
        return bool(self.rule.baseline) or self.rule.having.strip().lower() != "true"

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
        if rule.baseline:
            w = rule.window or 1
            return self._with_later(f"SELECT DISTINCT {groups}_t // {w} * {w} AS _w FROM "
                                    f"{self._keyed(new)} WHERE ({rule.where}) AND _t IS NOT "
                                    f"NULL{self._keys_present}")
        return (f"SELECT DISTINCT {groups}_t // {b} * {b} AS _b FROM {self._keyed(new)} "
                f"WHERE ({rule.where}) AND _t IS NOT NULL{self._keys_present}")

    def _with_later(self, windows: str) -> str:
        """The buckets of a baseline rule that records in ``windows`` (keys, ``_w``) touch:
        their own, and those of the ``baseline_windows`` windows after them, whose baseline
        they are part of (a record late for the history changes whether a later window
        fires: found by an adversarial test, a spike read before its history raised
        nothing)."""
        rule, b = self.rule, self.rule.bucket
        span = rule.baseline_windows * (rule.window or 1)
        groups = "".join(f"{g}, " for g in self.g)
        return (f"SELECT DISTINCT {groups}unnest(range(_w // {b} * {b}, (_w + {span}) // {b} "
                f"* {b} + {b}, {b})) AS _b FROM ({windows}) AS t")

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
        if rule.having.strip().lower() == "true":
            return f"""
            WITH touched AS ({self._touched(new)}),
            windows AS (SELECT {self._window_aggregates()}
                        FROM {self._taken(stored, new, first, last)} GROUP BY ALL)
            {self._merge_windows()}"""
        # Most keys fail `having` (a scan threshold, an egress volume): find the windows that
        # pass with the rule's own aggregates first, then describe only those.
        on = " AND ".join([f"src.{g} = firing.{g}" for g in self.g]
                          + [f"src._t // {w} * {w} = firing._w"])
        return f"""
        {self._firing(stored, new, first, last)},
        windows AS (
            SELECT {self._window_aggregates()}
            FROM {self._source(stored, first, last)} AS src SEMI JOIN firing ON {on}
            WHERE ({rule.where}) GROUP BY ALL
        )
        {self._merge_windows()}"""

    def _firing(self, stored: str, new: str, first: int, last: int) -> str:
        """``WITH touched, firing``: the touched windows that pass ``having``."""
        rule, w = self.rule, self.rule.window
        keys = ", ".join([*self.g, f"_t // {w} * {w}"])
        return f"""
        WITH touched AS ({self._touched(new)}),
        firing AS (
            SELECT {"".join(f"{g}, " for g in self.g)}_t // {w} * {w} AS _w
            FROM {self._taken(stored, new, first, last)}
            GROUP BY {keys} HAVING ({rule.having})
        )"""

    def _taken(self, stored: str, new: str, first: int, last: int) -> str:
        """The records of the touched buckets the rule takes (``src``, with a WHERE)."""
        # When nothing stored shares the new records' buckets, every bucket of the source is
        # touched: the join that picks the touched ones would only cost time.
        join = "" if stored == new else self._join_touched("src", "src._t")
        return (f"{self._source(stored, first, last)} AS src {join} "
                f"WHERE ({self.rule.where}){self._keys_present}")  # (as in `touched`)

    def check(self, stored: str, new: str, first: int, last: int) -> str:
        """One row when a window the new records touch fires (``having``, or a baseline's
        ``compare``), none otherwise: the same windows as ``select``, without describing
        them."""
        if self.rule.baseline:
            return f"{self._compared(stored, new, first, last, describe=False)} " \
                   "SELECT 1 FROM windows LIMIT 1"
        return f"{self._firing(stored, new, first, last)} SELECT 1 FROM firing LIMIT 1"

    def partial_rows(self, relation: str, partials: Partials, begin: int | None = None,
                     end: int | None = None) -> str:
        """The records of ``relation`` this rule takes (with a time in [begin, end) when
        given) as partial rows: per key, window and DISTINCT value (``window_state``)."""
        w = self.rule.window or 1
        time = f" AND _t >= {begin} AND _t < {end}" if begin is not None else ""
        columns = "".join(f", {column}" for column in (*partials.distinct, *partials.columns))
        return (f"SELECT {''.join(f'{g}, ' for g in self.g)}_t // {w} * {w} AS _w{columns} "
                f"FROM {self._keyed(relation)} WHERE ({self.rule.where}) AND _t IS NOT NULL"
                f"{self._keys_present}{time} GROUP BY ALL")

    def check_parts(self, parts: str, new_parts: str, partials: Partials,
                    aggregate_first: bool = False, unique: bool = False) -> str:
        """``check`` over partial rows: ``parts`` those of every record, committed or new,
        of the windows in [first - the baseline's span, last); ``new_parts`` those of the
        new records (whose windows are the touched ones). ``aggregate_first``: find the
        firing windows among all of ``parts``, then keep the touched ones, instead of
        keeping the rows of touched windows and then aggregating them: the same answer,
        cheaper when the new records touch most of the keys (a large commit), where the
        join would keep nearly every row. ``unique``: ``parts`` are the partial rows of one
        query (one row per key, window and DISTINCT value)."""
        rule, groups, b = self.rule, "".join(f"{g}, " for g in self.g), self.rule.bucket
        touched = f"touched AS (SELECT DISTINCT {groups}_w // {b} * {b} AS _b FROM {new_parts})"
        if rule.baseline:
            later = self._with_later(f"SELECT DISTINCT {groups}_w FROM {new_parts}")
            touched = f"touched AS ({later})"
            per_window = (f"SELECT {groups}_w, {partials.merged} AS value FROM {parts} AS src "
                          f"{self._touched_keys()} GROUP BY ALL")
            return f"WITH {touched}, {self._compare(per_window)} SELECT 1 FROM windows LIMIT 1"
        if aggregate_first:
            rows, merged = partials.distinct_first(parts, f"{groups}_w, ", unique)
            return f"""
            WITH {touched}, firing AS (SELECT {groups}_w FROM {rows} AS src
                                      GROUP BY {groups}_w HAVING ({merged}))
            SELECT 1 FROM firing {self._join_touched("firing", "firing._w")} LIMIT 1"""
        return f"""
        WITH {touched}
        SELECT 1 FROM {parts} AS src {self._join_touched("src", "src._w")}
        GROUP BY {groups}_w HAVING ({partials.merged}) LIMIT 1"""

    def _baseline(self, stored: str, new: str, first: int, last: int) -> str:
        return f"{self._compared(stored, new, first, last, describe=True)} {self._merge_windows()}"

    def _compared(self, stored: str, new: str, first: int, last: int, describe: bool) -> str:
        """``WITH touched, per_window, compared, windows``: each touched window's ``value``,
        its ``baseline`` and ``history``, kept where ``compare`` holds; ``describe`` adds the
        aggregates an alert shows (the check needs only the value)."""
        rule, w = self.rule, self.rule.window or 1
        span = rule.baseline_windows * w
        aggregates = (self._window_aggregates() if describe else
                      "".join(f"{g}, " for g in self.g) + f"_t // {w} * {w} AS _w")
        per_window = (f"SELECT {aggregates}, {rule.baseline} AS value "
                      f"FROM {self._source(stored, first - span, last)} AS src "
                      f"{self._touched_keys()} WHERE ({rule.where}) GROUP BY ALL")
        return f"WITH touched AS ({self._touched(new)}), {self._compare(per_window)}"

    def _touched_keys(self) -> str:
        """A join keeping the rows of ``src`` whose group key the new records touch."""
        if not self.g:
            return ""
        return (f"SEMI JOIN (SELECT DISTINCT {', '.join(self.g)} FROM touched) AS g ON "
                + " AND ".join(f"src.{g} = g.{g}" for g in self.g))

    def _compare(self, per_window: str) -> str:
        """``per_window, compared, windows`` (for a ``WITH``): the touched windows of
        ``per_window`` (keys, ``_w``, ``value``) whose value passes ``compare`` against
        the baseline of the windows before them."""
        rule, w = self.rule, self.rule.window or 1
        span = rule.baseline_windows * w
        partition = f"PARTITION BY {', '.join(self.g)} " if self.g else ""
        frame = f"OVER ({partition}ORDER BY _w RANGE BETWEEN {span} PRECEDING AND {w} PRECEDING)"
        return f"""
        per_window AS ({per_window}),
        compared AS (
            SELECT *, coalesce(sum(value) {frame}, 0) / {rule.baseline_windows} AS baseline,
                   count(value) {frame} AS history
            FROM per_window
        ),
        windows AS (
            SELECT * FROM compared {self._join_touched("compared", "compared._w")}
            WHERE ({rule.compare})
        )"""

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
               {as_bigint("_sb")} AS bytes, {as_bigint("_sp")} AS packets,
               _group::VARCHAR AS group_key,
               _src AS srcaddr, _dst AS dstaddr, _port::INTEGER AS dstport,
               _proto::INTEGER AS protocol, {literal(json.dumps(list(rule.mitre)))} AS mitre,
               {rule.wazuh_id} AS wazuh_id, to_json(_objects[1:{MAX_OBJECTS}])::VARCHAR AS objects,
               _object_count::BIGINT AS object_count{"".join(f", _{c} AS {c}" for c in CONTEXT)},
               NULL::VARCHAR AS details
        FROM ({self.alerts(stored, new, first, last)})"""
