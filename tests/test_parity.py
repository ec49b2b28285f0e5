"""The Wazuh-parity alerts are derived from the flows when read: the same rows the stored
parity rules gave, for any range; an older store is upgraded; watch prints them per commit."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path
from typing import Any

import pytest

from core.alerts import alert_documents, recent_alerts
from core.rules import load_engine
from core.scan import scan
from core.store import CommitStats, Store, StoreError
from tests import scenarios
from tests.conftest import assert_summary_is_the_flows

FIXTURES = Path(__file__).parent / "fixtures"
# Columns a stored alert had in schema 1, and that a derived one must give alike (created,
# updated and revision are when it was written: a derived alert has none).
SCHEMA_1_FIGURES = ("id", "rule_id", "level", "title", "source", "window_start", "first_seen",
                    "last_seen", "count", "bytes", "packets", "srcaddr", "dstaddr", "dstport",
                    "protocol", "mitre", "wazuh_id", "objects", "object_count", "group")


def old_store(tmp_path: Path) -> Path:
    """A store written by vpcwatch at commit c646e89 (schema 1, parity alerts stored):
    ``vpcwatch scan`` of 300 benign flows, a port scan and two CloudTrail events; see
    fixtures/README.md."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with tarfile.open(FIXTURES / "store-v1.tar.gz") as archive:
        archive.extractall(state, filter="data")
    return state


def figures(documents: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps({k: d[k] for k in SCHEMA_1_FIGURES}) for d in documents)


def test_a_store_of_schema_1_is_upgraded_and_derives_what_it_stored(tmp_path: Path) -> None:
    state = old_store(tmp_path)
    with pytest.raises(StoreError, match="older vpcwatch"):  # reading alone cannot upgrade
        Store(state, read_only=True)
    store = Store(state, engine=load_engine([]))
    try:
        assert store.con.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                 ).fetchall() == [("3",)]
        assert_summary_is_the_flows(store.con)  # its segments were summarised
        stored = store.con.execute("SELECT rule_id FROM alerts ORDER BY 1").fetchall()
        assert stored == [("cloudtrail.create_vpc",), ("cloudtrail.create_vpc_denied",),
                          ("vpc.portscan",)]  # detections stay, parity rows left
        now = alert_documents(recent_alerts(store, None, 0))
    finally:
        store.close()
    # what `vpcwatch alerts --json --min-level 0` printed from that store at c646e89
    before = [json.loads(line) for line in
              (FIXTURES / "store-v1-alerts.jsonl").read_text().splitlines()]
    assert len(before) == 391
    assert figures(now) == figures(before)
    assert [d["id"] for d in now] == [d["id"] for d in before]  # the same order
    assert {d["derived"] for d in now if d["rule_id"].startswith("vpc.flow.")} == {True}
    Store(state, read_only=True).close()  # upgraded: readable now (it raised before)


def scanned(tmp_path: Path, files: dict[str, list[str]]) -> Store:
    """A store (default rules) with ``files`` scanned in order, one commit each."""
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=load_engine([]))
    for name, lines in files.items():
        (tmp_path / name).write_bytes(scenarios.text(lines))
        scan([tmp_path / name], store, 2**30)
    return store


def test_any_range_gives_whole_windows_with_the_figures_of_all_their_flows(tmp_path: Path
                                                                          ) -> None:
    lines = scenarios.benign(20_000)
    store = scanned(tmp_path, {"a.log": lines[::2], "b.log": lines[1::2]})
    try:
        everything = recent_alerts(store, None, 3).to_pylist()
        ends = sorted({a["last_seen"] for a in everything})
        for since in (ends[0], ends[len(ends) // 3], ends[-1], ends[-1] + 1):
            part = recent_alerts(store, since, 3).to_pylist()
            assert part == [a for a in everything if a["last_seen"] >= since]
        assert recent_alerts(store, None, 4).to_pylist() == [
            a for a in everything if a["level"] >= 4]
        assert recent_alerts(store, None, 5).num_rows == 0  # no detection in benign traffic
    finally:
        store.close()
    accepted = scenarios.parity_groups(lines, "ACCEPT")
    parity = [a for a in everything if a["rule_id"] == "vpc.flow.accept"]
    assert sorted(a["count"] for a in parity) == sorted(accepted.values())


def test_the_command_line_prints_every_alert_in_order_a_batch_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vpcwatch alerts` reads its rows a batch at a time (all at once, a dense day's
    millions of parity alerts took more memory than the host had): as many batches as it
    takes, each alert once, in the order of the whole table."""
    import core.alerts
    import tui.output
    from tui.cli import main

    found = [text for case in scenarios.detections() for text in case.lines]
    store = scanned(tmp_path, {"a.log": scenarios.benign(2_000), "d.log": found})
    try:
        whole = alert_documents(recent_alerts(store, None, 3))
        read = core.alerts.alert_batches(store, None, 3)  # (its table goes, read or not)
        next(read)
        read.close()
        assert store.con.sql("SELECT count(*) FROM duckdb_tables() WHERE temporary AND "
                             "table_name = 'alerts_printed'").fetchall() == [(0,)]
    finally:
        store.close()
    monkeypatch.setattr(core.alerts, "BATCH_ROWS", 7)
    assert len(whole) > 10 * 7  # (many batches)
    assert {a["derived"] for a in whole} == {True, False}  # (stored among derived, sorted)
    made: list[int] = []  # the alerts made Python objects at each go

    def documents(rows: Any) -> list[dict[str, Any]]:
        made.append(rows.num_rows)
        return alert_documents(rows)

    monkeypatch.setattr(tui.output, "alert_documents", documents)
    state = str(tmp_path / "state")
    assert main(["alerts", "--state-dir", state, "--min-level", "3", "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == whole
    assert max(made) == 7 and sum(made) == len(whole)
    assert main(["alerts", "--state-dir", state, "--min-level", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines] == [a["rule_id"] for a in whole]
    assert [line.split()[0] for line in lines] == [a["last_seen"] for a in whole]


def test_a_commit_reports_the_parity_alerts_of_the_windows_it_touched(tmp_path: Path) -> None:
    """What `watch --headless --min-level 3` prints: after each commit, every parity alert
    whose window the commit's flows fall in, with its figures so far."""
    lines = scenarios.benign(4_000)
    coin = random.Random(7)  # both commits fall in the same windows, often on the same keys
    halves: list[list[str]] = [[], []]
    for text in lines:
        halves[coin.random() < 0.5].append(text)
    first, second = halves
    store = scanned(tmp_path, {"first.log": first})
    store.parity_level = 3
    try:
        (tmp_path / "second.log").write_bytes(scenarios.text(second))
        reported: list[CommitStats] = []
        scan([tmp_path / "second.log"], store, 2**30, reported.append)
        [stats] = reported
        everything = {a["id"]: a for a in recent_alerts(store, None, 3).to_pylist()}
    finally:
        store.close()
    assert stats.derived is not None
    rows = stats.derived.to_pylist()
    in_second = {(*key, action): n for action in ("ACCEPT", "REJECT")
                 for key, n in scenarios.parity_groups(second, action).items()}
    assert len(rows) == len(in_second)
    keys = {row["id"]: (row["srcaddr"], row["dstaddr"], json.loads(row["group_key"])["port"],
                        str(row["protocol"]), row["window_start"],
                        json.loads(row["group_key"])["action"]) for row in rows}
    assert set(keys.values()) == set(in_second)
    for row in rows:  # figures so far: the flows of both commits in that window
        assert row == everything[row["id"]]
    every = {(*key, action): n for action in ("ACCEPT", "REJECT")
             for key, n in scenarios.parity_groups(lines, action).items()}
    assert {keys[row["id"]]: row["count"] for row in rows} == {k: every[k] for k in in_second}
    assert sum(row["count"] for row in rows) > sum(in_second.values())


def test_an_alerts_objects_are_its_first_and_last_as_json_text(tmp_path: Path) -> None:
    """``objects`` lists the first and last object of the alert's flows, as JSON text
    (written by concatenation: a key with quotes and a backslash must come back whole)."""
    lines = scenarios.benign(2_000)
    names = ['a "quoted" \\ name.log', "b.log"]
    store = scanned(tmp_path, {names[0]: lines, names[1]: lines[:1000]})  # (copies: 2 flows)
    try:
        documents = alert_documents(recent_alerts(store, None, 3))
    finally:
        store.close()
    keys = sorted(str(tmp_path / name) for name in names)
    both = [d["objects"] for d in documents if d["object_count"] == 2]
    one = [d["objects"] for d in documents if d["object_count"] == 1]
    assert both and all(objects == keys for objects in both)
    assert one and all(objects == [str(tmp_path / names[0])] for objects in one)


def test_an_alert_time_no_date_can_show_is_printed_as_its_number() -> None:
    """A store written before such records were bad lines may hold a record from the year
    33658 and its alert: `vpcwatch alerts` printed nothing then ("year 33658 is out of
    range"), for every alert of the store."""
    import pyarrow as pa

    far, now = 999_999_999_999, 1_764_000_000
    rows = pa.table({"id": ["a"], "window_start": [now], "first_seen": [now],
                     "last_seen": [far], "mitre": ["[]"], "objects": ["[]"],
                     "group_key": ["{}"], "details": [None]})
    [document] = alert_documents(rows)
    assert (document["first_seen"], document["last_seen"]) == ("2025-11-24T16:00:00Z",
                                                                 "999999999999")
