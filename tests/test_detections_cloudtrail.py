"""The CloudTrail rules of the default ruleset: which VPC API calls raise which alert, with what
title, on events as CloudTrail writes them (tests/flowgen.py)."""

from __future__ import annotations

import json
from pathlib import Path

from core.rules import load_engine
from core.scan import scan
from core.store import Store
from tests import flowgen
from tests.ruletools import (
    FIXTURES,
    TRAIL,
    scan_alerts,
    trail_records,
)

# What the alerts say: the resource and the change (event index: rule, title)
TITLES = {
    0: ("cloudtrail.create_vpc", "VPC vpc-0abc (10.9.0.0/16) created by {user}"),
    1: ("cloudtrail.create_vpc_denied", "Unauthorized CreateVpc attempt by {user} "
                                        "(Client.UnauthorizedOperation): 10.9.0.0/16"),
    6: ("cloudtrail.route_to_internet", "Route to the whole internet (0.0.0.0/0 via -) in - by "
                                        "{user} (CreateRoute)"),
    8: ("cloudtrail.security_group_open_to_world", "Security group sg-1 opened to the whole "
        "internet: tcp ports 22-22 from 0.0.0.0/0 by {user} (AuthorizeSecurityGroupIngress)"),
    15: ("cloudtrail.security_group_open_to_world", "Security group sg-2 opened to the whole "
         "internet: tcp ports 3389-3389 from 208.236.235.254/0 by {user} "
         "(ModifySecurityGroupRules)"),
    16: ("cloudtrail.security_group_open_to_world", "Security group sg-3 opened to the whole "
         "internet: -1 ports - from ::/0 by {user} (ModifySecurityGroupRules)"),
    18: ("cloudtrail.route_to_internet", "Route to the whole internet (::/0 via igw-1) in rtb-1 "
                                         "by {user} (ReplaceRoute)"),
}


def test_cloudtrail_rules(tmp_path: Path) -> None:
    records, expected = trail_records()
    alerts = scan_alerts(tmp_path, {"t.json.gz": flowgen.trail_object(records)})
    raised: dict[str, list[str]] = {event: [] for event in expected}
    for alert in alerts:
        raised[json.loads(alert["group_key"])["event_id"]].append(alert["rule_id"])
    assert {event: sorted(rules) for event, rules in raised.items()} == expected
    denied = next(a for a in alerts if a["rule_id"] == "cloudtrail.create_vpc_denied")
    assert denied["level"] == 8 and denied["wazuh_id"] == 80203
    assert denied["srcaddr"] == "198.51.100.7"
    by_key = {(json.loads(a["group_key"])["event_id"], a["rule_id"]): a for a in alerts}
    user = "arn:aws:iam::123456789012:user/alice"
    for n, (rule, title) in TITLES.items():
        assert by_key[(f"ev-{n:02d}", rule)]["title"] == title.format(user=user)
    for (event, _), alert in by_key.items():  # every CloudTrail alert says where and what
        assert (alert["account_id"], alert["region"]) == ("123456789012", "us-east-1")
        assert alert["event_name"] == TRAIL[int(event[3:])][0]
    opened = json.loads(by_key[("ev-15", "cloudtrail.security_group_open_to_world")]["details"])
    assert opened == {"group": "sg-2", "protocol": "tcp", "ports": "3389-3389",
                      "cidr": "208.236.235.254/0"}


def test_cloudtrail_records_without_an_event_id_are_kept_once(tmp_path: Path) -> None:
    """AWS's own examples are eventVersion 1.0, without ``eventID``: each is stored, under a
    hash of the record, and a second delivery of it is recognised."""
    source = FIXTURES / "aws-docs-cloudtrail-ec2-eventversion-1.0.json"
    records = json.loads(source.read_text())["Records"]
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=load_engine([]))
    try:
        for name in ("first.json", "again.json"):
            (tmp_path / name).write_bytes(source.read_bytes())
            summary = scan([tmp_path / name], store, 2**30)
            assert summary.bad_lines == 0
        rows = store.con.execute("SELECT event_name, event_id FROM cloudtrail ORDER BY 1"
                                 ).fetchall()
    finally:
        store.close()
    assert [name for name, _ in rows] == sorted(r["eventName"] for r in records)
    assert len({event_id for _, event_id in rows}) == len(records) == 3


def test_an_event_delivered_twice_in_one_batch_raises_one_alert(tmp_path: Path) -> None:
    event = flowgen.trail_event("DeleteFlowLogs", event_id="twice")
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=load_engine([]))
    try:
        paths = []
        for name in ("a.json.gz", "b.json.gz"):
            (tmp_path / name).write_bytes(flowgen.trail_object([event]))
            paths.append(tmp_path / name)
        summary = scan(paths, store, 2**30)  # both files in one commit
        rows = store.con.execute("SELECT rule_id, count FROM alerts").fetchall()
    finally:
        store.close()
    assert (summary.events, summary.alerts) == (1, 1)
    assert rows == [("cloudtrail.delete_flow_logs", 1)]
