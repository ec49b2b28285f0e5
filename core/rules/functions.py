"""SQL functions rules can call: address classes and the user's blocklist.

Addresses stay strings in the store; these macros test them in SQL, vectorised, instead of
calling ``ipaddress`` per record (about 2 µs each). Address classes are one regular
expression each (RE2: four times faster than the same tests written with string functions).
The blocklist holds IPv4 CIDRs as integer ranges and IPv6 entries as exact
addresses or CIDRs, expanded in Python once when it is loaded.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import duckdb

# 10/8, 192.168/16, 127/8, 169.254/16, 172.16/12, 100.64/10
_PRIVATE_V4 = (r"^(10\.|192\.168\.|127\.|169\.254\.|172\.(1[6-9]|2[0-9]|3[01])\."
               r"|100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.)")
MACROS = r"""
CREATE OR REPLACE TEMP MACRO ip4(a) AS CASE
  WHEN regexp_full_match(a, '\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}') THEN
    (split_part(a, '.', 1)::BIGINT << 24) + (split_part(a, '.', 2)::BIGINT << 16)
     + (split_part(a, '.', 3)::BIGINT << 8) + split_part(a, '.', 4)::BIGINT END;
CREATE OR REPLACE TEMP MACRO is_private(a) AS CASE
  WHEN a IS NULL THEN NULL
  WHEN contains(a, ':')
    THEN regexp_matches(lower(a), '^(f[cd][0-9a-f]{2}|fe[89ab][0-9a-f]):') OR a = '::1'
  ELSE regexp_matches(a, '$PRIVATE_V4')
  END;
CREATE OR REPLACE TEMP MACRO is_public(a) AS CASE
  WHEN a IS NULL THEN NULL
  WHEN contains(a, ':') THEN NOT is_private(a) AND NOT starts_with(lower(a), 'ff') AND a <> '::'
  -- 1.0.0.0 to 223.255.255.255: not 0/8, multicast or reserved
  ELSE NOT is_private(a) AND regexp_matches(a, '^(22[0-3]|2[01][0-9]|1[0-9][0-9]|[1-9][0-9]?)\.')
  END;
CREATE OR REPLACE TEMP MACRO is_denied(code) AS code IS NOT NULL AND (
  code LIKE '%UnauthorizedOperation' OR code IN ('AccessDenied', 'AccessDeniedException'));
CREATE OR REPLACE TEMP MACRO is_vpc_event(name) AS name IN (
  'CreateVpc', 'DeleteVpc', 'ModifyVpcAttribute', 'CreateVpcPeeringConnection',
  'DeleteVpcPeeringConnection', 'AcceptVpcPeeringConnection', 'RejectVpcPeeringConnection',
  'CreateSubnet', 'DeleteSubnet', 'CreateRoute', 'CreateRouteTable', 'ReplaceRoute',
  'ReplaceRouteTableAssociation', 'DeleteRoute', 'DeleteRouteTable', 'DisassociateRouteTable',
  'AssociateRouteTable', 'CreateInternetGateway', 'DeleteInternetGateway',
  'AttachInternetGateway', 'DetachInternetGateway', 'CreateCustomerGateway',
  'DeleteCustomerGateway', 'CreateNetworkAcl', 'CreateNetworkAclEntry', 'DeleteNetworkAcl',
  'DeleteNetworkAclEntry', 'ReplaceNetworkAclEntry', 'ReplaceNetworkAclAssociation',
  'AuthorizeSecurityGroupIngress', 'AuthorizeSecurityGroupEgress',
  'RevokeSecurityGroupIngress', 'RevokeSecurityGroupEgress', 'CreateSecurityGroup',
  'DeleteSecurityGroup', 'CreateFlowLogs', 'DeleteFlowLogs', 'CreateNatGateway',
  'DeleteNatGateway', 'CreateVpcEndpoint', 'DeleteVpcEndpoints');
CREATE OR REPLACE TEMP MACRO blocklisted(a) AS CASE
  WHEN a IS NULL THEN false
  WHEN contains(a, ':') THEN lower(a) IN (SELECT address FROM blocklist6)
  ELSE EXISTS (SELECT 1 FROM blocklist4 WHERE ip4(a) BETWEEN lo AND hi)
  END;
"""

Blocklist = tuple[list[tuple[int, int]], list[str]]  # IPv4 (lo, hi) ranges, IPv6 addresses
MAX_IPV6_EXPANSION = 65536  # addresses an IPv6 CIDR may expand to in the blocklist


class BlocklistError(Exception):
    pass


def install(con: duckdb.DuckDBPyConnection, blocklist: Blocklist | None = None) -> int:
    """Define the macros and load the blocklist (from ``read_blocklist``) into temp tables;
    returns its entry count."""
    ranges4, addresses6 = blocklist or ([], [])
    con.execute("CREATE OR REPLACE TEMP TABLE blocklist4 (lo BIGINT, hi BIGINT)")
    con.execute("CREATE OR REPLACE TEMP TABLE blocklist6 (address VARCHAR)")
    if ranges4:
        con.executemany("INSERT INTO blocklist4 VALUES (?, ?)", ranges4)
    if addresses6:
        con.executemany("INSERT INTO blocklist6 VALUES (?)", [[a] for a in addresses6])
    con.execute(MACROS.replace("$PRIVATE_V4", _PRIVATE_V4))
    if not ranges4 and not addresses6:  # nothing to look up: skip the per-record join
        con.execute("CREATE OR REPLACE TEMP MACRO blocklisted(a) AS false")
    return len(ranges4) + len(addresses6)


def read_blocklist(paths: list[Path]) -> Blocklist:
    """IPv4 (lo, hi) ranges and IPv6 addresses, compressed form, from blocklist files.

    One address or CIDR a line; ``#`` starts a comment. A bad line is an error naming the
    file and line.
    """
    ranges4: list[tuple[int, int]] = []
    addresses6: list[str] = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BlocklistError(f"{path}: cannot read the blocklist: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise BlocklistError(
                    f"{path}:{number}: {text[:60]!r} is not an IP address or CIDR"
                ) from None
            if network.version == 4:
                ranges4.append((int(network.network_address), int(network.broadcast_address)))
            elif network.num_addresses > MAX_IPV6_EXPANSION:
                raise BlocklistError(f"{path}:{number}: IPv6 networks larger than /112 are "
                                     "not supported in the blocklist")
            else:
                addresses6 += [str(address) for address in network]
    return ranges4, addresses6
