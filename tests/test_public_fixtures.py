"""AWS's own documented examples (tests/fixtures/public, origins in its README) through
``vpcwatch scan``: every record read or counted with a reason, the alerts they deserve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import query
from tui.cli import main

PUBLIC = Path(__file__).parent / "fixtures" / "public"
# file: (records or events stored, bad lines and why), counted by hand from the files
EXPECTED = {
    "aws-docs-vpcflow-default-v2.log": (7, {}),
    "aws-docs-vpcflow-tcp-flag-sequence-v3.log": (8, {}),
    # the page annotates two records with "#..." comments: not AWS's output, refused
    "aws-docs-vpcflow-nat-gateway-custom.log": (4, {"expected 6 fields, got 16": 1,
                                                   "expected 6 fields, got 17": 1}),
    "aws-docs-vpcflow-transit-gateway-vpc-side-v3.log": (4, {}),
    "aws-docs-vpcflow-traffic-path-v5.log": (2, {}),
    "aws-docs-cloudtrail-ec2-eventversion-1.0.json": (3, {}),
    "aws-docs-cloudtrail-iam-eventversion-1.0.json": (2, {}),
}


def test_every_public_example_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert sorted(p.name for p in PUBLIC.iterdir() if p.name != "README.md") == sorted(EXPECTED)
    state = tmp_path / "state"
    assert main(["scan", str(PUBLIC), "--state-dir", str(state), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads(lines[-1])
    assert summary["errors"] == [] and summary["objects"]["done"] == len(EXPECTED)
    assert summary["events"] == 5  # three EC2 and two IAM records, none with an eventID
    rows = query(state, "SELECT key, records, bad_reasons FROM objects")
    found = {Path(key).name: (records, json.loads(reasons or "{}"))
             for key, records, reasons in rows}
    assert found == EXPECTED
    # the one detection: the SKIPDATA record; the IPv6 SSH example stays within its VPC
    assert [json.loads(line)["rule_id"] for line in lines[:-1]] == ["vpc.skipdata"]
