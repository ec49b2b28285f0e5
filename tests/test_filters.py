"""The filter bar's language: what each term selects, checked against rows whose expected
membership is written out by hand, and the errors it gives."""

from __future__ import annotations

import duckdb
import pytest

from core.filters import FilterError, parse_filter
from core.rules import RuleEngine

# name, srcaddr, dstaddr, srcport, dstport, protocol, action, interface_id, account_id
ROWS = [
    ("a", "10.0.1.5", "8.8.8.8", 40000, 53, 17, "ACCEPT", "eni-1", "111"),
    ("b", "8.8.8.8", "10.0.1.5", 53, 40000, 17, "ACCEPT", "eni-1", "111"),
    ("c", "203.0.113.9", "10.0.1.6", 51000, 22, 6, "REJECT", "eni-2", "222"),
    ("d", "10.0.2.7", "192.0.2.1", 52000, 443, 6, "ACCEPT", "eni-3", "222"),
    ("e", None, None, None, None, None, None, "eni-3", "222"),  # a NODATA record
    ("f", "2001:db8::5", "2001:db8::6", 40001, 443, 6, "ACCEPT", "eni-4", "333"),
    ("g", "2600:1f18:0:ff00::1", "2001:0DB8:0:0:1::9", 443, 40002, 6, "ACCEPT", "eni-4", "333"),
]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    RuleEngine([]).install(con)
    con.execute("CREATE TABLE flows (name VARCHAR, srcaddr VARCHAR, dstaddr VARCHAR, "
                "srcport INTEGER, dstport INTEGER, protocol INTEGER, action VARCHAR, "
                "interface_id VARCHAR, account_id VARCHAR)")
    con.executemany("INSERT INTO flows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    # the traffic index's shape (core.traffic_index): addresses replaced by ids
    con.execute("CREATE TABLE ix_addr AS SELECT row_number() OVER (ORDER BY a)::INTEGER AS id, "
                "a AS address FROM (SELECT srcaddr a FROM flows UNION SELECT dstaddr FROM flows) "
                "WHERE a IS NOT NULL")
    con.execute("CREATE TABLE ix_flows AS SELECT f.* EXCLUDE (srcaddr, dstaddr), s.id AS src, "
                "d.id AS dst FROM flows f LEFT JOIN ix_addr s ON s.address = f.srcaddr "
                "LEFT JOIN ix_addr d ON d.address = f.dstaddr")
    return con


def selected(con: duckdb.DuckDBPyConnection, text: str) -> set[str]:
    where, params = parse_filter(text).flows_sql()
    return {r[0] for r in con.execute(f"SELECT name FROM flows WHERE {where}", params).fetchall()}


@pytest.mark.parametrize(("text", "expected"), [
    ("", {"a", "b", "c", "d", "e", "f", "g"}),
    ("10.0.1.5", {"a", "b"}),
    ("src:10.0.1.5", {"a"}),
    ("dst:10.0.1.5", {"b"}),
    ("10.0.0.0/16", {"a", "b", "c", "d"}),
    ("src:10.0.1.0/24", {"a"}),
    ("10.0.0.0/23", {"a", "b", "c"}),  # 10.0.0.0-10.0.1.255
    ("10.0.2.0/25", {"d"}),
    ("0.0.0.0/0", {"a", "b", "c", "d"}),
    ("port:53", {"a", "b"}),
    ("port:22 action:reject", {"c"}),
    ("proto:tcp", {"c", "d", "f", "g"}),
    ("proto:17", {"a", "b"}),
    ("!action:accept", {"c", "e"}),  # NULL action counts as "not accepted"
    ("!10.0.0.0/16", {"e", "f", "g"}),
    ("2001:db8::5", {"f"}),
    ("2001:db8::/32", {"f", "g"}),  # g's destination is written uncompressed, in capitals
    ("2001:db8::/112", {"f"}),  # 2001:db8::0-2001:db8::ffff
    ("dst:2001:db8:0:0:1::/80", {"g"}),
    ("src:2600:1f18::/40", {"g"}),
    ("2600:1f18:0:fe00::/56", set()),
    ("::/0", {"f", "g"}),
    ("!2001:db8::/32", {"a", "b", "c", "d", "e"}),
    ("eni:eni-3", {"d", "e"}),
    ("acct:222 !eni:eni-2", {"d", "e"}),
    ("rule:vpc.portscan", {"a", "b", "c", "d", "e", "f", "g"}),  # alerts only: flows not narrowed
])
def test_terms_select_the_expected_flows(con: duckdb.DuckDBPyConnection, text: str,
                                         expected: set[str]) -> None:
    assert selected(con, text) == expected
    where, params = parse_filter(text).index_sql()
    rows = con.execute(f"SELECT name FROM ix_flows WHERE {where}", params).fetchall()
    assert {r[0] for r in rows} == expected  # the index selects the same flows


def test_values_are_parameters_not_sql(con: duckdb.DuckDBPyConnection) -> None:
    assert selected(con, "eni:x'OR'1'='1") == set()


@pytest.mark.parametrize(("text", "reason"), [
    ("port:70000", "0 to 65535"),
    ("proto:smtp", "tcp"),
    ("action:drop", "accept or reject"),
    ("level>=16", "0 to 15"),
    ("colour:red", "unknown key 'colour:'"),
    ("10.0.0.300", "not an IP address"),
    ("port:", "needs a value"),
    ("!", "must be followed"),
    ("2001:db8::/129", "not an IP address or CIDR"),
])
def test_bad_terms_say_why(text: str, reason: str) -> None:
    with pytest.raises(FilterError, match=reason):
        parse_filter(text)


def test_alert_terms_and_notes() -> None:
    flt = parse_filter("rule:vpc.* level>=7 10.0.1.5 action:reject")
    where, params = flt.alerts_sql()
    assert "rule_id LIKE" in where and "level >= ?" in where
    assert params == ["vpc.%", 7, "10.0.1.5", "10.0.1.5"]
    assert flt.notes() == ["rule:vpc.*: alerts only", "level>=7: alerts only",
                           "action:reject: flows only"]
    assert parse_filter("10.0.1.5").single_address() == "10.0.1.5"
    assert parse_filter("!10.0.1.5").single_address() is None


def test_ipv6_addresses_are_addresses() -> None:
    _, params = parse_filter("2001:DB8::1").flows_sql()
    assert params == ["2001:db8::1", "2001:db8::1"]  # compressed lower case, as AWS writes
