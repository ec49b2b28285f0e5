"""The SQL pieces every rule is made of: the alerts table, how each source's records map
onto the fields every alert has, and titles."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (model imports parity, which uses these pieces)
    from core.rules.model import Rule

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
# Names a title template may use, besides the rule's group_by columns.
TITLE_FIELDS = {"srcaddr": "_src", "dstaddr": "_dst", "dstport": "_port", "protocol": "_proto",
                "count": "_n", "bytes": "_sb", "packets": "_sp", "window_start": "_b",
                "first_seen": "_first", "last_seen": "_last"}


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


def title_sql(rule: Rule, field_prefix: str = "_f_") -> str:
    """SQL for the rule's title; a per-event rule's ``fields`` are columns named
    ``field_prefix`` + name."""
    parts = []
    for text, name, spec, _ in string.Formatter().parse(rule.title):
        if text:
            parts.append(literal(text))
        if name is None:
            continue
        if spec not in ("", "size"):
            raise ValueError(f"title field {{{name}:{spec}}}: the only format is :size "
                             "(a byte count as 1.6 GiB)")
        groups = {key: f"_g{i}" for i, (key, _) in enumerate(rule.group_keys())}
        fields = {key: f"{field_prefix}{key}" for key, _ in rule.fields}
        column = groups.get(name) or fields.get(name) or TITLE_FIELDS.get(name)
        if column is None and not rule.windowed:
            column = quote(name)  # a per-record rule may show any field of its record
        if column is None:
            raise ValueError(f"title field {{{name}}} is not a group_by column or one of "
                             f"{', '.join(sorted(TITLE_FIELDS))}")
        shown = f"format_bytes({column}::BIGINT)" if spec == "size" else f"{column}::VARCHAR"
        parts.append(f"coalesce({shown}, '-')")
    return " || ".join(parts) or "''"
