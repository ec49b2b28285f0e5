"""Realistic VPC traffic for the demo: flow-log and CloudTrail objects exactly as AWS writes them.

A small estate (two accounts, two regions, web, database and DNS interfaces) talks with a daily
shape; scripted incidents happen a few seconds into the demo: a port scan, an SSH brute force
from the internet, an exfiltration burst that makes a clear peak, a SKIPDATA record, and
CloudTrail events (CreateVpc, an unauthorized CreateVpc, DeleteFlowLogs). As AWS writes
them, a conversation's request and reply are two records, on each of our interfaces at its
ends (a web server's and the database's both log their queries).
"""

from __future__ import annotations

import gzip
import json
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets "
          "bytes start end action log-status")
PROD, STAGING = "111122223333", "444455556666"
SCANNER = "203.0.113.66"
BRUTE_FORCER = "198.51.100.23"
EXFIL_HOST = "10.0.2.45"
EXFIL_DEST = "192.0.2.200"


@dataclass(frozen=True)
class Interface:
    account: str
    region: str
    eni: str
    address: str
    role: str  # web, db, dns, app


ESTATE = (
    Interface(PROD, "us-east-1", "eni-0a1b2c3d4e5f60001", "10.0.1.10", "web"),
    Interface(PROD, "us-east-1", "eni-0a1b2c3d4e5f60002", "10.0.1.11", "web"),
    Interface(PROD, "us-east-1", "eni-0a1b2c3d4e5f60003", "10.0.2.20", "db"),
    Interface(PROD, "us-east-1", "eni-0a1b2c3d4e5f60004", EXFIL_HOST, "app"),
    Interface(PROD, "eu-west-1", "eni-0a1b2c3d4e5f60005", "10.1.1.10", "web"),
    Interface(STAGING, "us-east-1", "eni-0b1b2c3d4e5f60006", "10.20.0.53", "dns"),
)
FLOW_LOG_IDS = {PROD: "fl-0123456789abcdef0", STAGING: "fl-0fedcba9876543210"}


@dataclass(frozen=True)
class DemoObject:
    key: str
    body: bytes


def daily_factor(when: float) -> float:
    """Busier in the working day, quiet at night (UTC hours)."""
    hour = datetime.fromtimestamp(when, UTC).hour + datetime.fromtimestamp(when, UTC).minute / 60
    return 0.35 + 0.65 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.3


def _line(eni: Interface, src: str, dst: str, sport: int, dport: int, proto: int, packets: int,
          nbytes: int, start: int, action: str = "ACCEPT", status: str = "OK") -> str:
    return (f"2 {eni.account} {eni.eni} {src} {dst} {sport} {dport} {proto} {packets} {nbytes} "
            f"{start} {start + 60} {action} {status}")


def conversation(on: tuple[Interface, ...], client: str, server: str, client_port: int,
                 server_port: int, proto: int, request: int, reply: int, start: int,
                 action: str = "ACCEPT") -> list[str]:
    """One conversation as flow logs record it: the request and the reply (none when it was
    refused), on each of our interfaces at its ends (``on``)."""
    lines = []
    for eni in on:
        lines.append(_line(eni, client, server, client_port, server_port, proto,
                           max(1, request // 900), max(40, request), start, action))
        if action == "ACCEPT":
            lines.append(_line(eni, server, client, server_port, client_port, proto,
                               max(1, reply // 1200), max(40, reply), start))
    return lines


def normal_traffic(eni: Interface, start: int, rng: random.Random, share: float = 1.0
                   ) -> list[str]:
    """``share`` of one minute of ordinary traffic served by (or, for the app, sent from)
    one interface, both directions, as each of our interfaces at its ends logs it."""
    lines = []
    volume = daily_factor(start)
    by_address = {i.address: i for i in ESTATE}
    for _ in range(max(1, int(40 * volume * share))):
        client = f"{rng.choice([54, 52, 3, 18])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"  # noqa: E501
        if eni.role == "web":
            nbytes = int(rng.lognormvariate(9, 1) * volume)
            lines += conversation((eni,), client, eni.address, rng.randrange(32768, 61000),
                                  443, 6, rng.randrange(300, 1500), nbytes, start)
        elif eni.role == "db":
            web = by_address[rng.choice(["10.0.1.10", "10.0.1.11"])]
            nbytes = int(rng.lognormvariate(10, 0.8))
            lines += conversation((eni, web), web.address, eni.address,
                                  rng.randrange(32768, 61000), 5432, 6,
                                  rng.randrange(200, 2000), nbytes, start)
        elif eni.role == "dns":
            lines += conversation((eni,), f"10.20.0.{rng.randrange(2, 250)}", eni.address,
                                  rng.randrange(1024, 65535), 53, 17, rng.randrange(60, 120),
                                  rng.randrange(90, 300), start)
        else:
            nbytes = int(rng.lognormvariate(8, 1))
            lines += conversation((eni, by_address["10.0.2.20"]), eni.address, "10.0.2.20",
                                  rng.randrange(32768, 61000), 5432, 6, nbytes,
                                  int(rng.lognormvariate(9, 1)), start)
    if rng.random() < 0.2:  # background noise from the internet, rejected
        lines += conversation((eni,), f"45.{rng.randrange(256)}.{rng.randrange(256)}.9",
                              eni.address, rng.randrange(1024, 65535),
                              rng.choice([23, 445, 3389]), 6, 40, 0, start, "REJECT")
    return lines


def port_scan(start: int) -> list[str]:
    eni = ESTATE[0]
    return [_line(eni, SCANNER, eni.address, 40000 + port, port, 6, 1, 44, start, "REJECT")
            for port in range(1, 1025, 8)]


def ssh_brute_force(start: int) -> list[str]:
    eni = ESTATE[1]
    return [line for i in range(60) for line in conversation(
        (eni,), BRUTE_FORCER, eni.address, 50000 + i, 22, 6, 2800, 3400, start,
        "ACCEPT" if i % 3 else "REJECT")]


def exfiltration(start: int) -> list[str]:
    """5.4 GB out in a minute; the peer's acknowledgements come back (about 2% of it)."""
    eni = ESTATE[3]
    return [line for i in range(6) for line in conversation(
        (eni,), EXFIL_HOST, EXFIL_DEST, 51515, 443, 6, 900_000_000 + i, 18_000_000, start)]


def skipdata(start: int) -> list[str]:
    eni = ESTATE[2]
    return [f"2 {eni.account} {eni.eni} - - - - - - - {start} {start + 60} - SKIPDATA"]


def flow_objects(minute_start: int, rng: random.Random, extra: dict[Interface, list[str]],
                 share: float = 1.0, minutes: int = 1) -> list[DemoObject]:
    """One object per account and region for (a share of) ``minutes`` of traffic from
    ``minute_start``, keyed as AWS keys them."""
    groups: dict[tuple[str, str], list[str]] = {}
    for minute in range(minute_start, minute_start + 60 * minutes, 60):
        for eni in ESTATE:
            lines = normal_traffic(eni, minute, rng, share) + (
                extra.get(eni, []) if minute == minute_start else [])
            groups.setdefault((eni.account, eni.region), []).extend(lines)
    when = datetime.fromtimestamp(minute_start, UTC)
    objects = []
    for (account, region), lines in groups.items():
        rng.shuffle(lines)
        name = (f"{account}_vpcflowlogs_{region}_{FLOW_LOG_IDS[account]}_"
                f"{when:%Y%m%dT%H%M}Z_{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}.log.gz")
        key = f"vpc/AWSLogs/{account}/vpcflowlogs/{region}/{when:%Y/%m/%d}/{name}"
        body = gzip.compress(("\n".join([HEADER, *lines]) + "\n").encode(), mtime=0)
        objects.append(DemoObject(key, body))
    return objects


def incident_lines(minute_start: int) -> dict[Interface, list[str]]:
    return {ESTATE[0]: port_scan(minute_start), ESTATE[1]: ssh_brute_force(minute_start),
            ESTATE[3]: exfiltration(minute_start), ESTATE[2]: skipdata(minute_start)}


def cloudtrail_object(when: float, rng: random.Random) -> DemoObject:
    at = datetime.fromtimestamp(when, UTC)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    admin = f"arn:aws:iam::{PROD}:user/platform-admin"
    intern = f"arn:aws:iam::{PROD}:user/intern"

    def event(name: str, arn: str, error: str | None = None, **request: object) -> dict:
        record = {
            "eventVersion": "1.09", "eventTime": stamp, "eventSource": "ec2.amazonaws.com",
            "eventName": name, "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.10",
            "userAgent": "aws-cli/2.17.0 Python/3.11", "eventID": str(uuid.UUID(
                int=rng.getrandbits(128))), "eventType": "AwsApiCall", "readOnly": False,
            "recipientAccountId": PROD, "requestParameters": request,
            "userIdentity": {"type": "IAMUser", "arn": arn, "accountId": PROD},
            "responseElements": None if error else {"requestId": str(uuid.uuid4())},
        }
        if error:
            record.update(errorCode=error, errorMessage="You are not authorized to perform "
                          "this operation.")
        return record

    records = [
        event("CreateVpc", admin, cidrBlock="10.50.0.0/16"),
        event("CreateVpc", intern, "Client.UnauthorizedOperation", cidrBlock="10.60.0.0/16"),
        event("DeleteFlowLogs", intern, DeleteFlowLogsRequest={"FlowLogId": {
            "content": FLOW_LOG_IDS[PROD]}}),
    ]
    name = f"{PROD}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_{rng.getrandbits(64):016x}.json.gz"
    key = f"vpc/AWSLogs/{PROD}/CloudTrail/us-east-1/{at:%Y/%m/%d}/{name}"
    return DemoObject(key, gzip.compress(json.dumps({"Records": records}).encode(), mtime=0))
