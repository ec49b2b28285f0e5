"""Explain a peak (core/explain.py): shares, usual volumes and new peers against figures
computed here from the records' text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest

from core.explain import explain
from core.explorer import Explorer, Scope
from core.filters import parse_filter
from core.scan import scan
from core.store import open_store
from core.timeline import TimeRange
from tests.scenarios import ACCOUNT, line, text
from tests.test_hot_window import DAY, FIRST, PAIRS, three_days

EXFIL = ("eni-app1", "10.0.2.45", "203.0.113.250")
BURST = TimeRange(FIRST + 2 * DAY + 12 * 3600, FIRST + 2 * DAY + 12 * 3600 + 300)


def burst() -> list[str]:
    eni, local, remote = EXFIL
    return [line(eni, local, remote, 51515, 443, 6, 700_000, 900_000_000 + i,
                 BURST.start + 30 * i) for i in range(6)]


def pair_bytes(lines: list[str], window: TimeRange) -> Counter[tuple[str, str]]:
    totals: Counter[tuple[str, str]] = Counter()
    for record in lines:
        f = record.split()
        if window.start <= int(f[10]) < window.end:
            totals[(min(f[3], f[4]), max(f[3], f[4]))] += int(f[9])
    return totals


@pytest.mark.parametrize("hot_seconds", [DAY, None])  # the burst after / in the hot window
def test_the_exfiltration_explains_its_peak(tmp_path: Path, hot_seconds: float | None) -> None:
    lines = three_days() + burst()
    (tmp_path / "days.log").write_bytes(text(lines))
    with open_store(tmp_path / "state") as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
        explorer = Explorer(store, hot_seconds=hot_seconds)
        try:
            found = explain(explorer, Scope(), BURST)
        finally:
            explorer.close()
    here = pair_bytes(lines, BURST)
    total = sum(here.values())
    assert found.total == total
    top = found.pairs[0]
    exfil = (EXFIL[1], EXFIL[2])
    assert (top["address"], top["peer"]) == exfil and top["new"] is True
    assert top["share"] == here[exfil] / total >= 0.9
    assert top["usual"] == 0
    # the others: seen before, usually as much as on the two previous days' same window
    previous = [pair_bytes(lines, TimeRange(BURST.start - k * DAY, BURST.end - k * DAY))
                for k in (1, 2)]
    assert found.usual_basis == "the same window on the 2 previous day(s)"
    assert len(found.pairs) == 1 + len(PAIRS)
    for row in found.pairs[1:]:
        pair = (min(row["address"], row["peer"]), max(row["address"], row["peer"]))
        assert row["new"] is False
        assert row["bytes"] == here[pair] and row["share"] == here[pair] / total
        assert row["usual"] == sum(p[pair] for p in previous) / 2
    https = sum(b for pair, b in here.items() if {"203.0.113.250", "198.51.100.7"} & set(pair))
    assert found.ports[0] == (443, https)
    assert found.accounts == [(ACCOUNT, total)]


def test_a_filter_narrows_the_explanation(tmp_path: Path) -> None:
    lines = three_days() + burst()
    (tmp_path / "days.log").write_bytes(text(lines))
    with open_store(tmp_path / "state") as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
        explorer = Explorer(store)
        try:
            found = explain(explorer, Scope(parse_filter("port:5432")), BURST)
        finally:
            explorer.close()
    here = {p: b for p, b in pair_bytes(lines, BURST).items() if "10.0.2.20" in p}
    assert found.total == sum(here.values()) > 0
    assert [(r["address"], r["peer"]) for r in found.pairs] == [("10.0.2.20", "10.0.1.10")]
    assert found.pairs[0]["share"] == 1.0 and found.ports == [(5432, found.total)]


def test_a_segment_compacted_away_meanwhile_gets_one_more_try(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The explanation's SQL names segment files: one that compaction removed meanwhile
    fails the read (an IOException, injected here once); the whole explanation is made
    again after a refresh, with the files listed then."""
    lines = three_days() + burst()
    (tmp_path / "days.log").write_bytes(text(lines))
    with open_store(tmp_path / "state") as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
        explorer = Explorer(store)
        rows, failed = explorer.rows, []

        def once(sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
            if not failed:
                failed.append(sql)
                raise duckdb.IOException("No files found that match the pattern")
            return rows(sql, params)

        monkeypatch.setattr(explorer, "rows", once)
        try:
            found = explain(explorer, Scope(), BURST)
        finally:
            explorer.close()
    assert failed and found.pairs[0]["new"] is True
    assert found.total == sum(pair_bytes(lines, BURST).values())
