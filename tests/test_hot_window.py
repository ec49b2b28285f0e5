"""The app's read side over a store longer than its hot window (docs/app.md): the traffic
index holds the last day only; the chart of the whole store comes from the traffic summary
(or the segments, for a filter the summary cannot answer) plus the index; a past range gets
an index of its own. Expected figures are computed here from the records' text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.address_pairs import PAIR_COST
from core.explain import explain
from core.explorer import Explorer, Scope
from core.filters import parse_filter
from core.scan import scan
from core.store import open_store
from core.timeline import Axis, TimeRange, axis_for
from core.traffic_index import DTYPES, FLOW_COST
from tests.scenarios import line, text
from tests.test_explorer import LIMIT, _pane_order, reference

DAY = 86_400
FIRST = 1_764_000_000 // 3600 * 3600
PAIRS = [("eni-web1", "10.0.1.10", "198.51.100.7", 443), ("eni-web1", "10.0.1.10",
                                                          "52.95.110.1", 22),
         ("eni-db1", "10.0.2.20", "10.0.1.10", 5432), ("eni-app1", "10.0.2.45",
                                                       "192.0.2.200", 8080)]


def three_days() -> list[str]:
    """Flows every five minutes for three days: each pair both ways, bytes varying with the
    time, some refused."""
    lines = []
    for n, t in enumerate(range(FIRST, FIRST + 3 * DAY, 300)):
        for k, (eni, local, remote, port) in enumerate(PAIRS):
            size = 1000 + (n * 37 + k * 101) % 5000
            action = "REJECT" if (n + k) % 7 == 0 else "ACCEPT"
            lines.append(line(eni, remote, local, 40000 + n % 1000, port, 6, 3, size, t + k,
                              action))
            lines.append(line(eni, local, remote, port, 40000 + n % 1000, 6, 5, 3 * size,
                              t + k + 1, action))
    return lines


def expected_histogram(lines: list[str], axis: Axis, keep: object = None) -> list[int]:
    values = Counter[int]()
    for record in lines:
        f = record.split()
        start = int(f[10])
        if axis.start <= start < axis.end and (keep is None or keep(f)):  # type: ignore[operator]
            values[(start - axis.start) // axis.size] += int(f[9])
    return [values[i] for i in range(axis.count)]


def test_a_store_longer_than_the_hot_window(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lines = three_days()
    (tmp_path / "days.log").write_bytes(text(lines))
    state = tmp_path / "state"
    with open_store(state) as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
        explorer = Explorer(store, hot_seconds=DAY)
        try:
            newest = max(int(record.split()[11]) for record in lines)
            hot_start = (newest - DAY) // 60 * 60
            assert explorer.index.start == hot_start
            assert explorer.index.rows == sum(int(r.split()[10]) >= hot_start for r in lines)

            span = explorer.span()
            assert span is not None
            axis = axis_for(span, 160)  # the whole store: two-hour buckets
            assert axis.start < hot_start
            read_segments = []
            between = store.segments.between
            monkeypatch.setattr(store.segments, "between",
                                lambda *a, **k: read_segments.append(a) or between(*a, **k))
            for terms, keep, summarised in (
                ("", None, True),
                ("action:reject eni:eni-web1",
                 lambda f: f[12] == "REJECT" and f[2] == "eni-web1", True),
                ("port:22", lambda f: "22" in (f[5], f[6]), False),
                ("!10.0.2.20", lambda f: "10.0.2.20" not in (f[3], f[4]), False),
            ):
                scope = Scope(parse_filter(terms))
                # what the app shows first, before the segments are read: the hot window's
                assert explorer.histogram_is_partial(scope, axis) == (not summarised)
                quick = explorer.histogram(scope, axis, complete=False)
                hot_lines = [r for r in lines if int(r.split()[10]) >= hot_start]
                read_segments.clear()
                got = explorer.histogram(scope, axis)
                assert got == expected_histogram(lines, axis, keep), terms
                assert sum(got) > 0
                assert (not read_segments) == summarised, terms  # the older part's source
                assert quick == (got if summarised else expected_histogram(hot_lines, axis,
                                                                           keep))
                assert not explorer.histogram_is_partial(scope, axis)  # (read once, kept)
            monkeypatch.undo()

            # without a range, the conversations are the hot window's
            hot = Scope(parse_filter(""), TimeRange(hot_start, span.end))
            got = explorer.conversations(Scope(), None, LIMIT).to_pylist()
            assert got == reference(state, hot, None)[:LIMIT]
            assert explorer.spans.past is None

            # a range two days back: an index of its own, and the same answers as SQL
            past = Scope(parse_filter("port:443"), TimeRange(FIRST + 3600, FIRST + 7200))
            past_axis = axis_for(past.range, 160)  # type: ignore[arg-type]
            assert explorer.histogram(past, past_axis) == expected_histogram(
                lines, past_axis, lambda f: "443" in (f[5], f[6]))
            assert explorer.spans.past is not None and explorer.spans.past.start == past_axis.start
            got = explorer.conversations(past, "10.0.1.10", LIMIT).to_pylist()
            expected = reference(state, past, "10.0.1.10")
            assert got == sorted(expected, key=_pane_order)[:LIMIT] and len(got) == 1
            assert got[0]["peer"] == "198.51.100.7"
        finally:
            explorer.close()


def test_the_hot_window_follows_new_data_by_whole_hours(tmp_path: Path) -> None:
    lines = three_days()
    day_one = [r for r in lines if int(r.split()[10]) < FIRST + DAY]
    later = [r for r in lines if FIRST + DAY <= int(r.split()[10]) < FIRST + DAY + 5400]
    state = tmp_path / "state"
    with open_store(state) as store:
        (tmp_path / "one.log").write_bytes(text(day_one))
        scan([tmp_path / "one.log"], store, 1 << 30)
        explorer = Explorer(store, hot_seconds=DAY)
        try:
            start = explorer.index.start
            assert start is not None and explorer.index.rows == sum(
                int(r.split()[10]) >= start for r in day_one)
            (tmp_path / "later.log").write_bytes(text(later))
            scan([tmp_path / "later.log"], store, 1 << 30)
            explorer.refresh()
            moved = explorer.index.start
            assert moved is not None and moved - start >= 3600  # an hour and a half later
            everything = day_one + later
            assert explorer.index.rows == sum(int(r.split()[10]) >= moved for r in everything)
            span = explorer.span()
            assert span is not None
            axis = axis_for(span, 200)
            assert explorer.histogram(Scope(), axis) == expected_histogram(everything, axis)
        finally:
            explorer.close()



def test_a_range_reads_only_the_rows_of_its_segments(tmp_path: Path) -> None:
    lines = three_days()
    days = [[r for r in lines if FIRST + d * DAY <= int(r.split()[10]) < FIRST + (d + 1) * DAY]
            for d in range(3)]
    with open_store(tmp_path / "state") as store:
        for d, day in enumerate(days):  # a segment a day
            (tmp_path / f"day{d}.log").write_bytes(text(day))
            scan([tmp_path / f"day{d}.log"], store, 1 << 30)
        explorer = Explorer(store, hot_seconds=None)  # (all three days indexed)
        try:
            noon = TimeRange(FIRST + DAY + 12 * 3600, FIRST + DAY + 13 * 3600)
            rows = explorer.index.rows_in(noon)
            assert rows is not None and len(rows) == len(days[1])  # the second day's only
            assert explorer.index.rows_in(TimeRange(FIRST, FIRST + 3 * DAY)) is None
            for focus in (None, "10.0.1.10"):
                got = explorer.conversations(Scope(range=noon), focus, LIMIT).to_pylist()
                assert got == reference(tmp_path / "state", Scope(range=noon), focus)[:LIMIT]
            axis = axis_for(noon, 160)
            assert explorer.histogram(Scope(range=noon), axis) == expected_histogram(
                lines, axis)
        finally:
            explorer.close()


def test_index_memory_shortens_the_hot_window_and_bounds_a_past_range(tmp_path: Path) -> None:
    """With a budget (index_memory) smaller than the day's flows, the hot window starts at
    the newest minute from which its flows fit three quarters of it (each costing its
    columns and its share of the day's address pairs); a past range with more flows than
    the last quarter allows at the worst case of a pair each gets its chart (read from the
    flows) but no index."""
    lines = three_days()
    (tmp_path / "days.log").write_bytes(text(lines))
    past_rows = 400
    newest = max(int(r.split()[11]) for r in lines)
    day = [r.split() for r in lines if int(r.split()[10]) >= (newest - DAY) // 60 * 60]
    pairs = len({tuple(sorted(f[3:5])) for f in day}) / len(day)
    row_bytes = sum(np.dtype(kind).itemsize for kind in DTYPES.values())
    hot_rows = 3 * past_rows * FLOW_COST / (row_bytes + PAIR_COST * pairs)
    assert 1000 < hot_rows < len(day)  # (2,304 flows a day: the day does not fit)
    with open_store(tmp_path / "state") as store:
        scan([tmp_path / "days.log"], store, 1 << 30)
        explorer = Explorer(store, hot_seconds=DAY, index_memory=4 * past_rows * FLOW_COST)
        try:
            per_minute = Counter(int(r.split()[10]) // 60 * 60 for r in lines)
            held, expected_start = 0, None
            for minute in sorted(per_minute, reverse=True):
                held += per_minute[minute]
                if held > hot_rows:
                    expected_start = minute + 60
                    break
            assert explorer.index.start == expected_start and explorer.index.trimmed
            assert explorer.index.rows == sum(int(r.split()[10]) >= expected_start
                                              for r in lines) <= hot_rows

            long_ago = Scope(parse_filter(""), TimeRange(FIRST + 3600, FIRST + 7 * 3600))
            axis = axis_for(long_ago.range, 160)  # type: ignore[arg-type]
            assert explorer.histogram(long_ago, axis) == expected_histogram(lines, axis)
            assert sum(int(r.split()[10]) in range(FIRST + 3600, FIRST + 7 * 3600)
                       for r in lines) > past_rows
            assert explorer.range_too_long(long_ago) and explorer.spans.past is None
            assert explorer.conversations(Scope(parse_filter(""), TimeRange(FIRST, FIRST + 600)),
                                          None, LIMIT).num_rows > 0  # (a short one: indexed)
            kept = explorer.spans.past
            assert kept is not None
            assert explorer.range_too_long(long_ago) and explorer.spans.past is kept
            other = Scope(parse_filter(""), TimeRange(FIRST + 7200, FIRST + 7800))
            assert not explorer.range_too_long(other) and explorer.spans.past is kept
            assert explorer.conversations(long_ago, None, LIMIT).num_rows == 0
            explained = explain(explorer, Scope(), long_ago.range)  # type: ignore[arg-type]
            assert explained.too_long and explained.pairs == [] and explained.total == sum(
                int(r.split()[9]) for r in lines
                if FIRST + 3600 <= int(r.split()[10]) < FIRST + 7 * 3600)

            short = Scope(parse_filter(""), TimeRange(FIRST + 3600, FIRST + 7200))
            assert not explorer.range_too_long(short)
            assert explorer.conversations(short, None, LIMIT).to_pylist() == reference(
                tmp_path / "state", short, None)[:LIMIT]
        finally:
            explorer.close()


def test_the_pairs_follow_the_rows_as_the_window_moves(tmp_path: Path) -> None:
    """Pairs no row uses leave the index when the hot window moves on (renumbered, the
    conversations unchanged): new clients every hour must not grow it, nor shrink a
    budgeted window. Found by a review: they used to pile up."""
    def hour(h: int) -> list[str]:  # every flow a new pair
        return [line("eni-1", f"10.{h}.{n // 250}.{n % 250 + 1}", "10.255.0.1", 40000, 443,
                     6, 1, 100 + n, FIRST + h * 3600 + n * 12) for n in range(300)]

    state = tmp_path / "state"
    with open_store(state) as store:
        explorer = Explorer(store, hot_seconds=6 * 3600, index_memory=10 ** 7)
        try:
            for h in range(14):
                (tmp_path / f"h{h}.log").write_bytes(text(hour(h)))
                scan([tmp_path / f"h{h}.log"], store, 1 << 30)
                explorer.refresh()
                index = explorer.index
                pair = index.columns["pair"]
                assert len(index.pairs) == len(np.unique(pair[pair >= 0]))
            assert index.start is not None and not index.trimmed
            starts = [int(r.split()[10]) for h in range(14) for r in hour(h)]
            assert index.rows == sum(t >= index.start for t in starts) >= 300 * 6
            scope = Scope(parse_filter(""), None)
            hot = Scope(parse_filter(""), TimeRange(index.start, FIRST + 14 * 3600))
            got = explorer.conversations(scope, None, LIMIT).to_pylist()
            assert got == reference(state, hot, None)[:LIMIT]
        finally:
            explorer.close()


def test_late_data_for_the_hours_held_keeps_the_budget(tmp_path: Path) -> None:
    """A second account delivering the hours already held (the newest flow unchanged) must
    not let the index outgrow its budget until the next hour: it is looked at again once
    the index is well over it. Found by a review."""
    def hours(tag: int, per_hour: int) -> list[str]:
        return [line("eni-1", f"10.{tag}.{n // 250}.{n % 250 + 1}", "10.255.0.1", 40000, 443,
                     6, 1, 100, FIRST + h * 3600 + n * (3600 // per_hour))
                for h in range(12) for n in range(per_hour)]

    memory = 400_000
    with open_store(tmp_path / "state") as store:
        (tmp_path / "a.log").write_bytes(text(hours(1, 200)))
        scan([tmp_path / "a.log"], store, 1 << 30)
        explorer = Explorer(store, hot_seconds=12 * 3600, index_memory=memory)
        try:
            (tmp_path / "b.log").write_bytes(text(hours(2, 1000)))
            scan([tmp_path / "b.log"], store, 1 << 30)
            explorer.refresh()
            index = explorer.index
            row_bytes = sum(np.dtype(kind).itemsize for kind in DTYPES.values())
            held = index.rows * row_bytes + PAIR_COST * len(index.pairs)
            assert index.trimmed and held <= (memory - memory // 4) * 1.25
        finally:
            explorer.close()


def test_a_range_over_an_index_without_rows_is_no_error(tmp_path: Path) -> None:
    """(Found by an adversarial test of the app: a range in a gap before the hot window
    failed the whole view, "zip() argument 3 is shorter", and the chart stayed as it was.)"""
    with open_store(tmp_path / "state") as store:
        explorer = Explorer(store, hot_seconds=None)
        try:
            explorer.build()
            assert explorer.index.rows == 0
            assert explorer.index.rows_in(TimeRange(FIRST, FIRST + DAY)) is None
        finally:
            explorer.close()
