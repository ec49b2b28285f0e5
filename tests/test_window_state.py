"""The rules' held windows (core/rules/window_state.py) and the split of an aggregate
expression into partials (core/rules/partials.py).

Both are checked against the definition: the rule's own expression grouped over the raw
records. tests/test_detections.py::test_the_threshold_check_skips_only_windows_that_raise_nothing
checks the alerts of the default rules, whose checks read held windows, commit by commit."""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import duckdb
import pytest

from core.flowlog_parser import parse_text
from core.layouts import Kind
from core.objects import ObjectRef, ObjectResult, Status
from core.rules import load_engine
from core.rules.partials import split
from core.rules.window_state import MAX_TABLES
from core.store import Store
from tests import scenarios

# A baseline rule (its value is a number, so every window's figure can be compared) whose
# expression uses each kind of partial: a count, a filtered count, a DISTINCT count with a
# filter, a sum, a max.
VALUE = ("count(DISTINCT dstport) FILTER (WHERE protocol = 6) * 1000000000 "
         "+ count(*) FILTER (WHERE action = 'REJECT') * 1000000 + count(*) * 1000 "
         "+ max(packets) + sum(bytes) % 7")
RULE = f"""
[[rule]]
id = "test.mixed"
level = 5
title = "mixed {{srcaddr}}"
source = "vpcflow"
where = "log_status = 'OK'"
group_by = ["srcaddr"]
window = "5m"
baseline = "{VALUE}"
baseline_windows = 3
compare = "value < 0"
"""
WINDOW = 300


def flows(name: str, lines: list[str], replaces: bool = False) -> ObjectResult:
    table = parse_text(scenarios.text(lines)).table
    result = ObjectResult(ObjectRef("b", name, "etag", 1, Kind.TEXT), Status.DONE, flows=table)
    result.replaces = replaces
    return result


@pytest.mark.parametrize("expression", [
    VALUE,
    "count(DISTINCT dstaddr) >= 3 AND 2 * count(*) FILTER (WHERE action = 'REJECT') >= count(*)",
    "sum(bytes) >= 20000 OR min(srcport) < 1024",
    # one DISTINCT value, with NULLs (dstport), beside partials of every merge
    "count(DISTINCT dstport) * 1000000 + sum(DISTINCT dstport) * 1000 + min(bytes) "
    "+ max(packets) + count(*) FILTER (WHERE protocol = 6)",
])
def test_partials_merge_to_the_expression_over_records(expression: str) -> None:
    """Partial rows per (key, arbitrary chunk of the records), merged, give the expression
    computed over the records of each key at once."""
    partials = split(expression)
    assert partials is not None
    rng = random.Random(3)
    con = duckdb.connect()
    con.execute("CREATE TABLE r (k INTEGER, chunk INTEGER, dstport INTEGER, dstaddr VARCHAR, "
                "srcport INTEGER, protocol INTEGER, action VARCHAR, packets BIGINT, "
                "bytes BIGINT)")
    con.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        (rng.randrange(20), rng.randrange(4), rng.choice([22, 80, 443, None]),
         f"10.0.0.{rng.randrange(6)}", rng.randrange(1000, 1100), rng.choice([6, 17]),
         rng.choice(["ACCEPT", "REJECT"]), rng.randrange(1, 50), rng.randrange(1, 9000))
        for _ in range(2000)])
    columns = ", ".join((*partials.distinct, *partials.columns))
    parts = f"(SELECT k, chunk, {columns} FROM r GROUP BY ALL)"
    merged = con.execute(f"SELECT k, {partials.merged} FROM {parts} GROUP BY k ORDER BY k"
                         ).fetchall()
    direct = con.execute(f"SELECT k, {expression} FROM r GROUP BY k ORDER BY k").fetchall()
    assert len(merged) == 20
    assert merged == direct
    rows, expression_over_rows = partials.distinct_first(parts, "k, ")
    merged_per_value_first = con.execute(
        f"SELECT k, {expression_over_rows} FROM {rows} GROUP BY k ORDER BY k").fetchall()
    assert merged_per_value_first == direct
    one_query = f"(SELECT k, {columns} FROM r GROUP BY ALL)"  # (one row per key and value)
    rows, expression_over_rows = partials.distinct_first(one_query, "k, ", unique=True)
    assert con.execute(f"SELECT k, {expression_over_rows} FROM {rows} GROUP BY k ORDER BY k"
                       ).fetchall() == direct


@pytest.mark.parametrize("expression", [
    "avg(bytes) > 10", "srcaddr LIKE '10.%' AND count(*) > 2",
    "count(*) > (SELECT 1)", "quantile_cont(bytes, 0.5) > 3", "sum(bytes ORDER BY start) > 1",
    "max(bytes, 2)[1] > 3",  # (the top two: the top two of partial tops are not a merge)
    "count(*) FILTER (WHERE dstport IN (SELECT port FROM ports)) > 2",
])
def test_what_does_not_merge_is_left_to_the_records(expression: str) -> None:
    assert split(expression) is None


def held_values(store: Store) -> tuple[int, int, dict[tuple[str, int], int]]:
    held = store.engine.state.held["test.mixed"]
    assert held.lo is not None
    assert_tables_are_the_held_ones(store)
    if not held.tables:
        return held.lo, held.hi, {}
    partials = held.partials
    rows = store.con.execute(f"SELECT _g0, _w, {partials.merged} FROM ({held.rows()}) "
                             f"WHERE _w >= {held.lo} AND _w < {held.hi} GROUP BY ALL").fetchall()
    return held.lo, held.hi, {(key, w): value for key, w, value in rows}


def assert_tables_are_the_held_ones(store: Store) -> None:
    """Every rule's temporary table is one it holds, none empty, at most MAX_TABLES a rule,
    and none is left once a commit is done (no staged table, no stray one)."""
    state = store.engine.state
    listed = {table.name: table.rows for held in state.held.values() for table in held.tables}
    assert all(held.staged is None for held in state.held.values())
    assert all(len(held.tables) <= MAX_TABLES for held in state.held.values())
    found = dict(store.con.execute(
        "SELECT table_name, estimated_size FROM duckdb_tables() "
        "WHERE temporary AND table_name LIKE 'rule_state_%'").fetchall())
    assert found.keys() == listed.keys()
    for name, rows in listed.items():
        assert rows > 0
        assert store.con.execute(f"SELECT count(*) FROM {name}").fetchall() == [(rows,)]


def record_values(store: Store, lo: int, hi: int) -> dict[tuple[str, int], int]:
    """The definition: the rule's expression over the stored records of each window."""
    rows = store.con.execute(
        f"SELECT srcaddr, start // {WINDOW} * {WINDOW} AS w, {VALUE} FROM flows "
        f"WHERE log_status = 'OK' AND srcaddr IS NOT NULL AND start >= {lo} AND start < {hi} "
        "GROUP BY ALL").fetchall()
    return {(key, w): value for key, w, value in rows}


# A time well after the scenarios' records, for tests that place their own
LATER = scenarios.START // 300 * 300 + 30_000


def record(source: str, t: int) -> str:
    """One flow from ``source`` to a web server at time ``t``."""
    return scenarios.line(scenarios.APP[0], source, "10.0.0.5", 40000, 443, 6, 1, 80, t)


def store_with(tmp_path: Path, rules: Path) -> Store:
    """The store of ``tmp_path / "state"`` with the rules of ``rules`` only."""
    (tmp_path / "state").mkdir(exist_ok=True)
    return Store(tmp_path / "state", engine=load_engine([rules], default_rules=False))


def test_held_windows_follow_commits_late_objects_replacement_and_retention(
        tmp_path: Path) -> None:
    (tmp_path / "mixed.toml").write_text(RULE)
    engine = load_engine([tmp_path / "mixed.toml"], default_rules=False)
    lines = scenarios.benign(4_000) + [
        line for scenario in scenarios.detections() for line in scenario.lines]
    lines.sort(key=lambda text: int(text.split()[10]))
    # the second of the three hours arrives last: a late object, within the span kept
    hour = range(scenarios.START + 3600, scenarios.START + 7200)
    late = [line for line in lines if int(line.split()[10]) in hour]
    rest = [line for line in lines if int(line.split()[10]) not in hour]
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=engine)
    try:
        for n in range(8):
            store.commit([flows(f"part-{n}", rest[n::8])])
            lo, hi, held = held_values(store)
            assert held == record_values(store, lo, hi)
        first_lo = lo

        store.commit([flows("late", late)])  # the range held grows back to its hour
        lo, hi, held = held_values(store)
        assert lo < first_lo
        assert lo <= hour.start
        assert held == record_values(store, lo, hi)
        assert len(held) > 50

        store.commit([flows("late", late[::2], replaces=True)])  # replaced: dropped
        assert store.engine.state.held["test.mixed"].lo is None
        assert_tables_are_the_held_ones(store)
        store.commit([flows("late-2", late[1::2][-5:])])  # filled again from the segments
        lo, hi, held = held_values(store)
        assert lo < hour.stop
        assert held == record_values(store, lo, hi)

        # retention drops the segments older than the cutoff: their windows go too
        cutoff = int(store.con.execute("SELECT max(max_end) FROM segments").fetchall()[0][0])
        later = [scenarios.line(*scenarios.APP, "10.0.0.2", 40000, 53, 17, 1, 80, cutoff + 900)]
        store.commit([flows("later", later)])
        store.prune(0, date.today(), now=cutoff + 1)
        lo, hi, held = held_values(store)
        assert lo > cutoff
        assert held == record_values(store, lo, hi)
        assert held == {("10.0.2.45", (cutoff + 900) // WINDOW * WINDOW): 1000 + 1 + 80 % 7}
    finally:
        store.close()


def test_a_rule_holds_at_most_max_tables_however_its_range_grows(tmp_path: Path) -> None:
    """Found by review: a range that grows at both ends adds tables from the segments as
    well as each commit's own, and one merge per commit let their number grow past
    MAX_TABLES (empty ones too). Here one object lies ahead of the rest, then the store
    restarts and commits creep forward two minutes at a time."""
    rules = tmp_path / "mixed.toml"
    rules.write_text(RULE)
    first = store_with(tmp_path, rules)
    first.commit([flows("ahead", [record("10.9.9.9", LATER + 3000)])])
    first.close()
    restarted = store_with(tmp_path, rules)
    try:
        for n in range(3 * MAX_TABLES):
            restarted.commit([flows(f"o{n}", [record("10.9.9.1", LATER + 120 * n + 10)])])
            lo, hi, held = held_values(restarted)  # (at most MAX_TABLES, none empty)
            assert held == record_values(restarted, lo, hi)
    finally:
        restarted.close()


def test_new_data_after_a_quiet_spell_restarts_what_is_held(tmp_path: Path) -> None:
    """Found by review: the range held could end up empty and inverted (lo > hi) after a
    commit far after it, and a later commit then read one span of the segments twice,
    counting its records twice. Here three records of X in one window must raise the
    `count(*) = 3` alert, however the commits before came."""
    rules = tmp_path / "eq.toml"
    rules.write_text('''
[[rule]]
id = "t.eq"
level = 5
title = "eq {srcaddr}"
source = "vpcflow"
group_by = ["srcaddr"]
window = "5m"
having = "count(*) = 3"
''')
    x, y = "10.9.9.1", "10.9.9.2"
    h = LATER
    first = store_with(tmp_path, rules)
    first.commit([flows("o1", [record(x, h + 10), record(x, h + 20)])])
    first.close()
    restarted = store_with(tmp_path, rules)  # (nothing held: a flow ends after h, say the segments)
    try:
        for name, lines in (("o2", [record(y, h - 290)]), ("o3", [record(y, h + 7210)]),
                            ("o4", [record(y, h - 270), record(x, h + 30)])):
            restarted.commit([flows(name, lines)])
            held = restarted.engine.state.held["t.eq"]
            assert held.lo is None or held.lo <= held.hi
        alerts = restarted.con.execute("SELECT srcaddr, count FROM alerts").fetchall()
    finally:
        restarted.close()
    assert (x, 3) in alerts


@pytest.mark.parametrize("failing", ["the checks", "the segment write"])
def test_rows_of_a_failed_commit_are_never_held(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                failing: str) -> None:
    """Found by review: a commit whose rule evaluation failed after staging left its rows
    staged, and the next commit without records (a skipped object) took them as its own.
    The segment is written while the rules run: its failure comes after they staged."""
    import core.rules.engine as engine_module
    import core.store.segments as segments_module

    (tmp_path / "mixed.toml").write_text(RULE)
    lines = scenarios.benign(2_000)
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state",
                  engine=load_engine([tmp_path / "mixed.toml"], default_rules=False))
    try:
        store.commit([flows("a", lines[::2])])

        def broken(*_: object) -> list[bool]:
            raise RuntimeError("a bug in the checks")

        with monkeypatch.context() as patch:
            if failing == "the checks":
                patch.setattr(engine_module, "_fire", broken)
            else:
                patch.setattr(segments_module, "write_segment", broken)
            with pytest.raises(RuntimeError):
                store.commit([flows("b", lines[1::2])])
        skipped = ObjectResult(ObjectRef("b", "other.txt", "etag", 1, Kind.TEXT),
                               Status.SKIPPED)
        store.commit([skipped])
        lo, hi, held = held_values(store)
        assert held == record_values(store, lo, hi)
        assert store.con.execute("SELECT count(*) FROM flows").fetchall() == [(1000,)]
    finally:
        store.close()


@pytest.mark.parametrize("aggregate_first", [False, True], ids=["joining first",
                                                                 "aggregating first"])
def test_both_forms_of_a_held_check_fire_only_for_a_touched_window(
        tmp_path: Path, aggregate_first: bool) -> None:
    """A check over partial rows (``WindowedRule.check_parts``) asks: does a window the new
    records touch fire? Written either way (the held rows joined to the touched keys first,
    or the firing windows found first), a window that fires but is not touched, a touched
    one that does not fire, and records without a key must all answer no (found by review:
    the detection tests could not tell a check that fires too often)."""
    (tmp_path / "scan.toml").write_text(
        '[[rule]]\nid = "test.scan"\nlevel = 5\ntitle = "{srcaddr}"\nsource = "vpcflow"\n'
        'where = "log_status = \'OK\'"\ngroup_by = ["srcaddr", "dstaddr"]\nwindow = "5m"\n'
        'having = "count(DISTINCT dstport) >= 3"\n')
    [sql] = load_engine([tmp_path / "scan.toml"], default_rules=False).sql
    partials = split(sql.rule.having)
    assert partials is not None
    t = scenarios.START // WINDOW * WINDOW

    def probe(src: str, dst: str, port: int) -> str:
        return scenarios.line(*scenarios.APP[:1], src, dst, 40000, port, 6, 1, 40, t + 10)

    held = [probe("198.51.100.1", "10.0.2.45", p) for p in (22, 23)]  # (two ports so far)
    held += [probe("198.51.100.2", "10.0.2.45", p) for p in (22, 23, 25)]  # (fires, untouched)
    con = duckdb.connect()

    def fires(new: list[str]) -> bool:
        for name, lines in (("held_flows", held), ("new_flows", new)):
            con.register(name, parse_text(scenarios.text(lines)).table)
        con.execute(f"CREATE OR REPLACE TABLE held AS {sql.partial_rows('held_flows', partials)}")
        con.execute(f"CREATE OR REPLACE TABLE staged AS {sql.partial_rows('new_flows', partials)}")
        parts = "(SELECT * FROM staged UNION ALL BY NAME SELECT * FROM held)"
        check = sql.check_parts(parts, "staged", partials, aggregate_first)
        return bool(con.execute(f"SELECT EXISTS ({check})").fetchall()[0][0])

    assert fires([probe("198.51.100.1", "10.0.2.45", 25)])  # (its third port)
    assert not fires([probe("198.51.100.1", "10.0.2.45", 23)])  # (touched, two ports)
    assert not fires([probe("-", "10.0.2.45", p) for p in (80, 81, 82)])  # (no key)
