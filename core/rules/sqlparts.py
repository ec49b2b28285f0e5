"""The SQL pieces every rule is made of: the alerts table, and how each source's records map
onto the fields every alert has (titles are in ``titles``)."""

from __future__ import annotations

from dataclasses import dataclass

ALERTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
id VARCHAR, rule_id VARCHAR, level INTEGER, title VARCHAR, source VARCHAR,
window_start BIGINT, first_seen BIGINT, last_seen BIGINT,
count BIGINT, bytes BIGINT, packets BIGINT, group_key VARCHAR,
srcaddr VARCHAR, dstaddr VARCHAR, dstport INTEGER, protocol INTEGER,
mitre VARCHAR, wazuh_id INTEGER, objects VARCHAR, object_count BIGINT,
created TIMESTAMP, updated TIMESTAMP, revision INTEGER,
account_id VARCHAR, region VARCHAR, event_name VARCHAR, vpc_id VARCHAR, interface_id VARCHAR,
details VARCHAR
);
"""
ALERT_FIELDS = ("id", "rule_id", "level", "title", "source", "window_start", "first_seen",
                "last_seen", "count", "bytes", "packets", "group_key", "srcaddr", "dstaddr",
                "dstport", "protocol", "mitre", "wazuh_id", "objects", "object_count",
                "account_id", "region", "event_name", "vpc_id", "interface_id", "details")
# Fields an alert takes from its records when they all agree (NULL when they differ).
CONTEXT = ("account_id", "region", "event_name", "vpc_id", "interface_id")
MAX_OBJECTS = 20  # object keys kept on an alert (object_count has them all)
BIGINT_MAX = 2**63 - 1


def as_bigint(total: str) -> str:
    """A sum (of bytes, of packets) as a BIGINT, held at BIGINT_MAX: DuckDB adds BIGINTs as
    HUGEINTs, and casting a sum past it failed the commit, every commit after it, and the
    compaction that merged its segments (found by an adversarial test: two records of 2^62
    bytes, valid counts, in one window). NULL stays NULL (DuckDB's ``least`` skips it)."""
    return f"(CASE WHEN {total} > {BIGINT_MAX} THEN {BIGINT_MAX} ELSE {total} END)::BIGINT"


@dataclass(frozen=True)
class SourceShape:
    """How a source's rows map onto the fields every alert has."""

    time: str
    end: str
    bytes: str
    packets: str
    srcaddr: str
    dstaddr: str
    dstport: str
    protocol: str
    context: tuple[str, ...]  # SQL for each of CONTEXT


SHAPES = {
    "vpcflow": SourceShape(time="start", end='"end"', bytes="bytes", packets="packets",
                           srcaddr="coalesce(pkt_srcaddr, srcaddr)",
                           dstaddr="coalesce(pkt_dstaddr, dstaddr)", dstport="dstport",
                           protocol="protocol",
                           context=("account_id", "region", "NULL::VARCHAR", "vpc_id",
                                    "interface_id")),
    "cloudtrail": SourceShape(time="epoch(event_time)::BIGINT",
                              end="epoch(event_time)::BIGINT", bytes="NULL::BIGINT",
                              packets="NULL::BIGINT", srcaddr="source_ip",
                              dstaddr="NULL::VARCHAR", dstport="NULL::INTEGER",
                              protocol="NULL::INTEGER",
                              context=("account_id", "aws_region", "event_name",
                                       "coalesce(json_extract_string(record, "
                                       "'$.requestParameters.vpcId'), json_extract_string("
                                       "record, '$.responseElements.vpc.vpcId'))",
                                       "NULL::VARCHAR")),
}
def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def derived(shape: SourceShape) -> str:
    context = "".join(f", {sql} AS _v{name}" for name, sql in zip(CONTEXT, shape.context,
                                                                     strict=True))
    return (f"{shape.time} AS _t, {shape.end} AS _tend, {shape.bytes} AS _vbytes, "
            f"{shape.packets} AS _vpackets, {shape.srcaddr} AS _vsrc, {shape.dstaddr} AS _vdst, "
            f"{shape.dstport} AS _vport, {shape.protocol} AS _vproto{context}")


def single(column: str, alias: str) -> str:
    """The column's value when every row agrees on it, else NULL (min = max is far cheaper
    than a DISTINCT aggregate)."""
    return (f"CASE WHEN min({column}) = max({column}) AND count({column}) = count(*) "
            f"THEN min({column}) END AS {alias}")
