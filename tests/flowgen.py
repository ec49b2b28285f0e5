"""Test data: flow-log and CloudTrail objects, with a tiny reference parser of their own.

Nothing here imports vpcwatch: the expected figures a test checks come from this module
(what the generator wrote, or what the reference parser reads back), never from the code
under test.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

V2 = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
      "start end action log-status").split()
V3 = "vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr".split()
V4 = "region az-id sublocation-type sublocation-id".split()
V5 = "pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path".split()
V7 = ("ecs-cluster-arn ecs-cluster-name ecs-container-instance-arn ecs-container-instance-id "
      "ecs-container-id ecs-second-container-id ecs-service-name ecs-task-definition-arn "
      "ecs-task-arn ecs-task-id").split()
ALL_V5 = V2 + V3 + V4 + V5  # 29 fields
ALL_V8 = ALL_V5 + V7 + ["reject-reason"]  # 40 fields
TGW = ("version resource-type account-id tgw-id tgw-attachment-id tgw-src-vpc-account-id "
       "tgw-dst-vpc-account-id tgw-src-vpc-id tgw-dst-vpc-id tgw-src-subnet-id "
       "tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id tgw-dst-az-id "
       "tgw-pair-attachment-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
       "log-status type packets-lost-no-route packets-lost-blackhole packets-lost-mtu-exceeded "
       "packets-lost-ttl-expired tcp-flags region flow-direction pkt-src-aws-service "
       "pkt-dst-aws-service").split()
NAT6 = "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr".split()
CUSTOM = "srcaddr dstaddr bytes action start end interface-id dstport account-id log-status".split()

INTEGERS = {"version", "srcport", "dstport", "protocol", "tcp-flags", "traffic-path", "packets",
            "bytes", "start", "end", "packets-lost-no-route", "packets-lost-blackhole",
            "packets-lost-mtu-exceeded", "packets-lost-ttl-expired"}
NODATA_DASHES = {"srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes",
                 "action"}
BASE_TIME = int(datetime(2026, 11, 29, tzinfo=UTC).timestamp())


@dataclass
class FlowObject:
    """One generated flow-log object and what a correct reader must find in it."""

    fields: list[str]
    lines: list[str] = field(default_factory=list)
    records: int = 0
    bad_lines: int = 0
    total_bytes: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def text(self) -> bytes:
        return ("\n".join([" ".join(self.fields), *self.lines]) + "\n").encode()

    def gz(self) -> bytes:
        return gzip_bytes(self.text())


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def _ip(rng: random.Random, ipv6: bool) -> str:
    if ipv6:
        return f"2600:1f18:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _value(name: str, rng: random.Random, account: str, ipv6: bool, ms: bool, t: int) -> str:
    if name == "version":
        return "5"
    if name == "account-id":
        return account
    if name in ("srcaddr", "dstaddr", "pkt-srcaddr", "pkt-dstaddr"):
        return _ip(rng, ipv6)
    if name in ("srcport", "dstport"):
        return str(rng.choice([22, 53, 80, 443, 3306, rng.randrange(1024, 65536)]))
    if name == "protocol":
        return str(rng.choice([6, 17, 1]))
    if name == "packets":
        return str(rng.randrange(1, 500))
    if name == "bytes":
        return str(rng.randrange(40, 1_000_000))
    if name in ("start", "end"):
        value = t if name == "start" else t + 60
        return str(value * 1000 if ms else value)
    if name == "action":
        return rng.choice(["ACCEPT", "ACCEPT", "REJECT"])
    if name == "log-status":
        return "OK"
    if name in ("tcp-flags", "traffic-path"):
        return str(rng.choice([0, 1, 2, 3, 18, 19])) if name == "tcp-flags" else "1"
    if name.startswith("packets-lost"):
        return str(rng.randrange(0, 3))
    if name == "type":
        return "IPv6" if ipv6 else "IPv4"
    if name == "flow-direction":
        return rng.choice(["ingress", "egress"])
    if name == "reject-reason":
        return rng.choice(["-", "BPA"])
    if name == "region":
        return "us-east-1"
    return rng.choice(["-", f"{name}-{rng.randrange(1000)}"])


def flow_object(
    fields: Iterable[str],
    n: int,
    *,
    seed: int = 1,
    account: str = "123456789012",
    ipv6_every: int = 0,
    ms: bool = False,
    nodata: int = 0,
    skipdata: int = 0,
    start: int = BASE_TIME,
) -> FlowObject:
    """``n`` OK records, then ``nodata`` NODATA and ``skipdata`` SKIPDATA records."""
    rng = random.Random(seed)
    obj = FlowObject(list(fields))
    for i in range(n):
        ipv6 = bool(ipv6_every) and i % ipv6_every == 0
        values = [_value(f, rng, account, ipv6, ms, start + i % 600) for f in obj.fields]
        obj.lines.append(" ".join(values))
    for status, count in (("NODATA", nodata), ("SKIPDATA", skipdata)):
        for _ in range(count):
            values = []
            for f in obj.fields:
                if f == "log-status":
                    values.append(status)
                elif f in NODATA_DASHES:
                    values.append("-")
                else:
                    values.append(_value(f, rng, account, False, ms, start))
            obj.lines.append(" ".join(values))
    obj.records, obj.total_bytes, obj.statuses = _tally(obj.fields, obj.lines)
    return obj


def _tally(fields: list[str], lines: list[str]) -> tuple[int, int, dict[str, int]]:
    rows = reference_rows(fields, lines)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.get("log-status") or ""] = statuses.get(row.get("log-status") or "", 0) + 1
    return len(rows), sum(row.get("bytes") or 0 for row in rows), statuses


def reference_rows(fields: list[str], lines: Iterable[str]) -> list[dict[str, Any]]:
    """A deliberately naive parser: split on whitespace, '-' is None, integers converted,
    millisecond times divided by 1000; lines that do not fit or repeat the header are dropped."""
    rows = []
    for line in lines:
        words = line.split()
        if not words or words == fields or len(words) != len(fields):
            continue
        row: dict[str, Any] = {}
        try:
            for name, word in zip(fields, words, strict=True):
                if word == "-":
                    row[name] = None
                elif name in INTEGERS:
                    row[name] = int(word)
                    if name in ("start", "end") and row[name] > 2**31 - 1:
                        row[name] //= 1000
                else:
                    row[name] = word
        except ValueError:
            continue
        rows.append(row)
    return rows


def parquet_bytes(obj: FlowObject) -> bytes:
    """The object's records as a Parquet file (columns named as AWS's Parquet has them)."""
    rows = reference_rows(obj.fields, obj.lines)
    columns = {f.replace("-", "_"): [row[f] for row in rows] for f in obj.fields}
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def flow_key(prefix: str, account: str, region: str, day: datetime, n: int, ext: str = "log.gz",
             hourly: bool = False, hive: bool = False) -> str:
    """A key as AWS writes it, in the default, hourly or Hive layout."""
    name = (f"{account}_vpcflowlogs_{region}_fl-0{n:016x}_{day:%Y%m%dT%H%M}Z_"
            f"{uuid.UUID(int=n).hex[:8]}.{ext}")
    base = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
    if hive:
        folder = (f"aws-account-id={account}/aws-service=vpcflowlogs/aws-region={region}/"
                  f"year={day:%Y}/month={day:%m}/day={day:%d}/")
        if hourly:
            folder += f"hour={day:%H}/"
    else:
        folder = f"{account}/vpcflowlogs/{region}/{day:%Y/%m/%d}/"
        if hourly:
            folder += f"{day:%H}/"
    return base + folder + name


def trail_key(prefix: str, account: str, region: str, day: datetime, n: int,
              org: str | None = None) -> str:
    base = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
    if org:
        base += f"{org}/"
    return (f"{base}{account}/CloudTrail/{region}/{day:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{day:%Y%m%dT%H%M}Z_{n:016x}.json.gz")


def trail_event(name: str, *, event_id: str | None = None, error: str | None = None,
                when: datetime | None = None, user_agent: str = "aws-cli/2.15",
                account: str = "123456789012") -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "eventTime": (when or datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "ec2.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": user_agent,
        "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::{account}:user/alice",
                         "accountId": account},
        "eventID": event_id or str(uuid.uuid4()),
        "recipientAccountId": account,
        "requestParameters": {"cidrBlock": "10.9.0.0/16"},
        "responseElements": None if error else {"vpc": {"vpcId": "vpc-0abc"}},
    }
    if error:
        record["errorCode"] = error
        record["errorMessage"] = "You are not authorized to perform this operation."
    return record


def trail_object(records: list[dict[str, Any]]) -> bytes:
    return gzip_bytes(json.dumps({"Records": records}).encode())
