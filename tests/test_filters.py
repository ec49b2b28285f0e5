"""The filter bar's language: what each term selects, checked against rows whose expected
membership is written out by hand (as SQL over flows, and on the app's traffic index built
from a real store), and the errors it gives."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from core.explorer import Explorer
from core.filters import FilterError, parse_filter
from core.rules import ALERTS_SCHEMA, RuleEngine
from core.scan import scan
from core.store import open_store
from tests.scenarios import text as log_text

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
    return con


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    """The same rows in a real store; each row's byte count is its position in ROWS."""
    lines = []
    for n, (_, src, dst, sport, dport, proto, action, eni, account) in enumerate(ROWS, 1):
        fields = [src, dst, sport, dport, proto, 1, n] if src else ["-"] * 7
        lines.append(" ".join(str(f) for f in ["2", account, eni, *fields, 1_764_000_000,
                                                1_764_000_060, action or "-",
                                                "OK" if src else "NODATA"]))
    path = tmp_path_factory.mktemp("filters")
    (path / "rows.log").write_bytes(log_text(lines))
    with open_store(path / "state") as store:
        scan([path / "rows.log"], store, 1 << 30)
        explorer = Explorer(store)
        yield explorer
        explorer.close()


def indexed(explorer: Explorer, text: str) -> set[str]:
    keep = explorer.index.select(parse_filter(text).index_tests())
    positions = explorer.index.columns["bytes"][keep].tolist()
    nodata = [n for n, row in enumerate(ROWS, 1) if row[1] is None]
    positions = [n if n else nodata[0] for n in positions]  # (a NODATA row has no bytes)
    return {ROWS[n - 1][0] for n in positions}


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
    ("8.0.0.0/7", {"a", "b"}),  # 8.0.0.0-9.255.255.255: no whole octet
    ("20.0.0.0/8", set()),  # "20." is not a prefix of 203.0.113.9
    ("203.0.113.0/24", {"c"}),
    ("10.0.1.5/32", {"a", "b"}),  # (one address: it matched nothing)
    ("src:10.0.1.5/32", {"a"}),
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
def test_terms_select_the_expected_flows(con: duckdb.DuckDBPyConnection, explorer: Explorer,
                                         text: str, expected: set[str]) -> None:
    assert selected(con, text) == expected
    assert indexed(explorer, text) == expected  # the index selects the same flows


def test_values_are_parameters_not_sql(con: duckdb.DuckDBPyConnection,
                                        explorer: Explorer) -> None:
    assert selected(con, "eni:x'OR'1'='1") == set()
    assert indexed(explorer, "eni:x'OR'1'='1") == set()


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
    ("port:²", "0 to 65535"),  # (a digit to str.isdigit, not to int(): it ended the app)
    ("proto:²", "0-255"),
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
    # the conversations' focus in the form the logs write it (the pane was empty)
    assert parse_filter("2001:DB8:0::1").single_address() == "2001:db8::1"


def test_ipv6_addresses_are_addresses() -> None:
    _, params = parse_filter("2001:DB8::1").flows_sql()
    assert params == ["2001:db8::1", "2001:db8::1"]  # compressed lower case, as AWS writes


def test_account_vpc_and_interface_terms_apply_to_alerts() -> None:
    """Alerts carry account_id, vpc_id and interface_id; older ones only in their key."""
    con = duckdb.connect()
    con.execute(ALERTS_SCHEMA)
    con.execute("""INSERT INTO alerts (id, account_id, vpc_id, interface_id, group_key) VALUES
        ('own', '111', 'vpc-1', 'eni-1', '{}'),
        ('keyed', NULL, NULL, NULL, '{"interface_id": "eni-1", "account_id": "111"}'),
        ('other', '222', 'vpc-2', 'eni-2', '{"interface_id": "eni-1"}')""")

    def ids(text: str) -> set[str]:
        where, params = parse_filter(text).alerts_sql()
        rows = con.execute(f"SELECT id FROM alerts WHERE {where}", params).fetchall()
        return {row[0] for row in rows}

    assert ids("acct:111") == {"own", "keyed"}
    assert ids("eni:eni-1") == {"own", "keyed"}  # the alert's own interface comes first
    assert ids("vpc:vpc-2") == {"other"}
    assert ids("!acct:111") == {"other"}
