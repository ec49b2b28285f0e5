"""Per-event rules (CloudTrail rules without a window): all of them in one query per commit.

Each such rule raises one alert per event it matches, keyed by (rule, event id), so its
alerts depend on the new events only. Planning a query costs DuckDB 5-20 ms whatever the
rows (more with the address macros), so the rules are not one query each: the new events are
read once, each rule's ``where`` is one arm of a ``CASE`` over a cross join with the rules'
numbers, and the rule's title, fields and constants are ``CASE`` arms too.
"""

from __future__ import annotations

import json

from core.rules.model import Rule
from core.rules.sqlparts import CONTEXT, SHAPES, derived, literal
from core.rules.titles import title_sql


class PerEventRules:
    """The SQL of a set of per-event rules of one source."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.titles = [title_sql(rule, f"_f{i}_") for i, rule in enumerate(rules)]

    def _case(self, values: list[str]) -> str:
        arms = " ".join(f"WHEN {i} THEN {value}" for i, value in enumerate(values))
        return f"CASE _rule {arms} END"

    def _fields(self) -> str:
        """Each rule's fields, computed for the events it matched only."""
        return "".join(f", CASE WHEN _rule = {i} THEN ({expr}) END AS _f{i}_{name}"
                       for i, rule in enumerate(self.rules) for name, expr in rule.fields)

    def _details(self) -> str:
        values = []
        for i, rule in enumerate(self.rules):
            pairs = ", ".join(f"{literal(name)}, _f{i}_{name}" for name, _ in rule.fields)
            values.append(f"json_object({pairs})::VARCHAR" if pairs else "NULL::VARCHAR")
        return self._case(values)

    def select(self, new: str) -> str:
        """Alert rows, in the alerts table's columns, for the events of relation ``new``."""
        if not self.rules:
            raise ValueError("no rules")
        shape = SHAPES[self.rules[0].source]
        matches = self._case([f"({rule.where})" for rule in self.rules])
        ids = self._case([literal(rule.id) for rule in self.rules])
        context = "".join(f", _v{c} AS {c}" for c in CONTEXT)
        return f"""
        WITH events AS (
            SELECT *, {derived(shape)}, _vsrc AS _src, _vdst AS _dst, _vport AS _port,
                   _vproto AS _proto, 1 AS _n, _vbytes AS _sb, _vpackets AS _sp, _t AS _b,
                   _t AS _first, _tend AS _last
            FROM {new}
        ),
        matched AS (
            SELECT *{self._fields()}
            FROM events, range({len(self.rules)}) AS r(_rule) WHERE {matches}
        )
        SELECT md5({ids} || '|' || event_id) AS id, {ids} AS rule_id,
               {self._case([str(r.level) for r in self.rules])}::INTEGER AS level,
               {self._case(self.titles)} AS title, {literal(self.rules[0].source)} AS source,
               _b AS window_start, _first AS first_seen, _last AS last_seen,
               1::BIGINT AS count, _sb::BIGINT AS bytes, _sp::BIGINT AS packets,
               json_object('event_id', event_id)::VARCHAR AS group_key,
               _src AS srcaddr, _dst AS dstaddr, _port::INTEGER AS dstport,
               _proto::INTEGER AS protocol,
               {self._case([literal(json.dumps(list(r.mitre))) for r in self.rules])} AS mitre,
               {self._case([str(r.wazuh_id) for r in self.rules])}::INTEGER AS wazuh_id,
               to_json([object_key])::VARCHAR AS objects, 1::BIGINT AS object_count{context},
               {self._details()} AS details
        FROM matched"""
