"""The app's read side (core.explorer and core.traffic_index) against a real store: its
answers equal SQL over the Parquet segments, through new commits and compaction."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from core.explorer import Explorer, ReadOnlyError, Scope, check_read_only, export_rows
from core.filters import parse_filter
from core.scan import scan
from core.segments import segment_dir
from core.store import open_store
from core.timeline import Axis
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
        explorer.refresh()
        assert len(explorer.index.indexed) == 1
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


def test_retention_takes_unused_addresses_out_of_the_index(tmp_path: Path) -> None:
    day = 1_764_000_000
    old = [line("eni-1", f"203.0.113.{h}", "10.0.1.10", 40000 + h, 443, 6, 3, 900, day)
           for h in range(1, 6)]
    recent = [line("eni-1", "198.51.100.7", "10.0.1.10", 40000, 443, 6, 3, 900, day + 86_400),
              f"2 {ACCOUNT} eni-1 - - - - - - - {day + 86_400} {day + 86_460} - NODATA"]
    state = tmp_path / "state"
    with open_store(state) as store:
        explorer = Explorer(store)
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
        top = explorer.conversations(Scope(), None).select(["address", "peer"]).to_pylist()
        assert top == [{"address": "198.51.100.7", "peer": "10.0.1.10"}]
        explorer.close()


def test_conversations_match_sql(tmp_path: Path) -> None:
    path = tmp_path / "traffic.log"
    path.write_bytes(text(benign(10_000)))
    state = tmp_path / "state"
    with open_store(state) as store:
        scan([path], store, 1 << 30)
        explorer = Explorer(store)
        rows = explorer.conversations(Scope(), "10.0.1.11", 5).to_pylist()
        files = f"read_parquet('{segment_dir(state)}/*.parquet')"
        expected = duckdb.connect().execute(f"""
            SELECT CASE WHEN srcaddr = '10.0.1.11' THEN dstaddr ELSE srcaddr END AS peer,
                   sum(bytes) FILTER (WHERE srcaddr = '10.0.1.11'),
                   sum(bytes) FILTER (WHERE dstaddr = '10.0.1.11'), count(*)
            FROM {files} WHERE '10.0.1.11' IN (srcaddr, dstaddr)
            GROUP BY peer ORDER BY sum(bytes) DESC, count(*) DESC, peer LIMIT 5""").fetchall()
        got = [(r["peer"], r["bytes_out"] or None, r["bytes_in"] or None, r["flows"])
               for r in rows]
        assert got == [(p, o or None, i or None, n) for p, o, i, n in expected]
        assert all(len(r["trend"]) == 8 and sum(r["trend"]) == r["bytes_out"] + r["bytes_in"]
                   for r in rows)
        pairs = explorer.conversations(Scope(), None, 10).to_pylist()  # the top talkers
        assert all(r["bytes_out"] >= r["bytes_in"] for r in pairs)  # the bigger sender first
        totals = [r["bytes_out"] + r["bytes_in"] for r in pairs]
        assert totals == sorted(totals, reverse=True)
        explorer.close()


@pytest.mark.parametrize("sql", ["DELETE FROM alerts", "COPY alerts TO '/tmp/x.csv'",
                                 "SET threads = 1", "ATTACH 'x.db'", "SELECT 1; SELECT 2",
                                 "EXPLAIN ANALYZE DELETE FROM alerts", "INSTALL httpfs"])
def test_the_sql_prompt_refuses_what_is_not_a_query(sql: str) -> None:
    with pytest.raises(ReadOnlyError):
        check_read_only(sql)


def test_exports_write_every_row(tmp_path: Path) -> None:
    rows = [{"a": 1, "b": ["x", "y"], "c": "=cmd()"}, {"a": -2, "b": [], "c": None},
            {"a": 3, "b": [], "c": "@SUM(A1)"}, {"a": 4, "b": [], "c": "a=b"}]
    csv_path = export_rows(rows, tmp_path, "t", "csv")
    json_path = export_rows(rows, tmp_path, "t", "json")
    assert csv_path != json_path and csv_path.suffix == ".csv"
    # text that a spreadsheet would run as a formula is made inert; numbers stay numbers
    assert csv_path.read_text().splitlines() == [
        "a,b,c", '1,"[""x"", ""y""]",\'=cmd()', "-2,[],", "3,[],\'@SUM(A1)", "4,[],a=b"]
    assert [json.loads(line) for line in json_path.read_text().splitlines()] == rows
    assert export_rows(rows, tmp_path, "t", "csv") != csv_path  # same second: a new name
