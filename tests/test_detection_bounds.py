"""What the default ruleset costs in alert rows and how its windows add up: a flood stays a
bounded number of rows, commit by commit equals all at once, and the threshold check skips only
windows that raise nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from core.rules import load_engine, window_state
from core.rules.windowed import WindowedRule
from core.scan import scan
from core.store import Store
from tests import scenarios
from tests.ruletools import (
    derived,
    scan_alerts,
)
from tests.scenarios import WINDOW_START


def test_a_flood_of_a_million_accepted_flows_gives_a_bounded_number_of_alert_rows(
    tmp_path: Path,
) -> None:
    clients = [f"10.1.0.{n}" for n in range(1, 21)]
    servers = ["10.2.0.1", "10.2.0.2", "10.2.0.3"]
    lines = [scenarios.line("eni-flood", clients[i % 20], servers[i % 3], 40000 + i % 20000,
                            443, 6, 3, 900, WINDOW_START + i % 1200)
             for i in range(1_000_000)]
    alerts = scan_alerts(tmp_path, {"flood.log": scenarios.text(lines)})
    assert alerts == []  # no scan, no spike, no egress; parity alerts are not stored
    groups = scenarios.parity_groups(lines, "ACCEPT")
    assert len(groups) == 20 * 3 * 2  # every client-server pair, in two 10-minute windows
    parity = derived(tmp_path / "state")
    assert len(parity) == len(groups)
    assert sum(a["count"] for a in parity) == 1_000_000


def test_a_spoofed_scan_from_a_million_sources_leaves_a_bounded_number_of_alert_rows(
    tmp_path: Path,
) -> None:
    """Keys an attacker chooses must not choose the size of the alerts table: 1,000,000
    REJECT flows, each from its own (spoofed) source, to the ports of a few hosts."""
    hosts = ["10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.4"]
    lines = [scenarios.line("eni-edge", f"{(i >> 16) + 11}.{(i >> 8) & 255}.{i & 255}.7",
                            hosts[i % 4], 1024 + i % 60000, i % 1024, 6, 1, 40,
                            WINDOW_START + i % 3600, action="REJECT")
             for i in range(1_000_000)]
    assert len({line.split()[3] for line in lines}) == 1_000_000
    alerts = scan_alerts(tmp_path, {"spoofed.log": scenarios.text(lines)})
    assert len(alerts) <= 1_000


def test_alerts_added_commit_by_commit_equal_alerts_computed_at_once(tmp_path: Path) -> None:
    """Alerts updated commit by commit (windows that span commits; an additive rule adds
    each commit's records to the stored alert instead of rereading the window) must be what
    one computation over everything gives."""
    lines = scenarios.benign(6_000) + [
        line for scenario in scenarios.detections() for line in scenario.lines]
    lines.sort(key=lambda text: int(text.split()[10]))
    parts = {f"part{n:02d}.log": scenarios.text(lines[n::12]) for n in range(12)}
    fields = ("id", "rule_id", "title", "count", "bytes", "packets", "first_seen", "last_seen",
              "srcaddr", "dstaddr", "dstport", "protocol", "objects", "object_count")

    def rows(alerts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        def value(alert: dict[str, Any], name: str) -> Any:  # files differ by folder only
            if name == "objects":
                return [Path(key).name for key in json.loads(alert[name])]
            return alert[name]

        return sorted((tuple(value(a, f) for f in fields) for a in alerts), key=str)

    additive = tmp_path / "additive.toml"
    additive.write_text('[[rule]]\nid = "custom.rejects"\nlevel = 5\ntitle = "{srcaddr} {count}"'
                        '\nsource = "vpcflow"\nwhere = "action = \'REJECT\'"\n'
                        'group_by = ["srcaddr"]\nwindow = "10m"\n')
    stepwise = scan_alerts(tmp_path / "steps", parts, rules=[additive])  # a commit per part
    (tmp_path / "once").mkdir()
    engine = load_engine([additive])
    store = Store(tmp_path / "once", engine=engine)
    try:
        paths = []
        for name, body in parts.items():
            (tmp_path / "once" / name).write_bytes(body)
            paths.append(tmp_path / "once" / name)
        scan(paths, store, 2**30)  # every part in one commit
        columns = [d[0] for d in store.con.execute("SELECT * FROM alerts LIMIT 0").description]
        at_once = [dict(zip(columns, row, strict=True))
                   for row in store.con.execute("SELECT * FROM alerts").fetchall()]
    finally:
        store.close()
    assert any(a["revision"] > 1 for a in stepwise if a["rule_id"] == "custom.rejects")
    assert any(a["revision"] > 1 for a in stepwise if a["rule_id"] == "vpc.portscan")
    assert rows(stepwise) == rows(at_once)


@pytest.mark.parametrize("share", [window_state.AGGREGATE_FIRST_SHARE, 0.0, math.inf],
                         ids=["as chosen", "aggregating first", "joining first"])
def test_the_threshold_check_skips_only_windows_that_raise_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, share: float) -> None:
    """A threshold or baseline rule first checks whether a touched window fires and
    describes it only then (docs/rules.md). Commit by commit over every scenario, the
    alerts must be those of the same rules describing every touched window, whichever way
    the check over held windows is written (``share``: 0 always aggregates first, infinity
    always joins first)."""
    lines = scenarios.benign(6_000) + [
        line for scenario in scenarios.detections() for line in scenario.lines]
    lines.sort(key=lambda text: int(text.split()[10]))
    parts = {f"part{n:02d}.log": scenarios.text(lines[n::12]) for n in range(12)}
    monkeypatch.setattr(window_state, "AGGREGATE_FIRST_SHARE", share)
    checked = scan_alerts(tmp_path / "checked", parts)
    monkeypatch.setattr(WindowedRule, "needs_check", property(lambda self: False))
    described = scan_alerts(tmp_path / "described", parts)

    def rows(alerts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((a["id"], a["title"], a["count"], a["bytes"], a["revision"])
                      for a in alerts)

    assert {a["rule_id"] for a in checked} >= {"vpc.portscan", "vpc.sweep", "vpc.exfiltration",
                                               "vpc.traffic_spike.interface"}
    assert rows(checked) == rows(described)


def test_counts_that_add_up_past_64_bits_are_stored_and_summed_at_the_largest(
        tmp_path: Path) -> None:
    """Found by an adversarial test: two records of 2^62 bytes (valid counts) in one minute
    and interface made the summary's sum overflow its BIGINT: the object was quarantined
    with all its records; across objects, the compaction that merged them failed every poll
    after. Sums are now held at 2^63-1."""
    from core.rules.sqlparts import BIGINT_MAX
    from core.store import Store
    from core.store.segments import COMPACT_AT

    big = 2**62
    header = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
              "packets bytes start end action log-status")
    line = ("2 123456789012 eni-1 10.0.0.{n} 10.0.0.200 1 2 6 1 {bytes} 1765000000 "
            "1765000030 ACCEPT OK")
    files = {f"o{n}.log": f"{header}\n{line.format(n=n, bytes=big)}\n".encode()
             for n in range(COMPACT_AT)}  # (as many segments as a compaction merges)
    files["two.log"] = (f"{header}\n{line.format(n=10, bytes=big)}\n"
                        f"{line.format(n=11, bytes=big)}\n").encode()
    scan_alerts(tmp_path, files)
    state = tmp_path / "state"
    store = Store(state)
    try:
        assert store.con.execute("SELECT status, count(*), sum(records) FROM objects "
                                 "GROUP BY ALL").fetchall() == [("done", COMPACT_AT + 1,
                                                                 COMPACT_AT + 2)]
        assert store.compact() > 0  # (the merge summarises all the records at once)
        assert store.con.execute("SELECT sum(bytes) FROM traffic_minutes").fetchall() == [
            (BIGINT_MAX,)]
        assert store.con.execute("SELECT count(*), sum(bytes) FROM flows").fetchall() == [
            (COMPACT_AT + 2, (COMPACT_AT + 2) * big)]
    finally:
        store.close()
    parity = [a for a in derived(state) if a["rule_id"] == "vpc.flow.accept"]
    assert len(parity) == COMPACT_AT + 2 and {a["bytes"] for a in parity} == {big}


def test_a_sum_held_at_the_largest_bigint_stays_null_when_null() -> None:
    """(A first version used DuckDB's least, which skips NULL: a SKIPDATA alert, which has
    no bytes, showed 8 EiB; the app's snapshot test caught it.)"""
    import duckdb

    from core.rules.sqlparts import BIGINT_MAX, as_bigint

    row = duckdb.sql(f"SELECT {as_bigint('NULL::HUGEINT')}, {as_bigint('(1::HUGEINT << 70)')}, "
                     f"{as_bigint('5::HUGEINT')}").fetchall()
    assert row == [(None, BIGINT_MAX, 5)]
