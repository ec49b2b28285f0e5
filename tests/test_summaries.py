"""The traffic summary written at commit time (core/store/summaries.py): it equals the same
aggregation over the raw flows after commits, a replaced object, compaction and retention
(tests/test_crash.py checks it after a kill -9, tests/test_publication.py what viewers load,
tests/test_parity.py the summary of a store written before summaries)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

from core.flowlog_parser import parse_text
from core.layouts import Kind
from core.objects import ObjectRef, ObjectResult, Status
from core.store import Store
from core.store.segments import COMPACT_AT
from tests import scenarios
from tests.conftest import assert_summary_is_the_flows


def flows(name: str, lines: list[str]) -> ObjectResult:
    table = parse_text(scenarios.text(lines)).table
    return ObjectResult(ObjectRef("b", name, "etag", 1, Kind.TEXT), Status.DONE, flows=table)


def bytes_per_minute(lines: list[str]) -> dict[int, int]:
    """Computed from the records' text, not by vpcwatch: start is field 11, bytes field 10."""
    totals: Counter[int] = Counter()
    for line in lines:
        fields = line.split()
        totals[int(fields[10]) // 60 * 60] += int(fields[9]) if fields[9] != "-" else 0
    return dict(totals)


def summary_per_minute(store: Store) -> dict[int, int]:
    return dict(store.con.execute(
        "SELECT minute, sum(bytes) FROM traffic_minutes GROUP BY 1").fetchall())


def test_the_summary_follows_commits_replacement_compaction_and_retention(
        tmp_path: Path) -> None:
    lines = scenarios.benign(3_000) + [
        line for scenario in scenarios.detections() for line in scenario.lines]
    lines.sort(key=lambda text: int(text.split()[10]))
    parts = [lines[n::COMPACT_AT + 1] for n in range(COMPACT_AT + 1)]
    store = Store(tmp_path)
    try:
        for n, part in enumerate(parts):  # one small segment each: compaction merges them
            store.commit([flows(f"part-{n}", part)])
        assert summary_per_minute(store) == bytes_per_minute(lines)
        assert_summary_is_the_flows(store.con)

        changed = flows("part-0", parts[0][::2])  # read again with another ETag
        changed.replaces = True
        store.commit([changed])
        kept = [line for part in [parts[0][::2], *parts[1:]] for line in part]
        assert summary_per_minute(store) == bytes_per_minute(kept)
        assert_summary_is_the_flows(store.con)

        assert store.compact() >= COMPACT_AT
        assert store.con.execute("SELECT count(DISTINCT segment) FROM traffic_minutes"
                                 ).fetchall() == store.con.execute(
                                     "SELECT count(*) FROM segments").fetchall()
        assert_summary_is_the_flows(store.con)

        # retention unlists the segments whose newest flow is older than the cutoff
        newest_ends = sorted(end for (end,) in store.con.execute(
            "SELECT max_end FROM segments").fetchall())
        later = newest_ends[-1] + 7200
        store.commit([flows("later", [scenarios.line(*scenarios.APP, "10.0.0.2", 40000, 53,
                                                     17, 1, 80, later)])])
        store.prune(0, date.today(), now=newest_ends[-1] + 1)
        assert store.con.execute("SELECT count(*) FROM segments").fetchall() == [(1,)]
        assert summary_per_minute(store) == {later // 60 * 60: 80}
        assert_summary_is_the_flows(store.con)
    finally:
        store.close()
