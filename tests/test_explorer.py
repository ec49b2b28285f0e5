"""The app's read side (core.explorer and core.traffic_index) against a real store: its
answers equal SQL over the Parquet segments, through new commits and compaction."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from core.explorer import Explorer, Scope
from core.export import export_rows
from core.filters import parse_filter
from core.rules import RuleEngine
from core.scan import scan
from core.store import open_store
from core.store.segments import segment_dir
from core.timeline import Axis, TimeRange
from core.traffic_kernels import _most_bytes
from tests.scenarios import ACCOUNT, benign, line, text


def expected_bytes(state: Path, where: str = "true", params: list[object] | None = None) -> int:
    files = f"read_parquet('{segment_dir(state)}/*.parquet', union_by_name=true)"
    con = duckdb.connect()
    [(total,)] = con.execute(f"SELECT coalesce(sum(bytes), 0) FROM {files} WHERE {where}",
                             params or []).fetchall()
    return int(total)


def minute_axis(explorer: Explorer) -> Axis:
    """One-minute buckets over everything stored."""
    span = explorer.span()
    assert span is not None
    return Axis(span.start, 60, -(-(span.end - span.start) // 60) + 1)


def test_index_follows_new_segments_and_compaction(tmp_path: Path) -> None:
    lines = benign(20_000)
    chunks = [lines[i:i + 2000] for i in range(0, len(lines), 2000)]  # 10 small segments
    state = tmp_path / "state"
    with open_store(state) as store:
        explorer = Explorer(store)
        for n, chunk in enumerate(chunks[:9]):
            path = tmp_path / f"part-{n}.log"
            path.write_bytes(text(chunk))
            scan([path], store, 1 << 30)  # one commit, one segment each
        explorer.refresh()
        axis = minute_axis(explorer)
        assert sum(explorer.histogram(Scope(), axis)) == expected_bytes(state)
        assert store.compact() == 9  # nine small segments become one
        # (their files' grace for readers is over: the directory, which the expectations
        # read, holds the listed segments only)
        store.segments.remove_retired(everything=True)
        explorer.refresh()
        assert list(explorer.index.indexed.values()) == [1]  # (the nine codes freed, reused)
        assert sum(explorer.histogram(Scope(), axis)) == expected_bytes(state)
        path = tmp_path / "part-9.log"
        path.write_bytes(text(chunks[9]))
        scan([path], store, 1 << 30)
        explorer.refresh()
        axis = minute_axis(explorer)
        web = Scope(parse_filter("dst:10.0.1.10 port:443"))
        assert sum(explorer.histogram(web, axis)) == expected_bytes(
            state, "dstaddr = ? AND (srcport = 443 OR dstport = 443)", ["10.0.1.10"])
        explorer.close()


def test_a_range_counts_only_its_flows_whatever_their_order(tmp_path: Path) -> None:
    """A regression: the conversations' loop reused the range's start for a port number, so
    a pair's flow before the range that came after one inside it (in one segment) was
    counted. Found by a review of the index's kernels."""
    t0 = 1_764_000_000
    lines = [line("eni-1", "10.0.0.1", "10.0.0.2", 40000, 443, 6, 1, 100, t0 + 4000),
             line("eni-1", "10.0.0.1", "10.0.0.2", 40001, 443, 6, 1, 5000, t0 + 100)]
    (tmp_path / "a.log").write_bytes(text(lines))
    with open_store(tmp_path / "state") as store:
        scan([tmp_path / "a.log"], store, 1 << 30)
        explorer = Explorer(store, hot_seconds=None)
        [row] = explorer.conversations(Scope(parse_filter(""), TimeRange(t0 + 3600, t0 + 7200)),
                                       None, 10).to_pylist()
        explorer.close()
    assert (row["bytes_out"] + row["bytes_in"], row["flows"], row["first_seen"]) == (
        100, 1, t0 + 4000)


def test_more_interfaces_than_16_bit_codes_count(tmp_path: Path) -> None:
    """Text columns start with 16-bit codes and widen when a 65,536th value arrives."""
    day = 1_764_000_000
    lines = [line(f"eni-{n:05x}", "10.0.1.10", "198.51.100.7", 40000, 443, 6, 3, 1000 + n,
                  day + n % 3600) for n in range(70_000)]
    state = tmp_path / "state"
    with open_store(state) as store:
        explorer = Explorer(store, hot_seconds=None)
        for n, half in enumerate((lines[:35_000], lines[35_000:])):  # (widened between)
            (tmp_path / f"part-{n}.log").write_bytes(text(half))
            scan([tmp_path / f"part-{n}.log"], store, 1 << 30)
            explorer.refresh()
        assert explorer.index.columns["interface_id"].dtype == np.int32
        axis = minute_axis(explorer)
        for n in (1, 65_534, 65_535, 65_536, 69_999):
            eni = Scope(parse_filter(f"eni:eni-{n:05x}"))
            assert sum(explorer.histogram(eni, axis)) == 1000 + n
        explorer.close()


def test_retention_takes_unused_addresses_out_of_the_index(tmp_path: Path) -> None:
    day = 1_764_000_000
    old = [line("eni-1", f"203.0.113.{h}", "10.0.1.10", 40000 + h, 443, 6, 3, 900, day)
           for h in range(1, 6)]
    recent = [line("eni-1", "198.51.100.7", "10.0.1.10", 40000, 443, 6, 3, 900, day + 86_400),
              f"2 {ACCOUNT} eni-1 - - - - - - - {day + 86_400} {day + 86_460} - NODATA"]
    state = tmp_path / "state"
    with open_store(state) as store:
        explorer = Explorer(store, hot_seconds=None)  # (every flow indexed)
        for name, lines in (("old.log", old), ("recent.log", recent)):
            (tmp_path / name).write_bytes(text(lines))
            scan([tmp_path / name], store, 1 << 30)
        explorer.refresh()
        assert explorer.index.address_id("203.0.113.1") is not None
        assert store.prune(3600, date(2020, 1, 1), now=day + 86_400) == len(old)
        explorer.refresh()
        remaining = {row[0] for row in explorer.con.execute("SELECT address FROM ix_addr")
                     .fetchall()}
        assert remaining == {"198.51.100.7", "10.0.1.10"}
        assert explorer.index.address_id("203.0.113.1") is None  # (its lookup follows)
        assert explorer.conversations(Scope(), "203.0.113.1").num_rows == 0
        top = explorer.conversations(Scope(), None).select(["address", "peer"]).to_pylist()
        assert top == [{"address": "198.51.100.7", "peer": "10.0.1.10"}]
        explorer.close()


REFERENCE = """
WITH f AS (
  SELECT *, {address} AS a, {peer} AS p, srcaddr = {address} AS out,
         least(srcport, dstport) AS port,
         least(7, greatest(0, ("start" - {t0}) // {width})) AS b
  FROM read_parquet({files}) WHERE {where} AND srcaddr IS NOT NULL AND dstaddr IS NOT NULL),
g AS (
  SELECT a, p, coalesce(sum(bytes) FILTER (WHERE out), 0) AS bytes_out,
         coalesce(sum(bytes) FILTER (WHERE NOT out), 0) AS bytes_in,
         coalesce(sum(packets) FILTER (WHERE out), 0) AS packets_out,
         coalesce(sum(packets) FILTER (WHERE NOT out), 0) AS packets_in, count(*) AS flows,
         count(*) FILTER (WHERE action = 'ACCEPT') AS accepted,
         count(*) FILTER (WHERE action = 'REJECT') AS rejected,
         min("start") AS first_seen, max("end") AS last_seen,
         list(DISTINCT protocol ORDER BY protocol) AS protocols,
         [{trend}] AS trend
  FROM f GROUP BY a, p),
ports AS (
  SELECT a, p, list(port ORDER BY n DESC, port)[1:3] AS ports
  FROM (SELECT a, p, port, count(*) AS n FROM f GROUP BY ALL) GROUP BY a, p)
SELECT a AS address, p AS peer, g.* EXCLUDE (a, p, protocols, trend), protocols, ports, trend
FROM g JOIN ports USING (a, p)
"""


def reference(state: Path, scope: Scope, focus: str | None) -> list[dict]:
    """Every row the conversations pane could show, computed in SQL from the Parquet files
    independently of the traffic index: per peer of ``focus``, or per pair (its bigger
    sender first); in the pane's order."""
    files = f"'{segment_dir(state)}/*.parquet'"
    con = duckdb.connect()
    RuleEngine([]).install(con)
    where, params = scope.filter.flows_sql()
    if scope.range:
        where += f" AND start >= {scope.range.start} AND start < {scope.range.end}"
        t0, t1 = scope.range.start, scope.range.end
    else:
        [(t0, t1)] = con.execute(f'SELECT min(start), max("end") + 1 FROM {files}').fetchall()
    if focus is None:
        address, peer = "least(srcaddr, dstaddr)", "greatest(srcaddr, dstaddr)"
    else:
        address = f"'{focus}'"
        peer = f"CASE WHEN srcaddr = {address} THEN dstaddr ELSE srcaddr END"
        where += f" AND {address} IN (srcaddr, dstaddr)"
    trend = ", ".join(f"coalesce(sum(bytes) FILTER (WHERE b = {i}), 0)" for i in range(8))
    sql = REFERENCE.format(address=address, peer=peer, where=where, files=files, t0=t0,
                           width=-(-(t1 - t0) // 8), trend=trend)
    rows = con.sql(sql, params=params).to_arrow_table().to_pylist()
    rows = [_bigger_sender_first(r) if focus is None else r for r in rows]
    return sorted(rows, key=_pane_order)


def _pane_order(row: dict) -> tuple[int, int, str, str]:
    return -(row["bytes_out"] + row["bytes_in"]), -row["flows"], row["address"], row["peer"]


def _bigger_sender_first(row: dict) -> dict:
    if row["bytes_in"] <= row["bytes_out"]:
        return row
    return row | {"address": row["peer"], "peer": row["address"],
                  "bytes_out": row["bytes_in"], "bytes_in": row["bytes_out"],
                  "packets_out": row["packets_in"], "packets_in": row["packets_out"]}


LIMIT = 12


@pytest.mark.parametrize(("terms", "hours", "focus"), [
    ("", None, "10.0.1.11"),
    ("", None, None),
    ("port:443", None, None),
    ("!action:accept", None, None),
    ("10.0.0.0/16 proto:udp", (1, 2), None),
    ("", (0, 1), "10.0.2.20"),
])
def test_conversations_match_sql(tmp_path: Path, terms: str, hours: tuple[int, int] | None,
                                 focus: str | None) -> None:
    path = tmp_path / "traffic.log"
    path.write_bytes(text(benign(10_000)))
    state = tmp_path / "state"
    with open_store(state) as store:
        scan([path], store, 1 << 30)
        explorer = Explorer(store)
        span = explorer.span()
        assert span is not None
        window = None if hours is None else TimeRange(span.start + hours[0] * 3600,
                                                      span.start + hours[1] * 3600)
        scope = Scope(parse_filter(terms), window)
        got = explorer.conversations(scope, focus, LIMIT).to_pylist()
        expected = reference(state, scope, focus)
        second = Explorer(store)  # the same, added up on its second thread (as the app asks)
        sums = second.prefetch_conversations(scope, focus, LIMIT)
        assert sums is not None and not second.conversations_ready(Scope(), "192.0.2.99")
        sums.result(timeout=60)
        assert second.conversations_ready(scope, focus, LIMIT)
        assert second.conversations(scope, focus, LIMIT).to_pylist() == got
        second.close()
        assert len(got) == min(LIMIT, len(expected)) > 0
        # pairs that tie with the last one shown may be cut in either order: compare the rest
        cut = _pane_order(expected[len(got) - 1])[:2]
        assert [_pane_order(r)[:2] for r in got][-1] == cut
        assert ([r for r in got if _pane_order(r)[:2] != cut]
                == [r for r in expected[:len(got)] if _pane_order(r)[:2] != cut])
        explorer.close()


@pytest.mark.parametrize("limit", [0, 1, 12, 5000])
def test_the_pairs_with_the_most_bytes_come_in_order(limit: int) -> None:
    """Few distinct totals and flow counts, so that most pairs tie on both; the candidates
    come in any order (as the pairs a filter's rows touch first)."""
    rng = np.random.default_rng(7)
    pairs = 2000
    total = rng.integers(0, 4, pairs).astype(np.int64) * 1000
    flows = rng.integers(0, 3, pairs).astype(np.int64)  # 0: no flow in scope
    ends = rng.permutation(pairs * 2).astype(np.int32).reshape(pairs, 2)
    ends.sort(axis=1)
    expected = sorted((p for p in range(pairs) if flows[p]),
                      key=lambda p: (-total[p], -flows[p], ends[p, 0], ends[p, 1]))[:limit]
    candidates = rng.permutation(np.flatnonzero(flows)).astype(np.int64)
    assert _most_bytes(candidates, total, flows, ends, limit).tolist() == expected


def test_exports_write_every_row(tmp_path: Path) -> None:
    rows = [{"a": 1, "b": ["x", "y"], "c": "=cmd()"}, {"a": -2, "b": [], "c": None},
            {"a": 3, "b": [], "c": "@SUM(A1)"}, {"a": 4, "b": [], "c": "a=b"},
            {"a": 5, "b": [], "c": " =1+1"}, {"a": 6, "b": [], "c": "\n=1+1"}]
    csv_path = export_rows(rows, tmp_path, "t", "csv")
    json_path = export_rows(rows, tmp_path, "t", "json")
    assert csv_path != json_path and csv_path.suffix == ".csv"
    # text that a spreadsheet would run as a formula is made inert; numbers stay numbers
    assert csv_path.read_text().splitlines() == [
        "a,b,c", '1,"[""x"", ""y""]",\'=cmd()', "-2,[],", "3,[],\'@SUM(A1)", "4,[],a=b",
        "5,[],' =1+1", "6,[],\"'", "=1+1\""]
    assert [json.loads(line) for line in json_path.read_text().splitlines()] == rows
    assert export_rows(rows, tmp_path, "t", "csv") != csv_path  # same second: a new name
    # rows as they come (the app exports alerts so, a batch at a time): the same files
    for path in (csv_path, json_path):
        again = export_rows(iter(rows), tmp_path, "g", path.suffix[1:])
        assert again.read_text() == path.read_text()
        none = export_rows(iter([]), tmp_path, "n", path.suffix[1:])
        assert none.read_text() == export_rows([], tmp_path, "e", path.suffix[1:]).read_text()


def test_an_export_is_private_and_whole_or_not_there(tmp_path: Path) -> None:
    def failing(rows: int) -> Iterator[dict[str, Any]]:  # a read that fails midway
        for n in range(rows):
            yield {"a": n, "c": "x" * 1000}
        raise OSError(28, "No space left on device")

    for fmt in ("csv", "json"):
        with pytest.raises(OSError, match="No space left"):
            export_rows(failing(500), tmp_path / fmt, "t", fmt)
        assert list((tmp_path / fmt).iterdir()) == []  # (500 kB were written before)
        path = export_rows(iter([{"a": 1}]), tmp_path / fmt, "t", fmt)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # what the logs say, the owner's


def test_the_feed_at_level_3_derives_the_parity_alerts_newest_first_and_follows_commits(
    tmp_path: Path,
) -> None:
    from core.alerts import recent_alerts
    from tests.scenarios import parity_groups

    lines = benign(6_000)
    first, later = lines[:4_000], lines[4_000:]
    level_3 = Scope(min_level=3)

    def expected(part: list[str]) -> int:
        return sum(len(parity_groups(part, action)) for action in ("ACCEPT", "REJECT"))

    def complete_order(store: object) -> list[str]:  # every alert derived, in feed order
        return recent_alerts(store, None, 3)["id"].to_pylist()  # type: ignore[arg-type]

    state = tmp_path / "state"
    with open_store(state) as store:
        explorer = Explorer(store)
        (tmp_path / "first.log").write_bytes(text(first))
        scan([tmp_path / "first.log"], store, 1 << 30)
        explorer.refresh()
        # the first page derives the last 20 minutes only: the same page, a partial count
        page = explorer.feed(level_3, 0, 60)["id"].to_pylist()
        assert page == complete_order(store)[:60]
        assert explorer.feed_count_is_partial(level_3)
        assert 60 <= explorer.feed_count(level_3) < expected(first)
        # a deep page reaches further back; the whole range gives the exact count
        deep = explorer.feed(level_3, 1_000, 60)["id"].to_pylist()
        assert deep == complete_order(store)[1_000:1_060]
        explorer.feed(level_3, 0, 100_000)
        assert not explorer.feed_count_is_partial(level_3)
        assert explorer.feed_count(level_3) == expected(first)
        (tmp_path / "later.log").write_bytes(text(later))
        scan([tmp_path / "later.log"], store, 1 << 30)
        explorer.refresh()
        assert explorer.feed(level_3, 0, 60)["id"].to_pylist() == complete_order(store)[:60]
        explorer.feed(level_3, 0, 100_000)
        assert explorer.feed_count(level_3) == expected(lines)  # the new flows are in
        assert explorer.feed_count(Scope(min_level=5)) == 0
        # a range: the alerts seen in it (last record at or after its start, first before its
        # end), each with the figures of its whole window
        start = int(lines[len(lines) // 2].split()[10]) // 600 * 600 + 120
        window = TimeRange(start, start + 300)
        in_range = Scope(min_level=3, range=window)
        shown = explorer.feed(in_range, 0, 10_000).to_pylist()
        everything = {a["id"]: a for a in explorer.feed(level_3, 0, 100_000).to_pylist()}
        assert shown and all(a["last_seen"] >= window.start and a["first_seen"] < window.end
                             for a in shown)
        assert all(a == everything[a["id"]] for a in shown)
        assert len(shown) == sum(1 for a in everything.values()
                                 if a["last_seen"] >= window.start
                                 and a["first_seen"] < window.end)
        assert explorer.feed(Scope(min_level=4), 0, 100_000).num_rows == len(
            parity_groups(lines, "REJECT"))
        explorer.close()
