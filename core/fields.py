"""The VPC Flow Logs field catalogue: AWS names, the column names Athena uses, and types.

A flow-log field is named with hyphens by AWS (``log-status``) and with underscores in the
store, in Parquet and in Athena (``log_status``). Types follow Parquet/Athena: ports, protocol,
tcp-flags, traffic-path and version are 32-bit integers; packet/byte counts and times are
64-bit; everything else is text. Unknown (future) fields are kept as text.
"""

from __future__ import annotations

import re

import pyarrow as pa

INT32_FIELDS = ("version", "srcport", "dstport", "protocol", "tcp-flags", "traffic-path")
INT64_FIELDS = (
    "packets",
    "bytes",
    "start",
    "end",
    "packets-lost-no-route",
    "packets-lost-blackhole",
    "packets-lost-mtu-exceeded",
    "packets-lost-ttl-expired",
)

# Every field AWS documents, v2 to v8, in the order the documentation lists them.
KNOWN_FIELDS: tuple[str, ...] = (
    # v2 (the default format, in its fixed order)
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
    "protocol", "packets", "bytes", "start", "end", "action", "log-status",
    # v3
    "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr",
    # v4
    "region", "az-id", "sublocation-type", "sublocation-id",
    # v5
    "pkt-src-aws-service", "pkt-dst-aws-service", "flow-direction", "traffic-path",
    # v6 (Transit Gateway flow logs)
    "resource-type", "tgw-id", "tgw-attachment-id", "tgw-src-vpc-account-id",
    "tgw-dst-vpc-account-id", "tgw-src-vpc-id", "tgw-dst-vpc-id", "tgw-src-subnet-id",
    "tgw-dst-subnet-id", "tgw-src-eni", "tgw-dst-eni", "tgw-src-az-id", "tgw-dst-az-id",
    "tgw-pair-attachment-id", "packets-lost-no-route", "packets-lost-blackhole",
    "packets-lost-mtu-exceeded", "packets-lost-ttl-expired",
    # v7
    "ecs-cluster-arn", "ecs-cluster-name", "ecs-container-instance-arn",
    "ecs-container-instance-id", "ecs-container-id", "ecs-second-container-id",
    "ecs-service-name", "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id",
    # v8
    "reject-reason",
)

DEFAULT_FORMAT: tuple[str, ...] = KNOWN_FIELDS[:14]

# A header may name fields we do not know yet (AWS adds some with each version). They are
# stored as text columns; the name must look like an AWS field name to become a column.
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_FIELD_NAME = 64


# The columns the store adds to every record (the object it came from): no field may be one.
ORIGIN_COLUMNS = ("bucket", "object_key")


def column_name(field: str) -> str:
    """The store/Athena column name of an AWS field name: ``log-status`` -> ``log_status``."""
    return field.replace("-", "_")


def field_name(column: str) -> str:
    """The AWS field name of a store/Parquet column name: ``log_status`` -> ``log-status``."""
    return column.replace("_", "-")


def field_problem(field: str) -> str | None:
    """Why ``field`` (an AWS-style name) cannot be a column of the store, or None."""
    if len(field) > MAX_FIELD_NAME or not _FIELD_NAME.match(field):
        return "is not a flow-log field name"
    if column_name(field) in ORIGIN_COLUMNS:
        return "is a column vpcwatch adds to every record (the object it came from)"
    return None


def arrow_type(field: str) -> pa.DataType:
    if field in INT32_FIELDS:
        return pa.int32()
    if field in INT64_FIELDS:
        return pa.int64()
    return pa.string()


def sql_type(field: str) -> str:
    if field in INT32_FIELDS:
        return "INTEGER"
    if field in INT64_FIELDS:
        return "BIGINT"
    return "VARCHAR"


# Values above this are milliseconds, not seconds (some producers write ms).
MAX_EPOCH_SECONDS = 2**31 - 1

PROTOCOL_NAMES: dict[int, str] = {
    1: "ICMP",
    2: "IGMP",
    6: "TCP",
    17: "UDP",
    41: "IPv6",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "ICMPv6",
    89: "OSPF",
    132: "SCTP",
}
