"""SQL functions rules can call: address classes and the user's blocklist.

Addresses stay strings in the store; these macros test them in SQL, vectorised, instead of
calling ``ipaddress`` per record (about 2 µs each). Address classes are one regular
expression each (RE2: four times faster than the same tests written with string functions).
``ip4`` and ``ip6`` turn an address into an integer (IPv6: a UHUGEINT, from any text form
with ``::``; NULL for anything else, such as an IPv4-mapped ``::ffff:1.2.3.4``), so that a
CIDR is an integer range: the blocklist and the app's filter bar test addresses that way.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from core.permissions import read_text_file, shared_write_problem

# 10/8, 192.168/16, 127/8, 169.254/16, 172.16/12, 100.64/10
_PRIVATE_V4 = (r"^(10\.|192\.168\.|127\.|169\.254\.|172\.(1[6-9]|2[0-9]|3[01])\."
               r"|100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.)")
# A public IPv4 address in one expression, not "not private, and 1.0.0.0 to 223.255.255.255":
# two tests per address cost 10 ms more per 500,000 records (the exfiltration rule). RE2 has
# no look-ahead, so "not private" is spelt out: a first octet of 1-223 other than 10, 100,
# 127, 169, 172 and 192, or one of the last four with a second octet outside its private
# block. (tests/test_functions.py checks every first two octets against the networks.)
_PUBLIC_V4 = "^(" + "|".join((
    r"([1-9]|1[1-9]|[2-9][0-9]|10[1-9]|11[0-9]|12[0-689]|1[3-5][0-9]|16[0-8]|17[013-9]"
    r"|18[0-9]|19[013-9]|2[01][0-9]|22[0-3])\.",
    r"100\.([0-9]|[1-5][0-9]|6[0-3]|12[89]|1[3-9][0-9]|2[0-9][0-9])\.",  # not 100.64/10
    r"169\.([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-35-9])\.",  # not 169.254/16
    r"172\.([0-9]|1[0-5]|3[2-9]|[4-9][0-9]|[12][0-9][0-9])\.",  # not 172.16/12
    r"192\.([0-9]|[1-9][0-9]|1[0-57-9][0-9]|16[0-79]|2[0-9][0-9])\.",  # not 192.168/16
)) + ")"
MACROS = r"""
CREATE OR REPLACE TEMP MACRO ip4(a) AS CASE
  WHEN regexp_full_match(a, '\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}') THEN
    (split_part(a, '.', 1)::BIGINT << 24) + (split_part(a, '.', 2)::BIGINT << 16)
     + (split_part(a, '.', 3)::BIGINT << 8) + split_part(a, '.', 4)::BIGINT END;
CREATE OR REPLACE TEMP MACRO _ip6_part(p) AS
  CASE WHEN p = '' THEN []::VARCHAR[] ELSE string_split(p, ':') END;
CREATE OR REPLACE TEMP MACRO _ip6_groups(s) AS CASE
  WHEN NOT contains(s, '::') THEN string_split(s, ':')
  WHEN s LIKE '%::%::%' THEN NULL
  ELSE _ip6_part(split_part(s, '::', 1))
    || repeat(['0'], greatest(0, 8 - len(_ip6_part(split_part(s, '::', 1)))
                                   - len(_ip6_part(split_part(s, '::', 2)))))
    || _ip6_part(split_part(s, '::', 2))
  END;
CREATE OR REPLACE TEMP MACRO _ip6_value(g) AS CASE
  WHEN regexp_full_match(array_to_string(g, ':'), '([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}') THEN
    list_reduce(list_transform(g, lambda x: ('0x' || x)::UHUGEINT),
                lambda acc, x: acc * 65536 + x)
  END;
CREATE OR REPLACE TEMP MACRO ip6(a) AS CASE
  WHEN contains(a, ':') THEN _ip6_value(_ip6_groups(lower(a))) END;
CREATE OR REPLACE TEMP MACRO is_private(a) AS CASE
  WHEN a IS NULL THEN NULL
  WHEN contains(a, ':')
    THEN regexp_matches(lower(a), '^(f[cd][0-9a-f]{2}|fe[89ab][0-9a-f]):') OR a = '::1'
  ELSE regexp_matches(a, '$PRIVATE_V4')
  END;
CREATE OR REPLACE TEMP MACRO is_public(a) AS CASE
  WHEN a IS NULL THEN NULL
  WHEN contains(a, ':') THEN NOT is_private(a) AND NOT starts_with(lower(a), 'ff') AND a <> '::'
  -- 1.0.0.0 to 223.255.255.255 (not 0/8, multicast or reserved), and not private
  ELSE regexp_matches(a, '$PUBLIC_V4')
  END;
-- from the internet as seen from ``local``: a public IPv4 address, or a global IPv6 address
-- outside local's /56 (the size of a VPC's IPv6 block: two addresses of one VPC are global
-- unicast but not internet to each other)
CREATE OR REPLACE TEMP MACRO is_internet(a, local) AS CASE
  WHEN a IS NULL THEN NULL
  WHEN contains(a, ':') THEN is_public(a) AND (local IS NULL OR NOT contains(local, ':')
    OR ip6_net56(a) IS DISTINCT FROM ip6_net56(local))
  ELSE is_public(a)
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
  'DeleteSecurityGroup', 'ModifySecurityGroupRules', 'CreateFlowLogs', 'DeleteFlowLogs',
  'CreateNatGateway',
  'DeleteNatGateway', 'CreateVpcEndpoint', 'DeleteVpcEndpoints');
"""


@dataclass(frozen=True)
class Blocklist:
    """The blocklist files' entries. An IPv6 address is compared as text (compressed, lower
    case: as AWS writes addresses), which costs nothing; an IPv6 network needs ``ip6``,
    about 1-3 µs per IPv6 address tested."""

    ranges4: list[tuple[int, int]] = field(default_factory=list)  # IPv4 networks and addresses
    addresses6: list[str] = field(default_factory=list)
    networks6: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ranges4) + len(self.addresses6) + len(self.networks6)


class BlocklistError(Exception):
    pass


def install(con: duckdb.DuckDBPyConnection, blocklist: Blocklist | None = None) -> int:
    """Define the macros and load the blocklist (from ``read_blocklist``) into temp tables;
    returns its entry count."""
    blocklist = blocklist or Blocklist()
    con.execute("CREATE OR REPLACE TEMP TABLE blocklist4 (lo BIGINT, hi BIGINT)")
    con.execute("CREATE OR REPLACE TEMP TABLE blocklist6 (address VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE blocklist6_networks (lo UHUGEINT, hi UHUGEINT)")
    if blocklist.ranges4:
        con.executemany("INSERT INTO blocklist4 VALUES (?, ?)", blocklist.ranges4)
    if blocklist.addresses6:
        con.executemany("INSERT INTO blocklist6 VALUES (?)", [[a] for a in blocklist.addresses6])
    if blocklist.networks6:  # 128-bit values travel as text
        con.executemany("INSERT INTO blocklist6_networks VALUES (?::UHUGEINT, ?::UHUGEINT)",
                        [[str(lo), str(hi)] for lo, hi in blocklist.networks6])
    _create_function(con, "ip6_net56", _ip6_net56)
    con.execute(MACROS.replace("$PRIVATE_V4", _PRIVATE_V4).replace("$PUBLIC_V4", _PUBLIC_V4))
    con.execute(f"CREATE OR REPLACE TEMP MACRO blocklisted(a) AS {_blocklisted_sql(blocklist)}")
    return len(blocklist)


def _ip6_net56(addresses: pa.Array) -> pa.Array:
    """The /56 network of each IPv6 address (as text; NULL for anything else). A Python
    function, not a macro: DuckDB plans the ``ip6`` macro's list arithmetic for 16 ms each
    time a rule query names it, and only the few IPv6 rows a rule's other tests keep reach
    this (``is_internet``)."""
    networks: dict[str, str | None] = {}
    for address in set(addresses.drop_null().to_pylist()):
        try:
            networks[address] = str(ipaddress.IPv6Network((address, 56), strict=False))
        except ValueError:
            networks[address] = None
    return pa.array([None if a is None else networks[a] for a in addresses.to_pylist()],
                    pa.string())


def _create_function(con: duckdb.DuckDBPyConnection, name: str,
                     function: Callable[[pa.Array], pa.Array]) -> None:
    text = duckdb.sqltype("VARCHAR")
    # (there already when this connection, or another of the same database, made it)
    with contextlib.suppress(duckdb.CatalogException, duckdb.NotImplementedException):
        con.create_function(name, function, [text], text, type="arrow",
                            null_handling="special", side_effects=False)


def _blocklisted_sql(blocklist: Blocklist) -> str:
    """The ``blocklisted`` test, with only the lookups this blocklist needs (none: false)."""
    if not blocklist:
        return "false"
    v4 = ("EXISTS (SELECT 1 FROM blocklist4 WHERE ip4(a) BETWEEN lo AND hi)"
          if blocklist.ranges4 else "false")
    v6 = [test for test, needed in (
        ("lower(a) IN (SELECT address FROM blocklist6)", blocklist.addresses6),
        ("EXISTS (SELECT 1 FROM blocklist6_networks WHERE ip6(a) BETWEEN lo AND hi)",
         blocklist.networks6)) if needed]
    return (f"CASE WHEN a IS NULL THEN false WHEN contains(a, ':') THEN "
            f"{' OR '.join(v6) or 'false'} ELSE {v4} END")


def read_blocklist(paths: list[Path]) -> Blocklist:
    """The entries of blocklist files.

    One address or CIDR a line; ``#`` starts a comment. A bad line is an error naming the
    file and line.
    """
    ranges4: list[tuple[int, int]] = []
    addresses6: list[str] = []
    networks6: list[tuple[int, int]] = []
    for path in paths:
        try:
            problem = shared_write_problem(path)
            if problem:
                raise BlocklistError(f"{path}: refused, {problem}")
            lines = read_text_file(path).splitlines()
        except OSError as exc:
            raise BlocklistError(f"{path}: cannot read the blocklist: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise BlocklistError(f"{path}: the blocklist is not UTF-8 text (byte "
                                 f"{exc.start + 1})") from None
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
            bounds = (int(network.network_address), int(network.broadcast_address))
            if network.version == 4:
                ranges4.append(bounds)
            elif network.num_addresses == 1:
                addresses6.append(str(network.network_address))
            else:
                networks6.append(bounds)
    return Blocklist(ranges4, addresses6, networks6)
