"""The SQL functions rules use: address classes and the blocklist."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from core.rules.functions import BlocklistError, install, read_blocklist

CLASSES = {  # address: (is_private, is_public), from the IANA special-purpose registries
    "10.1.2.3": (True, False), "172.16.0.1": (True, False), "172.31.255.255": (True, False),
    "172.32.0.1": (False, True), "192.168.1.1": (True, False), "100.64.1.1": (True, False),
    "100.128.0.1": (False, True), "127.0.0.1": (True, False), "169.254.169.254": (True, False),
    "8.8.8.8": (False, True), "224.0.0.1": (False, False), "0.1.2.3": (False, False),
    "fd00::1": (True, False), "fe80::1": (True, False), "2600:1f18::1": (False, True),
    "ff02::1": (False, False), "::1": (True, False),
}


def test_address_classes() -> None:
    con = duckdb.connect()
    install(con)
    for address, expected in CLASSES.items():
        assert con.execute("SELECT is_private(?), is_public(?)",
                           [address, address]).fetchall() == [expected], address


PRIVATE_V4 = [ipaddress.ip_network(n) for n in (  # (the networks is_private names)
    "10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "100.64.0.0/10")]


def test_ipv4_classes_for_every_first_two_octets() -> None:
    """Every first two octets (a.b.7.9): private when in one of the private networks,
    public when the first octet is 1-223 and the address not private (is_public is one
    regular expression that spells out "not private")."""
    addresses = [f"{a}.{b}.7.9" for a in range(256) for b in range(256)]
    expected = []
    for text in addresses:
        address = ipaddress.ip_address(text)
        private = any(address in network for network in PRIVATE_V4)
        expected.append((text, private, 1 <= int(text.split(".")[0]) <= 223 and not private))
    con = duckdb.connect()
    install(con)
    con.register("addresses", pa.table({"a": addresses}))
    found = con.execute("SELECT a, is_private(a), is_public(a) FROM addresses").fetchall()
    assert sorted(found) == sorted(expected)


def test_blocklist_matches_ipv4_and_ipv6_addresses_and_cidrs(tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("# comment\n203.0.113.0/24\n198.51.100.7\n2001:db8::bad\n"
                    "2001:db8:1::/120  # a small IPv6 network\n2a05:d000::/29\n\n")
    con = duckdb.connect()
    assert install(con, read_blocklist([path])) == 5
    expected = {
        "203.0.113.1": True, "203.0.114.1": False, "198.51.100.7": True, "198.51.100.8": False,
        "2001:db8::bad": True, "2001:DB8::BAD": True,
        # an address entry is compared as text (AWS writes the compressed form)
        "2001:0db8:0000:0000:0000:0000:0000:0bad": False,
        "2001:db8:1::ff": True, "2001:0DB8:1:0:0:0:0:FF": True, "2001:db8:1::1:0": False,
        "2a05:d007:ffff::1": True, "2a05:d008::": False, "::ffff:203.0.113.1": False,
        None: False,
    }
    hits = {a: con.execute("SELECT blocklisted(?)", [a]).fetchall()[0][0] for a in expected}
    assert hits == expected


def test_ip6_reads_every_text_form_of_an_address() -> None:
    con = duckdb.connect()
    install(con)
    rng = random.Random(7)
    expected: dict[str, str] = {}
    for _ in range(2000):  # runs of zero groups, so that "::" lands anywhere
        groups = [rng.choice((0, 0, rng.randrange(16), rng.randrange(65536))) for _ in range(8)]
        address = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
        for text in (address.compressed, address.exploded, address.compressed.upper()):
            expected[text] = str(int(address))
    rows = con.execute("SELECT t, ip6(t)::VARCHAR FROM unnest(?::VARCHAR[]) AS u(t)",
                       [list(expected)]).fetchall()
    assert dict(rows) == expected
    for text in ("1::2::3", "2001:db8::g", "1:2:3:4:5:6:7:8:9", "12345::1", "10.0.0.1",
                 "::ffff:1.2.3.4"):
        assert con.execute("SELECT ip6(?)", [text]).fetchall() == [(None,)], text


def test_a_bad_blocklist_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("10.0.0.0/8\nnot-an-address\n")
    with pytest.raises(BlocklistError, match=r"block.txt:2: 'not-an-address'"):
        read_blocklist([path])


def test_is_internet_means_outside_the_local_addresses_vpc_block() -> None:
    """IPv6: a global address in another /56 (the size of a VPC's block) is the internet;
    in the same /56 it is not. Checked against Python's ipaddress on random pairs."""
    con = duckdb.connect()
    install(con)
    install(con)  # (twice on one connection: the function is there already)
    rng = random.Random(56)
    pairs = [("2001:db8:1234:a100:8d6e:3477:df66:f105", "2001:db8:1234:a102:3304:8879:34cf:4071"),
             ("8.8.8.8", "10.0.0.1"), ("10.1.1.1", "10.0.0.1"), ("2600::1", None),
             ("2600:1f18::1", "10.0.0.1"), ("fd00::1", "2600:1f18::1")]
    for _ in range(300):
        base = rng.getrandbits(56) << 72 | 0x2600 << 112
        other = base ^ (rng.getrandbits(64) if rng.random() < 0.5 else rng.getrandbits(80))
        pairs.append((str(ipaddress.IPv6Address(base | rng.getrandbits(72))),
                      str(ipaddress.IPv6Address(other))))
    for address, local in pairs:
        a = ipaddress.ip_address(address)
        public = a.is_global and not a.is_multicast
        if a.version == 6 and local is not None and ":" in local:
            same = (int(a) >> 72) == (int(ipaddress.ip_address(local)) >> 72)
            expected = public and not same
        else:
            expected = public
        assert con.execute("SELECT is_internet(?, ?)", [address, local]).fetchall() == [
            (expected,)], (address, local)
    cursor = con.cursor()  # another connection of the app's reader: the same functions
    install(cursor)
    assert cursor.execute("SELECT is_internet('2600::1', '2600::2')").fetchall() == [(False,)]
