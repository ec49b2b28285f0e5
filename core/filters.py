"""The filter language of the app's filter bar, compiled to SQL for flows and for alerts, and
to tests over the app's traffic index (:class:`IndexTest`, evaluated by core.traffic_index).

``10.0.1.5 port:22 !action:accept`` means: flows or alerts involving 10.0.1.5, on port 22,
not accepted. Terms are separated by spaces and combined with AND; ``!`` negates one term.
A term that cannot apply to a table (``rule:`` on flows, ``action:`` on alerts) is left out
of that table's SQL and said so by :meth:`Filter.notes`.
Values are always bound as parameters, never spliced into the SQL. CIDRs use the ``ip4``
and ``ip6`` macros of ``core.rules.functions``, installed on every store connection.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmp6"}
PROTOCOLS = {name: number for number, name in PROTOCOL_NAMES.items()} | {"icmpv6": 58}
ACTIONS = ("accept", "reject")
SYNTAX = ("IP, CIDR, src:IP|CIDR, dst:IP|CIDR, port:N, proto:tcp|udp|icmp|N, "
          "action:accept|reject, rule:ID (* matches any text), level>=N, eni:ID, vpc:ID, "
          "acct:ID; !TERM negates; terms combine with AND")

Sql = tuple[str, list[Any]]


class FilterError(ValueError):
    """A term the filter bar cannot use; the message names the term and what is allowed."""


@dataclass(frozen=True)
class IndexTest:
    """A flows term over the traffic index's columns (see core.traffic_index): true when one
    of ``columns`` (one or two) equals ``value``; or holds the id of ``address``; or, with
    ``ids``, an address id that this query of ``ix_addr`` returns."""

    columns: tuple[str, ...]
    value: Any = None
    ids: Sql | None = None
    address: str | None = None  # or: an address id is this address's (as AWS writes it)


@dataclass(frozen=True)
class Term:
    text: str  # as typed, for display
    negated: bool
    flows: Sql | None  # None: does not apply to flows
    alerts: Sql | None  # None: does not apply to alerts
    index: IndexTest | None = None  # the flows test over core.traffic_index


@dataclass(frozen=True)
class Filter:
    text: str = ""
    terms: tuple[Term, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.terms

    def flows_sql(self) -> Sql:
        return _combine([(t.flows, t.negated) for t in self.terms if t.flows])

    def alerts_sql(self) -> Sql:
        return _combine([(t.alerts, t.negated) for t in self.terms if t.alerts])

    def index_tests(self) -> list[tuple[IndexTest, bool]]:
        """The flows terms over the traffic index, each with its negation (combined by AND;
        a negated term keeps the rows it does not match, NULLs included, as in SQL's
        ``NOT coalesce(term, false)``)."""
        return [(t.index, t.negated) for t in self.terms if t.index]

    def tests_only(self, columns: tuple[str, ...]) -> bool:
        """Whether every flows term tests one of these columns alone (so a table holding
        them, such as the traffic summary, can answer ``flows_sql``)."""
        return all(t.index is not None and len(t.index.columns) == 1
                   and t.index.columns[0] in columns for t in self.terms if t.flows)

    def notes(self) -> list[str]:
        """Terms that narrow only one of the two tables."""
        out = []
        for term in self.terms:
            if term.flows is None:
                out.append(f"{term.text}: alerts only")
            elif term.alerts is None:
                out.append(f"{term.text}: flows only")
        return out

    def single_address(self) -> str | None:
        """The address when the filter is exactly one plain IP (the conversations' focus)."""
        if len(self.terms) == 1 and not self.terms[0].negated:
            text = self.terms[0].text
            # (in the form the logs write it: 2001:DB8::1 is 2001:db8::1 there)
            return str(ipaddress.ip_address(text)) if _is_address(text) else None
        return None


def parse_filter(text: str) -> Filter:
    """Parse the filter bar's text; raise FilterError naming the first bad term."""
    return Filter(text.strip(), tuple(_term(word) for word in text.split()))


def _combine(parts: list[tuple[Sql, bool]]) -> Sql:
    if not parts:
        return "true", []
    sql, params = [], []
    for (clause, values), negated in parts:
        sql.append(f"NOT coalesce({clause}, false)" if negated else f"coalesce({clause}, false)")
        params += values
    return " AND ".join(sql), params


def _term(word: str) -> Term:
    negated = word.startswith("!")
    body = word[1:] if negated else word
    if not body:
        raise FilterError(f"'{word}': ! must be followed by a term ({SYNTAX})")
    level = re.fullmatch(r"level(>=|<=|=|>|<)(\d{1,2})", body)
    if level:
        op, value = level.group(1), int(level.group(2))
        if value > 15:
            raise FilterError(f"'{word}': levels go from 0 to 15")
        return Term(word, negated, None, (f"level {op} ?", [value]))
    key, sep, value = body.partition(":")
    known = key in _KEYED or key in ("src", "dst")
    if not sep or (not known and _looks_like_ipv6(body)):
        return Term(word, negated, *_addresses(word, body, ("src", "dst")))
    if not known:
        raise FilterError(f"'{word}': unknown key '{key}:' (use {SYNTAX})")
    if not value:
        raise FilterError(f"'{word}': '{key}:' needs a value ({SYNTAX})")
    if key in ("src", "dst"):
        return Term(word, negated, *_addresses(word, value, (key,)))
    return Term(word, negated, *_KEYED[key](word, value))


def _addresses(word: str, value: str, sides: tuple[str, ...]) -> tuple[Sql, Sql, IndexTest]:
    """An address or network on any of ``sides``: SQL for flows and alerts, and the index
    test (the address ids the same match selects in ``ix_addr``)."""
    match, params = _address_clause(word, value)
    plain = " OR ".join(match.format(address=f"{side}addr") for side in sides)
    values = params * len(sides)
    if _is_address(value):  # (its one parameter: the address as AWS writes it)
        index = IndexTest(sides, address=params[0])
    else:
        index = IndexTest(sides, ids=(f"SELECT id FROM ix_addr WHERE "
                                      f"{match.format(address='address')}", params))
    return (f"({plain})", values), (f"({plain})", values), index


def _address_clause(word: str, value: str) -> Sql:
    """SQL over ``{address}`` and parameters for one address or network."""
    if _is_address(value):
        address = str(ipaddress.ip_address(value)).lower() if ":" in value else value
        return "{address} = ?", [address]
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise FilterError(f"'{word}': not an IP address or CIDR, nor a known term ({SYNTAX})"
                          ) from None
    if network.version == 6:
        return _ipv6_network(network)
    return _ipv4_network(network)


def _ipv4_network(network: ipaddress.IPv4Network) -> Sql:
    """Addresses are dotted decimal strings: the network's whole octets are a string prefix
    (exact with its trailing dot), tested as the range of strings from the prefix to the
    prefix with its dot raised to "/", which DuckDB pushes into its scans (a feed page of 1 M
    alerts: 3 ms instead of 16 with ``starts_with`` when no alert is in the network, 7
    instead of 9 when half are); the integer range is only tested for the octet the prefix
    length cuts through."""
    if network.prefixlen == 0:  # every IPv4 address, no IPv6 one
        return "NOT contains({address}, ':')", []
    if network.prefixlen == 32:  # one address (its whole octets, with a dot, matched none)
        return "{address} = ?", [str(network.network_address)]
    octets = network.prefixlen // 8
    prefix = "".join(f"{part}." for part in str(network.network_address).split(".")[:octets])
    tests, params = [], []
    if prefix:
        tests.append("{address} >= ? AND {address} < ?")
        params += [prefix, prefix[:-1] + "/"]
    if network.prefixlen % 8:
        tests.append("ip4({address}) BETWEEN ? AND ?")
        params += [int(network.network_address), int(network.broadcast_address)]
    return " AND ".join(tests), params


def _ipv6_network(network: ipaddress.IPv6Network) -> Sql:
    """IPv6 text has many forms (``::``, leading zeros, case): compare as 128-bit integers.
    The 128-bit bounds travel as text."""
    if network.prefixlen == 0:
        return "contains({address}, ':')", []
    return ("ip6({address}) BETWEEN ?::UHUGEINT AND ?::UHUGEINT",
            [str(int(network.network_address)), str(int(network.broadcast_address))])


def _looks_like_ipv6(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9A-Fa-f:.]+(/\d{1,3})?", text)) and text.count(":") >= 2


def _decimal(value: str) -> bool:
    """ASCII digits only (``str.isdigit`` takes '²', which ``int`` refuses: typing
    ``port:²`` ended the app)."""
    return value.isascii() and value.isdigit()


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


Keyed = tuple[Sql | None, Sql | None, IndexTest | None]  # flows, alerts, index


def _port(word: str, value: str) -> Keyed:
    if not _decimal(value) or int(value) > 65535:
        raise FilterError(f"'{word}': a port is a number from 0 to 65535")
    port = int(value)
    return (("(srcport = ? OR dstport = ?)", [port, port]), ("dstport = ?", [port]),
            IndexTest(("srcport", "dstport"), port))


def _proto(word: str, value: str) -> Keyed:
    number = PROTOCOLS.get(value.lower())
    if number is None:
        if not _decimal(value) or int(value) > 255:
            raise FilterError(f"'{word}': a protocol is {', '.join(PROTOCOLS)} or 0-255")
        number = int(value)
    return ("protocol = ?", [number]), ("protocol = ?", [number]), IndexTest(("protocol",), number)


def _action(word: str, value: str) -> Keyed:
    if value.lower() not in ACTIONS:
        raise FilterError(f"'{word}': action is accept or reject")
    action = value.upper()
    return ("action = ?", [action]), None, IndexTest(("action",), action)


def _rule(word: str, value: str) -> Keyed:
    if not re.fullmatch(r"[A-Za-z0-9_.*-]+", value):
        raise FilterError(f"'{word}': a rule id has letters, digits, '.', '_', '-' and '*'")
    pattern = value.replace("_", "\\_").replace("*", "%")
    return None, ("rule_id LIKE ? ESCAPE '\\'", [pattern]), None


def _field(column: str) -> Callable[[str, str], Keyed]:
    def build(word: str, value: str) -> Keyed:
        # an alert's own column (alerts say where they happened), else its key (older alerts)
        return ((f"{column} = ?", [value]),
                (f"coalesce({column}, json_extract_string(group_key, '$.{column}')) = ?",
                 [value]),
                IndexTest((column,), value))
    return build


_KEYED: dict[str, Callable[[str, str], Keyed]] = {
    "port": _port,
    "proto": _proto,
    "action": _action,
    "rule": _rule,
    "eni": _field("interface_id"),
    "vpc": _field("vpc_id"),
    "acct": _field("account_id"),
}
