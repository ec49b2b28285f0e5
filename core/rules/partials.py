"""A rule's aggregate expression (``having``, ``baseline``) split into partial aggregates that
add up: computed per commit over its new records, kept, and merged at check time.

``count(DISTINCT dstport) >= 20 AND 2 * count(*) FILTER (WHERE action = 'REJECT') >= count(*)``
becomes partial rows grouped by the rule's keys, its window and ``dstport`` (``_d0``), with
``count_star() FILTER (...) AS _p0`` and ``count_star() AS _p1``; over those rows, the
expression reads ``count(DISTINCT _d0) >= 20 AND 2 * sum(_p0) >= sum(_p1)``. Counts and sums
add, min and max take min and max, a DISTINCT aggregate groups the partial rows by its
argument. Anything else (``avg``, a median, a column outside an aggregate, a subquery, a
window function) makes the expression not mergeable: the rule then reads its stored records
as before.

The expression is parsed by DuckDB itself (``json_serialize_sql``) and written back from the
changed tree (``json_deserialize_sql``), so the result is the same SQL DuckDB would run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import duckdb

# partial aggregate -> how partial values merge
_MERGE = {"count_star": "sum", "count": "sum", "sum": "sum", "min": "min", "max": "max"}
# a DISTINCT aggregate -> how it reads the distinct values kept as a grouping column
_MERGE_DISTINCT = {"count": "count", "sum": "sum", "min": "min", "max": "max"}


@dataclass(frozen=True)
class Partials:
    """``columns``: partial aggregates over records (``expr AS _pN``); ``distinct``: values
    the partial rows are also grouped by (``expr AS _dN``); ``merged``: the expression over
    partial rows; ``merges``: how each partial column merges (``sum``, ``min``, ``max``);
    ``plain``: ``merged`` with its DISTINCT aggregates plain (see ``distinct_first``)."""

    columns: tuple[str, ...]
    distinct: tuple[str, ...]
    merged: str
    merges: tuple[str, ...]
    plain: str

    def distinct_first(self, parts: str, groups: str, unique: bool = False
                       ) -> tuple[str, str]:
        """(relation, expression) for aggregating ``parts`` per ``groups`` (the keys and
        ``_w``, each followed by a comma) when it has one DISTINCT value: the partial rows
        merged per DISTINCT value first, then plain aggregates over them, instead of
        DuckDB's DISTINCT aggregate beside the others (the sweep's check over 175,000
        partial rows: 34 against 21 ms). ``unique``: ``parts`` has one row per group and
        value already (the rows of one commit): no merge. Otherwise ``parts``, ``merged``."""
        if len(self.distinct) != 1:
            return parts, self.merged
        if unique:
            return parts, self.plain
        merged = "".join(f", {merge}(_p{n}) AS _p{n}" for n, merge in enumerate(self.merges))
        return f"(SELECT {groups}_d0{merged} FROM {parts} GROUP BY ALL)", self.plain


class _NotMergeable(Exception):
    pass


def split(expression: str) -> Partials | None:
    """``expression`` (SQL with aggregates over records) as partials, or None when some part
    of it does not merge."""
    tree = _parse(f"SELECT ({expression})")
    if tree is None:
        return None
    builder = _Builder()
    try:
        merged = builder.rewrite(tree)
    except _NotMergeable:
        return None
    # (a DISTINCT value appears once per group once the partial rows are merged per value:
    # NULL too, which count(x), sum(x), min(x) and max(x) skip as their DISTINCT forms do)
    plain = _Builder(plain_distinct=True).rewrite(tree)
    return Partials(tuple(f"{sql} AS _p{n}" for n, sql in enumerate(builder.partials)),
                    tuple(f"{sql} AS _d{n}" for n, sql in enumerate(builder.distinct)),
                    _text(merged), tuple(builder.merges), _text(plain))


class _Builder:
    def __init__(self, plain_distinct: bool = False) -> None:
        self.partials: list[str] = []
        self.merges: list[str] = []
        self.distinct: list[str] = []
        self.plain_distinct = plain_distinct  # count(_d0), not count(DISTINCT _d0)

    def rewrite(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("class")
        if kind in ("COLUMN_REF", "SUBQUERY", "WINDOW", "STAR", "LAMBDA"):
            raise _NotMergeable(kind)  # (a column outside an aggregate has no partial)
        if kind == "FUNCTION" and node.get("function_name") in _aggregates():
            return self._aggregate(node)
        return {key: self.rewrite(value) for key, value in node.items()}

    def _aggregate(self, node: dict[str, Any]) -> Any:
        name = node["function_name"]
        arguments = 0 if name == "count_star" else 1
        if (name not in _MERGE or len(node.get("arguments", [])) != arguments
                or node.get("order_bys", {}).get("orders") or _has_subquery(node)):
            raise _NotMergeable(name)  # (a subquery's table may change: not a partial)
        if node.get("distinct") and name in _MERGE_DISTINCT:
            value = _text(node["arguments"][0]["expression"])
            if node.get("filter") is not None:
                value = f"CASE WHEN {_text(node['filter'])} THEN {value} END"
            column = _column(self.distinct, value, "_d")
            distinct = "" if self.plain_distinct else "DISTINCT "
            return _node(f"{_MERGE_DISTINCT[name]}({distinct}{column})")
        partial = _text({**node, "distinct": False})
        if partial not in self.partials:
            self.merges.append(_MERGE[name])
        return _node(f"{_MERGE[name]}({_column(self.partials, partial, '_p')})")


def _has_subquery(node: Any) -> bool:
    if isinstance(node, list):
        return any(_has_subquery(item) for item in node)
    if isinstance(node, dict):
        return node.get("class") == "SUBQUERY" or any(_has_subquery(v) for v in node.values())
    return False


def _column(columns: list[str], sql: str, prefix: str) -> str:
    if sql not in columns:
        columns.append(sql)
    return f"{prefix}{columns.index(sql)}"


@cache
def _connection() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()  # (only the parser: no table is read)


@cache
def _aggregates() -> frozenset[str]:
    rows = _connection().execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() "
        "WHERE function_type = 'aggregate'").fetchall()
    return frozenset(row[0] for row in rows) | {"count_star"}


def _parse(select: str) -> Any:
    """The first select-list expression of ``select``, as DuckDB's JSON tree (None when
    it does not parse)."""
    text = _connection().execute("SELECT json_serialize_sql(?)", [select]).fetchone()
    tree = json.loads(text[0]) if text else {"error": True}
    if tree.get("error"):
        return None
    return tree["statements"][0]["node"]["select_list"][0]


def _node(sql: str) -> Any:
    tree = _parse(f"SELECT {sql}")
    assert tree is not None, sql
    return tree


def _text(node: Any) -> str:
    """SQL for an expression node: ``SELECT 1`` with the node as its select list, written
    back by DuckDB."""
    statement = json.loads(_template())
    statement["statements"][0]["node"]["select_list"] = [node]
    text = _connection().execute("SELECT json_deserialize_sql(?::JSON)",
                                 [json.dumps(statement)]).fetchone()
    assert text is not None
    return str(text[0]).removeprefix("SELECT ")


@cache
def _template() -> str:
    text = _connection().execute("SELECT json_serialize_sql('SELECT 1')").fetchone()
    assert text is not None
    return str(text[0])
