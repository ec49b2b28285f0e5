"""Rule files: a bad rule is named and skipped, the others load; the rules commands; watch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.rules import load_engine
from core.scan import scan
from core.store import Store
from tests import flowgen, scenarios
from tests.conftest import Bucket, LineReader, write_config
from tests.test_collect import NOW
from tui.cli import main

GOOD = """
[[rule]]
id = "custom.many_rejects"
level = 6
title = "{srcaddr} was refused {count} times"
source = "vpcflow"
where = "action = 'REJECT'"
group_by = ["srcaddr"]
window = "5m"
having = "count(*) >= 3"
"""

BAD = {
    "unknown column": ('where = "no_such_field = 1"', "no_such_field"),
    "bad window": ('window = "soon"', "window 'soon' is not a duration"),
    "infinite window": ("window = inf", "window inf is not a duration"),  # (an OverflowError)
    "bad level": ("level = 99", "level must be an integer from 0 to 15"),
    "syntax": ('having = "count(* >= 3"', "Parser Error"),
    "unknown key": ('colour = "red"', "unknown key 'colour'"),
    "bad title field": ('title = "{nothing}"', "title field {nothing}"),
    "bad title format": ('title = "{bytes:wide}"', "the only format is :size"),
    # found by an adversarial test: each loaded, or ran, or was ignored, before
    "a second statement": ("where = \"true); COPY (SELECT 1) TO 'x.csv'; SELECT (true\"",
                           "must be one SQL expression"),
    "a wazuh id past 32 bits": ("wazuh_id = 99999999999999", "from 0 to 2147483647"),
    "enabled as text": ('enabled = "false"', "enabled must be true or false"),
    "compare without baseline": ('compare = "value > 1"', "compare needs a baseline"),
}


def rule_file(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_a_bad_rule_is_named_with_its_file_and_reason_and_the_others_load(tmp_path: Path) -> None:
    files = [rule_file(tmp_path, "good.toml", GOOD)]
    for n, (line, _) in enumerate(BAD.values()):
        body = GOOD.replace("custom.many_rejects", f"custom.bad{n}")
        key = line.split(" =")[0]
        body = "\n".join(row for row in body.splitlines() if not row.startswith(f"{key} ="))
        files.append(rule_file(tmp_path, f"bad{n}.toml", body + "\n" + line + "\n"))
    engine = load_engine(files, default_rules=False)
    Store(tmp_path, engine=engine).close()  # compiles the rules' SQL
    errors = engine.errors
    assert [rule.id for rule in engine.rules] == ["custom.many_rejects"]
    assert len(errors) == len(BAD)
    for n, (label, (_, reason)) in enumerate(BAD.items()):
        [message] = [e for e in errors if f"bad{n}.toml" in e]
        assert f"custom.bad{n}" in message and reason in message, label


def test_a_rule_checked_runs_nothing_and_a_misnamed_table_is_named(tmp_path: Path) -> None:
    """(An adversarial test: a ';' in a rule ran a COPY when the rule was checked, though it
    was then reported as not loaded; [[rules]] loaded no rule and said nothing.)"""
    written = tmp_path / "pwned.csv"
    rules = rule_file(tmp_path, "r.toml", (  # (its `where` closes the rule's first query)
        '[[rule]]\nid = "t.inject"\nlevel = 5\ntitle = "x"\nsource = "vpcflow"\n'
        'where = "true)) FROM (SELECT start AS _t FROM flows); COPY (SELECT 42 AS pwned) TO '
        f"'{written}'; SELECT ((true\"\nwindow = \"5m\"\n"))
    assert main(["rules", "check", str(rules)]) == 1
    assert not written.exists()
    plural = rule_file(tmp_path, "p.toml", GOOD.replace("[[rule]]", "[[rules]]"))
    assert "unknown table 'rules'" in "\n".join(load_engine([plural], default_rules=False).errors)


def test_a_rule_defined_twice_in_one_file_is_said(tmp_path: Path) -> None:
    """Across files a later definition replaces an earlier one (an override); twice in one
    file is a slip, and was silent (found by an adversarial test)."""
    path = rule_file(tmp_path, "twice.toml", GOOD + GOOD.replace("level = 6", "level = 9"))
    engine = load_engine([path], default_rules=False)
    assert [(rule.id, rule.level) for rule in engine.rules] == [("custom.many_rejects", 9)]
    assert engine.errors == [f"{path}: rule 'custom.many_rejects' is defined more than once "
                             "in this file; the last definition is used"]
    nameless = rule_file(tmp_path, "nameless.toml", "[[rule]]\nlevel = 3\n[[rule]]\nlevel = 4\n")
    assert not any("more than once" in error
                   for error in load_engine([nameless], default_rules=False).errors)


def test_a_rule_file_that_is_not_rules_is_named_and_the_others_load(tmp_path: Path) -> None:
    """(Found by an adversarial review: each of these crashed every command that loads the
    configuration.)"""
    files = [rule_file(tmp_path, "good.toml", GOOD), tmp_path / "latin1.toml",
             rule_file(tmp_path, "list.toml", 'rule = ["x"]\n')]
    files[1].write_bytes('[[rule]]\nid = "caf\u00e9"\n'.encode("latin-1"))
    engine = load_engine(files, default_rules=False)
    assert [rule.id for rule in engine.rules] == ["custom.many_rejects"]
    assert engine.errors == [f"{files[1]}: not valid TOML: 'utf-8' codec can't decode byte "
                             "0xe9 in position 18: invalid continuation byte",
                             f"{files[2]}: rules are [[rule]] tables"]


def test_rules_check_list_and_test_commands(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    good = rule_file(tmp_path, "good.toml", GOOD)
    assert main(["rules", "check", str(good)]) == 0
    assert "1 rules valid, 0 rejected" in capsys.readouterr().out
    bad = rule_file(tmp_path, "bad.toml", GOOD.replace("REJECT'", "REJECT"))
    assert main(["rules", "check", str(bad)]) == 1
    assert "custom.many_rejects" in capsys.readouterr().err

    assert main(["rules", "list"]) == 0
    listed = capsys.readouterr().out
    assert "vpc.portscan" in listed and "cloudtrail.create_vpc_denied" in listed
    assert "vpc.flow.accept" in listed and "derived from the flows" in listed

    probe = tmp_path / "probe.log"
    probe.write_bytes(scenarios.text([
        scenarios.line("eni-1", "203.0.113.66", "10.0.1.10", 40000 + p, p, 6, 1, 44,
                       scenarios.WINDOW_START, "REJECT") for p in range(1, 31)]))
    assert main(["rules", "test", "vpc.portscan", str(probe)]) == 0
    [alert] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (alert["rule_id"], alert["count"], alert["srcaddr"]) == ("vpc.portscan", 30,
                                                                   "203.0.113.66")
    assert alert["group"] == {"srcaddr": "203.0.113.66", "dstaddr": "10.0.1.10"}
    assert main(["rules", "test", "no.such.rule", str(probe)]) == 2


def test_a_user_rule_file_replaces_a_default_rule_and_can_switch_one_off(tmp_path: Path) -> None:
    override = rule_file(tmp_path, "mine.toml", """
[[rule]]
id = "vpc.exfiltration"
level = 13
title = "Egress {bytes}"
source = "vpcflow"
where = "action = 'ACCEPT' AND is_public(dstaddr)"
group_by = ["srcaddr", "dstaddr"]
window = "10m"
having = "sum(bytes) >= 100"

[[rule]]
id = "vpc.sweep"
enabled = false
level = 3
title = "x"
source = "vpcflow"
""")
    engine = load_engine([override])
    assert engine.errors == []
    rules = {rule.id: rule for rule in engine.rules}
    assert rules["vpc.exfiltration"].level == 13
    assert rules["vpc.exfiltration"].having == "sum(bytes) >= 100"
    assert "vpc.sweep" not in rules and "vpc.portscan" in rules


def test_the_parity_alerts_ids_are_reserved(tmp_path: Path) -> None:
    """The Wazuh-parity alerts are derived from the flows; a rule cannot take their id."""
    body = GOOD.replace("custom.many_rejects", "vpc.flow.reject")
    engine = load_engine([rule_file(tmp_path, "parity.toml", body)], default_rules=False)
    assert engine.rules == []
    [error] = engine.errors
    assert "rule 'vpc.flow.reject'" in error and "reserved" in error


def test_scan_json_prints_the_alerts_before_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json.gz"
    path.write_bytes(flowgen.trail_object([flowgen.trail_event("DeleteFlowLogs", event_id="e1")]))
    assert main(["scan", str(path), "--state-dir", str(tmp_path / "s"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("rule_id") for line in lines[:-1]] == ["cloudtrail.delete_flow_logs"]
    assert lines[-1]["alerts"] == 1 and lines[-1]["events"] == 1


def denied_create_vpc(tmp_path: Path, bucket: Bucket) -> Path:
    """A CloudTrail object of one refused CreateVpc in ``bucket``; a config reading it."""
    key = flowgen.trail_key("", "111111111111", "us-east-1", NOW, 1)
    bucket.put(key, flowgen.trail_object([flowgen.trail_event("CreateVpc", event_id="v1",
                                                               error="AccessDenied")]))
    return write_config(tmp_path, [{"type": "cloudtrail", "name": bucket.name,
                                    "endpoint_url": bucket.url}],
                        default_rules=True, interval="1h")


def test_watch_headless_prints_each_alert_as_it_commits(tmp_path: Path, bucket: Bucket) -> None:
    config = denied_create_vpc(tmp_path, bucket)
    process = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", "--config",
                                str(config), "--headless"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert process.stdout is not None
        alert = json.loads(LineReader(process.stdout).wait_for("rule_id"))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert alert["rule_id"] == "cloudtrail.create_vpc_denied"
    assert alert["group"] == {"event_id": "v1"} and alert["level"] == 8


def test_watch_headless_ends_when_the_reader_of_its_output_left(
        tmp_path: Path, bucket: Bucket) -> None:
    """`watch --headless | head -1`: a write to a pipe nobody reads ended the poll as failed,
    and the service went on polling for ever (found by an adversarial test). It ends as Unix
    tools do, with 141. (The pipe's reading end is closed before the first alert is written,
    so the first write fails, as after `head` left.)"""
    config = denied_create_vpc(tmp_path, bucket)
    reading, writing = os.pipe()
    os.close(reading)
    try:
        process = subprocess.run([sys.executable, "-m", "tui.cli", "watch", "--config",
                                  str(config), "--headless"], stdout=writing,
                                 stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writing)
    assert process.returncode == 141
    assert "poll failed" not in process.stderr and "Broken pipe" not in process.stderr


def test_watch_headless_at_level_3_prints_the_parity_alerts_each_commit_touched(
    tmp_path: Path, bucket: Bucket
) -> None:
    lines = scenarios.benign(2_000)
    bucket.put(flowgen.flow_key("", scenarios.ACCOUNT, "us-east-1", NOW, 1),
               flowgen.gzip_bytes(scenarios.text(lines)))
    expected = {action: scenarios.parity_groups(lines, action) for action in ("ACCEPT", "REJECT")}
    wanted = sum(len(groups) for groups in expected.values())
    config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                      "endpoint_url": bucket.url}],
                          default_rules=True, interval="1h", lookback="7d")
    process = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", "--config",
                                str(config), "--headless", "--min-level", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=os.environ.copy())
    try:
        assert process.stdout is not None
        reader = LineReader(process.stdout)
        shown = [json.loads(reader.wait_for('"derived": true')) for _ in range(wanted)]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    for action, rule, level in (("ACCEPT", "vpc.flow.accept", 3), ("REJECT", "vpc.flow.reject", 4)):
        rows = [a for a in shown if a["group"]["action"] == action]
        assert {a["rule_id"] for a in rows} == {rule} and {a["level"] for a in rows} == {level}
        assert sorted(a["count"] for a in rows) == sorted(expected[action].values())


def test_a_per_event_rule_failing_at_run_time_spares_the_others(tmp_path: Path) -> None:
    """The per-event rules run as one query; one that fails on some value (a cast, here) is
    reported and skipped for that batch, and the others still raise their alerts."""
    bad = rule_file(tmp_path, "bad.toml", """
[[rule]]
id = "custom.bad_cast"
level = 5
title = "never"
source = "cloudtrail"
where = "CAST(event_name AS INTEGER) > 0"
""")
    engine = load_engine([bad])
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=engine)
    assert engine.errors == []  # it compiles: it fails only on a value
    trail = tmp_path / "t.json.gz"
    trail.write_bytes(flowgen.trail_object([flowgen.trail_event(
        "CreateVpc", event_id="v1", error="Client.UnauthorizedOperation")]))
    try:
        summary = scan([trail], store, 2**30)
        rules = store.con.execute("SELECT rule_id FROM alerts").fetchall()
    finally:
        store.close()
    assert rules == [("cloudtrail.create_vpc_denied",)]
    [error] = summary.errors
    assert error.startswith("rule 'custom.bad_cast' failed: Conversion Error")


@pytest.mark.parametrize("where", [
    "tcp_flags IS NULL AND srcport > 0",  # (a field these records lack: NULL)
    "COLUMNS('^tcp_fl.*') IS NULL AND srcport > 0",  # (names tcp_flags without its name)
])
def test_a_rule_may_name_fields_the_records_lack(tmp_path: Path, where: str) -> None:
    """The new records reach the rules with NULL columns only for the fields the rules'
    queries name (each column costs the planning of every query); a rule that names
    columns without their names (COLUMNS) gets them all. Here v2 records, without
    tcp_flags, each raise the rule's alert."""
    rules = rule_file(tmp_path, "lacking.toml", f'''
[[rule]]
id = "custom.lacking"
level = 5
title = "{{srcaddr}}"
source = "vpcflow"
where = "{where}"
group_by = ["srcaddr"]
window = "5m"
''')
    engine = load_engine([rules], default_rules=False)
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=engine)
    log = tmp_path / "v2.log"
    lines = [scenarios.line(scenarios.APP[0], f"10.9.9.{n}", "10.0.0.5", 40000, 443, 6, 1, 80,
                            scenarios.START + n) for n in range(3)]
    log.write_bytes(scenarios.text(lines))
    try:
        assert engine.errors == []
        summary = scan([log], store, 2**30)
        sources = store.con.execute("SELECT srcaddr FROM alerts ORDER BY 1").fetchall()
    finally:
        store.close()
    assert summary.errors == []
    assert sources == [("10.9.9.0",), ("10.9.9.1",), ("10.9.9.2",)]
