"""Helpers for the detection tests: scanning files with the default rules, the alerts that come
out (stored, and the parity alerts derived from the flows), and a CloudTrail of VPC calls with
the rules each must raise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.alerts import recent_alerts
from core.rules import load_engine
from core.scan import scan
from core.store import Store
from tests import flowgen

PARITY = ("vpc.flow.accept", "vpc.flow.reject")
FIXTURES = Path(__file__).parent / "fixtures" / "public"


def scan_alerts(tmp_path: Path, files: dict[str, bytes], blocklist: str | None = None,
                rules: list[Path] | None = None) -> list[dict[str, Any]]:
    """Scan ``files`` (in order, one commit each) with the default rules (and ``rules``);
    all stored alerts."""
    block = []
    if blocklist is not None:
        (tmp_path / "blocklist.txt").write_text(blocklist)
        block = [tmp_path / "blocklist.txt"]
    engine = load_engine(rules or [], True, block)
    assert engine.errors == []
    (tmp_path / "state").mkdir(parents=True, exist_ok=True)
    store = Store(tmp_path / "state", engine=engine)
    try:
        for name, body in files.items():
            path = tmp_path / name
            path.write_bytes(body)
            scan([path], store, 2**30)
        return [dict(zip([d[0] for d in store.con.description or []], row, strict=True))
                for row in store.con.execute("SELECT * FROM alerts").fetchall()]
    finally:
        store.close()


def derived(state: Path, min_level: int = 3) -> list[dict[str, Any]]:
    """The parity alerts derived from the flows of the store in ``state``."""
    store = Store(state, read_only=True)
    try:
        return [a for a in recent_alerts(store, None, min_level).to_pylist() if a["derived"]]
    finally:
        store.close()


def keyed(alerts: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(a["rule_id"], a["group_key"]): a for a in alerts}


def group_json(group: dict[str, object]) -> str:
    return json.dumps(group, separators=(",", ":"))


SG_RULE_V4 = {"GroupId": "sg-2", "SecurityGroupRule": [{"SecurityGroupRuleId": "sgr-1",
              "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389,
                                    "CidrIpv4": "208.236.235.254/0"}}]}
ROUTE_V6 = {"routeTableId": "rtb-1", "destinationIpv6CidrBlock": "::/0", "gatewayId": "igw-1"}
TRAIL = [
    ("CreateVpc", None, {"cidrBlock": "10.9.0.0/16"}, ["cloudtrail.create_vpc"]),
    ("CreateVpc", "Client.UnauthorizedOperation", {"cidrBlock": "10.9.0.0/16"},
     ["cloudtrail.create_vpc_denied"]),
    ("DeleteFlowLogs", None, {}, ["cloudtrail.delete_flow_logs"]),
    ("DeleteVpc", None, {}, ["cloudtrail.delete_vpc"]),
    ("ModifyVpcAttribute", None, {}, ["cloudtrail.modify_vpc_attribute"]),
    ("AttachInternetGateway", None, {}, ["cloudtrail.internet_gateway_attached"]),
    ("CreateRoute", None, {"destinationCidrBlock": "0.0.0.0/0"},
     ["cloudtrail.vpc_api_call", "cloudtrail.route_to_internet"]),
    ("CreateRoute", None, {"destinationCidrBlock": "10.1.0.0/16"}, ["cloudtrail.vpc_api_call"]),
    ("AuthorizeSecurityGroupIngress", None,
     {"groupId": "sg-1", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22,
      "toPort": 22, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}},
     ["cloudtrail.vpc_api_call", "cloudtrail.security_group_open_to_world"]),
    ("AuthorizeSecurityGroupIngress", None,
     {"groupId": "sg-1", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22,
      "toPort": 22, "ipv6Ranges": {"items": [{"cidrIpv6": "::/0"}]}}]}},
     ["cloudtrail.vpc_api_call", "cloudtrail.security_group_open_to_world"]),
    ("AuthorizeSecurityGroupIngress", None, {"groupId": "sg-1", "cidrIp": "10.0.0.0/8"},
     ["cloudtrail.vpc_api_call"]),
    ("CreateNetworkAclEntry", None, {}, ["cloudtrail.network_acl_change"]),
    ("CreateSubnet", None, {}, ["cloudtrail.vpc_api_call"]),
    ("CreateSubnet", "AccessDenied", {}, ["cloudtrail.vpc_api_denied"]),
    ("RunInstances", None, {}, []),
    # any /0 is the whole internet, in every shape and letter case the APIs write
    ("ModifySecurityGroupRules", None, SG_RULE_V4,
     ["cloudtrail.vpc_api_call", "cloudtrail.security_group_open_to_world"]),
    ("ModifySecurityGroupRules", None, {"groupid": "sg-3", "securitygrouprule": [
        {"securitygrouprule": {"ipprotocol": "-1", "cidripv6": "::/0"}}]},
     ["cloudtrail.vpc_api_call", "cloudtrail.security_group_open_to_world"]),
    ("AuthorizeSecurityGroupEgress", None, {"groupId": "sg-4", "ipPermissions": {"items": [
        {"ipProtocol": "udp", "fromPort": 53, "toPort": 53,
         "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}},
     ["cloudtrail.vpc_api_call", "cloudtrail.security_group_open_to_world"]),
    ("ReplaceRoute", None, ROUTE_V6, ["cloudtrail.vpc_api_call", "cloudtrail.route_to_internet"]),
    # near misses: a narrower range, a refused call
    ("ModifySecurityGroupRules", None, {"GroupId": "sg-2", "SecurityGroupRule": [
        {"SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                               "CidrIpv4": "10.0.0.0/8"}}]}, ["cloudtrail.vpc_api_call"]),
    ("ReplaceRoute", None, {"routeTableId": "rtb-1", "destinationCidrBlock": "10.2.0.0/16",
                            "natGatewayId": "nat-1"}, ["cloudtrail.vpc_api_call"]),
    ("ReplaceRoute", "Client.UnauthorizedOperation", ROUTE_V6, ["cloudtrail.vpc_api_denied"]),
    ("DeleteFlowLogs", "Client.UnauthorizedOperation",
     {"DeleteFlowLogsRequest": {"FlowLogId": {"content": "fl-0123abcd"}}},
     ["cloudtrail.vpc_api_denied"]),
    ("AuthorizeSecurityGroupIngress", "Client.UnauthorizedOperation",
     {"groupId": "sg-1", "cidrIp": "0.0.0.0/0"}, ["cloudtrail.vpc_api_denied"]),
    # refused changes are refusals, not changes; reading is not a change
    ("DeleteVpc", "Client.UnauthorizedOperation", {}, ["cloudtrail.vpc_api_denied"]),
    ("ModifyVpcAttribute", "Client.UnauthorizedOperation", {}, ["cloudtrail.vpc_api_denied"]),
    ("AttachInternetGateway", "Client.UnauthorizedOperation", {}, ["cloudtrail.vpc_api_denied"]),
    ("DeleteNetworkAclEntry", "Client.UnauthorizedOperation", {}, ["cloudtrail.vpc_api_denied"]),
    ("DescribeVpcs", None, {}, []),
]


def trail_records() -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    records, expected = [], {}
    for n, (name, error, params, rules) in enumerate(TRAIL):
        record = flowgen.trail_event(name, event_id=f"ev-{n:02d}", error=error)
        record["requestParameters"] = params
        records.append(record)
        expected[f"ev-{n:02d}"] = sorted(rules)
    return records, expected
