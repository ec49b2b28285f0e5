"""Traffic for the detection tests: a benign baseline and one scenario per detection.

Each scenario says which alert it must raise: the rule, the group key and the figures, all
written down here by construction, not computed by vpcwatch. Nothing here imports vpcwatch.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from tests.flowgen import BASE_TIME

HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets "
          "bytes start end action log-status")
ACCOUNT = "111122223333"
WEB = [("eni-0000000000000web1", "10.0.1.10"), ("eni-0000000000000web2", "10.0.1.11")]
DB = ("eni-00000000000000db1", "10.0.2.20")
APP = ("eni-0000000000000app1", "10.0.2.45")
DNS = ("eni-0000000000000dns1", "10.0.0.2")
START = BASE_TIME - 3 * 3600  # the baseline covers three hours before BASE_TIME


def line(eni: str, src: str, dst: str, sport: int, dport: int, proto: int, packets: int,
         nbytes: int, start: int, action: str = "ACCEPT", status: str = "OK") -> str:
    return (f"2 {ACCOUNT} {eni} {src} {dst} {sport} {dport} {proto} {packets} {nbytes} "
            f"{start} {start + 60} {action} {status}")


def benign(records: int, seed: int = 5) -> list[str]:
    """Ordinary traffic spread over three hours: web clients from the internet and the
    servers' replies (a well-known source port to ephemeral ports), web to database, DNS,
    outbound HTTPS, the internet's background of refused connections."""
    rng = random.Random(seed)
    clients = [f"{rng.choice([52, 54, 3, 18, 34])}.{rng.randrange(256)}.{rng.randrange(256)}."
               f"{rng.randrange(1, 255)}" for _ in range(3000)]
    lines = []
    for i in range(records):
        t = START + (i * 3 * 3600) // records
        kind = i % 10
        eni, address = WEB[i % 2]
        client = rng.choice(clients)
        ephemeral = rng.randrange(32768, 61000)
        if kind < 4:  # a client's request
            lines.append(line(eni, client, address, ephemeral, 443, 6, 8,
                              rng.randrange(500, 9000), t))
        elif kind < 7:  # the server's reply
            lines.append(line(eni, address, client, 443, ephemeral, 6, 12,
                              rng.randrange(2000, 60000), t))
        elif kind == 7:  # web to database
            lines.append(line(DB[0], address, DB[1], ephemeral, 5432, 6, 20,
                              rng.randrange(1000, 30000), t))
        elif kind == 8:  # DNS
            lines.append(line(DNS[0], f"10.0.{rng.randrange(1, 3)}.{rng.randrange(2, 250)}",
                              DNS[1], rng.randrange(1024, 65535), 53, 17, 1,
                              rng.randrange(60, 300), t))
        else:  # outbound HTTPS, or a refused probe from the internet's background noise
            if rng.random() < 0.8:
                lines.append(line(APP[0], APP[1], rng.choice(clients), ephemeral, 443, 6, 30,
                                  rng.randrange(1000, 200000), t))
            else:
                lines.append(line(eni, f"46.{rng.randrange(256)}.{rng.randrange(256)}.9",
                                  address, rng.randrange(1024, 65535),
                                  rng.choice([23, 445, 3389, 8080]), 6, 1, 40, t, "REJECT"))
    return lines


@dataclass
class Expected:
    """An alert a scenario must raise; ``count`` and ``bytes`` None: not known in advance
    (they include baseline traffic of the same minute), only checked by the test's own sums."""

    rule: str
    group: dict[str, object]
    count: int | None
    bytes: int | None = None


@dataclass
class Scenario:
    name: str
    lines: list[str] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)


WINDOW_START = BASE_TIME - 3600  # a multiple of 600 and 300, inside the baseline's hours


def detections() -> list[Scenario]:
    t = WINDOW_START + 20
    scan = Scenario("portscan")
    scan.lines = [line(WEB[0][0], "203.0.113.66", WEB[0][1], 40000 + p, p, 6, 1, 44, t, "REJECT")
                  for p in range(1, 101)]
    scan.expected = [Expected("vpc.portscan", {"srcaddr": "203.0.113.66",
                                               "dstaddr": WEB[0][1]}, 100, 4400)]

    sweep = Scenario("sweep")
    sweep.lines = [line(f"eni-sweep{h:012d}", "198.51.100.99", f"10.0.3.{h}", 50000 + h, 3389, 6,
                        1, 44, t, "REJECT") for h in range(1, 31)]
    sweep.expected = [Expected("vpc.sweep", {"srcaddr": "198.51.100.99", "dstport": 3389}, 30,
                               1320)]

    ssh = Scenario("ssh from the internet")
    ssh.lines = [line(WEB[1][0], "198.51.100.23", WEB[1][1], 50000 + i, 22, 6, 12, 2800, t)
                 for i in range(12)]
    ssh.expected = [Expected("vpc.sensitive_port_from_internet",
                             {"srcaddr": "198.51.100.23", "dstaddr": WEB[1][1], "dstport": 22},
                             12, 12 * 2800)]

    exfil = Scenario("exfiltration")
    exfil.lines = [line(APP[0], APP[1], "192.0.2.200", 51515, 443, 6, 200_000, 300_000_000, t)
                   for _ in range(6)]
    exfil.expected = [Expected("vpc.exfiltration", {"srcaddr": APP[1], "dstaddr": "192.0.2.200"},
                               6, 1_800_000_000)]

    spike = Scenario("traffic spike")  # an interface quiet for an hour, then 300 MB in a minute
    eni = "eni-00000000000spike1"
    quiet = [line(eni, "10.0.5.5", "10.0.5.6", 40000, 9000, 6, 100, 1_000_000,
                  WINDOW_START - 3600 + 60 * m) for m in range(60)]
    burst = [line(eni, "10.0.5.5", "10.0.5.6", 40001, 9000, 6, 100_000, 100_000_000, t)
             for _ in range(3)]
    spike.lines = quiet + burst
    spike.expected = [Expected("vpc.traffic_spike.interface", {"interface_id": eni}, 3,
                               300_000_000)]

    lost = Scenario("skipdata")
    lost.lines = [f"2 {ACCOUNT} {DB[0]} - - - - - - - {t} {t + 60} - SKIPDATA"]
    lost.expected = [Expected("vpc.skipdata", {"resource": DB[0]}, 1)]

    blocked = Scenario("blocklisted peer")
    blocked.lines = [line(WEB[0][0], "45.33.32.156", WEB[0][1], 41000 + i, 443, 6, 5, 900, t)
                     for i in range(3)]
    blocked.expected = [Expected("vpc.blocklist", {"srcaddr": "45.33.32.156",
                                                   "dstaddr": WEB[0][1]}, 3, 2700)]
    return [scan, sweep, ssh, exfil, spike, lost, blocked]


BLOCKLIST = "# test blocklist\n45.33.32.0/24\n2001:db8::bad  # one IPv6 address\n"


def spikes_with_baseline() -> list[Expected]:
    """Over the benign baseline's hours of history, the exfiltration minute (1.8 GB) is also a
    spike, for its interface and for the account; their figures include baseline flows."""
    return [Expected("vpc.traffic_spike.interface", {"interface_id": APP[0]}, None),
            Expected("vpc.traffic_spike.account", {"account_id": ACCOUNT}, None)]


def parity_groups(lines: list[str], action: str) -> Counter[tuple[str, str, int, str, int]]:
    """Parity alerts expected: flows per (src, dst, service port, protocol, 10 minutes), the
    service port being the lower of the two."""
    groups: Counter[tuple[str, str, int, str, int]] = Counter()
    for text in lines:
        words = text.split()
        if words[12] == action and words[13] == "OK":
            port = min(int(words[5]), int(words[6]))
            groups[(words[3], words[4], port, words[7], int(words[10]) // 600 * 600)] += 1
    return groups


def minute_totals(lines: list[str], key_field: int, key: str, minute: int) -> tuple[int, int]:
    """Flows and bytes of OK records whose field ``key_field`` is ``key`` in that minute."""
    flows = total = 0
    for text in lines:
        words = text.split()
        if (words[13] == "OK" and words[key_field] == key
                and int(words[10]) // 60 * 60 == minute):
            flows += 1
            total += int(words[9])
    return flows, total


def text(lines: list[str]) -> bytes:
    return ("\n".join([HEADER, *lines]) + "\n").encode()
