"""The demo runs the real collector on its embedded S3 and shows the scripted incidents."""

from __future__ import annotations

from pathlib import Path

from core.store import Store
from tui.demo import run_demo
from tui.demo_traffic import EXFIL_DEST, EXFIL_HOST, SCANNER


def test_demo_collects_history_incidents_and_cloudtrail(tmp_path: Path) -> None:
    assert run_demo(polls=2, state_dir=tmp_path / "state", pause=0) == 0
    store = Store(tmp_path / "state", read_only=True)
    con = store.con
    try:
        top = con.execute(
            "SELECT srcaddr, dstaddr FROM flows GROUP BY ALL ORDER BY sum(bytes) DESC LIMIT 1"
        ).fetchone()
        scanned = con.execute(
            "SELECT count(DISTINCT dstport) FROM flows WHERE srcaddr = ?", [SCANNER]
        ).fetchone()
        events = con.execute("SELECT event_name, error_code FROM cloudtrail").fetchall()
        skipdata = con.execute("SELECT count(*) FROM flows WHERE log_status='SKIPDATA'").fetchone()
        accounts = con.execute("SELECT count(DISTINCT account_id) FROM flows").fetchone()
        rules = {row[0] for row in con.execute("SELECT rule_id FROM alerts WHERE level >= 7")
                 .fetchall()}
        [(first, last)] = con.execute("SELECT min(start), max(start) FROM flows").fetchall()
        # as AWS logs them: a request and its reply, on each of our interfaces at the ends
        [(requests, replies)] = con.execute(
            "SELECT count(*) FILTER (WHERE dstaddr = '10.0.1.10' AND dstport = 443 AND "
            "action = 'ACCEPT'), count(*) FILTER (WHERE srcaddr = '10.0.1.10' AND srcport = 443)"
            " FROM flows").fetchall()
        by_end = dict(con.execute(
            "SELECT interface_id = 'eni-0a1b2c3d4e5f60003', count(*) FROM flows "
            "WHERE dstaddr = '10.0.2.20' AND dstport = 5432 GROUP BY 1").fetchall())
    finally:
        store.close()
    assert top == (EXFIL_HOST, EXFIL_DEST)
    assert scanned == (128,)
    assert sorted(events, key=str) == sorted([("CreateVpc", None), ("DeleteFlowLogs", None),
                                              ("CreateVpc", "Client.UnauthorizedOperation")],
                                             key=str)
    assert skipdata == (1,)
    assert accounts == (2,)
    assert last - first >= 23.5 * 3600  # a day of history: a baseline for rewind and peaks
    assert requests == replies > 1000
    assert by_end[True] == by_end[False] > 1000  # the database's and its clients' records
    # the scripted incidents, as a newcomer sees them
    assert rules >= {"vpc.portscan", "vpc.exfiltration", "vpc.sensitive_port_from_internet",
                     "vpc.skipdata", "cloudtrail.create_vpc_denied",
                     "cloudtrail.delete_flow_logs"}
