"""Helpers for the store's tests: parsed objects to commit, and counting what a store holds."""

from __future__ import annotations

from core.flowlog_parser import parse_text
from core.layouts import Kind
from core.objects import ObjectRef, ObjectResult, Status
from core.store import Store
from tests import flowgen, scenarios


def result(n: int, records: int, start: int = flowgen.BASE_TIME) -> ObjectResult:
    """A parsed object of ``records`` rows (the parser is tested elsewhere; here it only
    builds input for the store)."""
    table = parse_text(flowgen.flow_object(flowgen.V2, records, seed=n, start=start).text())
    return ObjectResult(ObjectRef("b", f"key-{n}", "etag", 1, Kind.TEXT), Status.DONE,
                        flows=table.table)


def count(store: Store, sql: str = "SELECT count(*) FROM flows") -> int:
    return store.con.execute(sql).fetchone()[0]


def flows(n: int, lines: list[str]) -> ObjectResult:
    """Object ``flows-n`` holding the flow-log ``lines`` (no header: the default format)."""
    table = parse_text(scenarios.text(lines)).table
    return ObjectResult(ObjectRef("b", f"flows-{n}", "etag", 1, Kind.TEXT), Status.DONE,
                        flows=table)
