"""The headless command line: scan, query, import-wazuh, the lock, and exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from core.store.statedir import StateLock
from tests import flowgen
from tests.conftest import VPCWATCH, query, run_json, write_config
from tui.cli import main


def scan_files(tmp_path: Path) -> tuple[Path, int, int]:
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    a = flowgen.flow_object(flowgen.V2, 120, seed=1)
    b = flowgen.flow_object(flowgen.CUSTOM, 80, seed=2)
    (folder / "a.log.gz").write_bytes(a.gz())
    (folder / "sub" / "b.log").write_bytes(b.text())
    (folder / "sub" / "trail.json.gz").write_bytes(flowgen.trail_object(
        [flowgen.trail_event("CreateVpc", event_id="e1")]))
    (folder / "README.txt").write_text("ignored")
    return folder, a.records + b.records, a.total_bytes + b.total_bytes


def test_scan_then_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, records, total_bytes = scan_files(tmp_path)
    state = tmp_path / "state"
    code, summary = run_json(["scan", str(folder), "--state-dir", str(state), "--json"], capsys)
    assert code == 0
    assert summary["objects"]["done"] == 3
    assert (summary["records"], summary["events"]) == (records, 1)
    assert summary["seconds"] > 0 and isinstance(summary["bytes"], int)
    ledger = dict(query(state, "SELECT regexp_extract(key, '[^/]+$'), records FROM objects"))
    assert ledger == {"a.log.gz": 120, "b.log": 80, "trail.json.gz": 1}  # events count too

    assert main(["query", "--state-dir", str(state), "--format", "json",
                 "SELECT count(*) AS n, sum(bytes) AS b FROM flows"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": records, "b": total_bytes}

    assert main(["query", "--state-dir", str(state), "SELECT event_name FROM cloudtrail"]) == 0
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == [["event_name"],
                                                                      ["CreateVpc"]]

    code, again = run_json(["scan", str(folder), "--state-dir", str(state), "--json"], capsys)
    assert code == 0
    assert again["records"] == 0 and again["objects"]["done"] == 0


def test_query_prints_every_row_a_batch_at_a_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows come from DuckDB and become Python objects a batch at a time (as Python objects
    all at once, 2 M flows took 4.3 GB and 10 M more than the host had; as one Arrow table,
    a result was whole in memory, outside DuckDB's limit): as many batches as it takes, each
    row once, in order."""
    import core.sandbox

    folder, records, _ = scan_files(tmp_path)
    state = tmp_path / "state"
    assert run_json(["scan", str(folder), "--state-dir", str(state), "--json"], capsys)[0] == 0
    monkeypatch.setattr(core.sandbox, "BATCH_ROWS", 7)
    handed: list[int] = []  # the rows of each batch DuckDB handed over
    batches = core.sandbox.Sandbox.batches

    def counted(self: Any, *args: Any) -> Any:
        for batch in batches(self, *args):
            handed.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(core.sandbox.Sandbox, "batches", counted)
    sql = "SELECT srcaddr, dstport, bytes FROM flows ORDER BY start, srcaddr, dstport, bytes"
    expected = query(state, sql)
    assert len(expected) == records > 10 * 7  # (many batches)
    assert main(["query", "--state-dir", str(state), "--format", "json", sql]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["srcaddr"], r["dstport"], r["bytes"]) for r in shown] == expected
    assert main(["query", "--state-dir", str(state), sql]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["srcaddr", "dstport", "bytes"]  # (one header)
    assert [(a, int(p), int(b)) for a, p, b in rows[1:]] == expected
    assert max(handed) == 7 and sum(handed) == 2 * records
    assert main(["query", "--state-dir", str(state), f"{sql} LIMIT 0"]) == 0  # (no row)
    assert capsys.readouterr().out == "srcaddr,dstport,bytes\n"


def test_query_is_read_only_and_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, _ = scan_files(tmp_path)
    state = tmp_path / "state"
    main(["scan", str(folder), "--state-dir", str(state)])
    capsys.readouterr()
    assert main(["query", "--state-dir", str(state), "DELETE FROM objects"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "only queries run here" in err[0]
    assert main(["query", "--state-dir", str(state), "SELEC 1"]) == 2
    assert main(["query", "--state-dir", str(tmp_path / "none"), "SELECT 1"]) == 1


def test_a_second_writer_is_told_who_owns_the_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, _ = scan_files(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with StateLock(state):
        assert main(["scan", str(folder), "--state-dir", str(state)]) == 1
    err = capsys.readouterr().err
    assert "is in use by pid" in err
    # the lock names the command, options left out (`vpcwatch -v collect`, the service's
    # command line, was "(vpcwatch -v)")
    assert main(["-v", "scan", str(folder), "--state-dir", str(state)]) == 0
    assert (state / "vpcwatch.lock").read_text().endswith("(vpcwatch scan)")


def test_query_while_a_collector_writes_names_the_collector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, _ = scan_files(tmp_path)
    state = tmp_path / "state"
    assert main(["scan", str(folder), "--state-dir", str(state)]) == 0
    capsys.readouterr()
    with StateLock(state):  # what a running collect holds
        assert main(["query", "--state-dir", str(state), "SELECT 1"]) == 1
    assert "is being written by pid" in capsys.readouterr().err
    assert main(["query", "--state-dir", str(state), "SELECT 1"]) == 0


def test_scan_of_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["scan", str(tmp_path / "nope"), "--state-dir", str(tmp_path)]) == 2


OSSEC = """<ossec_config>
  <wodle name="aws-s3">
    <disabled>no</disabled>
    <interval>10m</interval>
    <run_on_start>yes</run_on_start>
    <skip_on_error>yes</skip_on_error>
    <bucket type="vpcflow">
      <name>wazuh-aws-wodle</name>
      <path>vpc</path>
      <aws_profile>default</aws_profile>
      <aws_account_id>123456789012,210987654321</aws_account_id>
      <only_logs_after>2018-AUG-21</only_logs_after>
      <remove_from_bucket>no</remove_from_bucket>
      <access_key>AKIAIOSFODNN7EXAMPLE</access_key>
      <secret_key>wJalrXUtnFEMI/K7MDENG</secret_key>
      <discard_regex field="action">REJECT</discard_regex>
    </bucket>
    <bucket type="cloudtrail">
      <name>trail-bucket</name>
      <service_endpoint>https://s3.internal.example</service_endpoint>
    </bucket>
    <bucket type="guardduty"><name>gd</name></bucket>
  </wodle>
</ossec_config>
<ossec_config><global><jsonout_output>yes</jsonout_output></global></ossec_config>
"""


def test_import_wazuh_prints_valid_toml_whatever_the_file_holds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(Found by an adversarial review: an emoji became JSON's surrogate pair, a tag given
    twice a key given twice, neither TOML; a month interval that was not a number failed.)"""
    ossec = tmp_path / "ossec.conf"
    ossec.write_text('<ossec_config><wodle name="aws-s3"><interval>xM</interval>'
                     '<bucket type="vpcflow"><name>logs</name><name>other</name><caf\u00e9/>'
                     '<aws_account_alias>prod \U0001F600 \u202e\t "q" \\</aws_account_alias>'
                     '<iam_role_duration>\u0661\u0662</iam_role_duration>'
                     "</bucket></wodle></ossec_config>", encoding="utf-8")
    assert main(["import-wazuh", str(ossec)]) == 0
    out = capsys.readouterr().out
    assert out.isascii() and "\t" not in out  # (printed: nothing a terminal would act on)
    document = tomllib.loads(out)
    assert document["general"] == {} and "'xM' is not a duration" in out
    assert document["bucket"] == [{"type": "vpcflow", "name": "logs",
                                   "aws_account_alias": 'prod \U0001F600 \u202e\t "q" \\'}]
    assert "<name> given again ('other')" in out and "<caf\\xe9> has no" in out
    for interval, kept in (("0", None), ("9999M", None), ("2M", "60d")):  # (what config takes)
        ossec.write_text(f'<ossec_config><wodle name="aws-s3"><interval>{interval}</interval>'
                         '<bucket type="vpcflow"><name>logs</name></bucket></wodle>'
                         "</ossec_config>")
        assert main(["import-wazuh", str(ossec)]) == 0
        assert tomllib.loads(capsys.readouterr().out)["general"].get("interval") == kept


def test_import_wazuh_says_which_interval_it_uses_of_several_blocks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(Found by an adversarial test: a second block's interval was dropped silently.)"""
    ossec = tmp_path / "ossec.conf"
    ossec.write_text("<ossec_config>" + "".join(
        f'<wodle name="aws-s3"><interval>{every}</interval><bucket type="vpcflow">'
        f"<name>logs-{n}</name></bucket></wodle>" for n, every in enumerate(["10m", "1h"]))
        + "</ossec_config>")
    assert main(["import-wazuh", str(ossec)]) == 0
    out = capsys.readouterr().out
    assert tomllib.loads(out)["general"]["interval"] == "10m"
    assert "this block's <interval> '1h' is not used" in out


def test_import_wazuh_prints_a_valid_equivalent_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ossec = tmp_path / "ossec.conf"
    ossec.write_text(OSSEC)
    assert main(["import-wazuh", str(ossec)]) == 0
    out = capsys.readouterr().out
    assert "AKIA" not in out and "wJalr" not in out
    assert "remove_from_bucket" in out and "guardduty" in out
    document = tomllib.loads(out)
    assert document["general"] == {"interval": "10m", "run_on_start": True,
                                   "skip_on_error": True}
    vpc, trail = document["bucket"]
    assert vpc == {"type": "vpcflow", "name": "wazuh-aws-wodle", "path": "vpc",
                   "aws_profile": "default",
                   "aws_account_id": ["123456789012", "210987654321"],
                   "only_logs_after": "2018-08-21", "discard_field": "action",
                   "discard_regex": "REJECT"}
    assert trail == {"type": "cloudtrail", "name": "trail-bucket",
                     "endpoint_url": "https://s3.internal.example"}
    converted = tmp_path / "converted.toml"
    converted.write_text(out)
    from core.config import load_config

    assert len(load_config(converted).buckets) == 2


def test_no_command_opens_the_app_and_without_a_config_says_what_to_do(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main([]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "vpcwatch" / "config.toml") in err and "vpcwatch demo" in err


def test_scan_exits_1_when_a_file_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.log").write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    (tmp_path / "bad.log.gz").write_bytes(b"not gzip")
    code, summary = run_json(["scan", str(tmp_path), "--state-dir", str(tmp_path / "s"),
                              "--json"], capsys)
    assert summary["objects"]["quarantined"] == 1 and summary["objects"]["done"] == 1
    assert code == 1


def test_the_apps_options_work_without_naming_tui(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vpcwatch [tui] [--config FILE] [--no-mouse]` as the README says (argparse refused
    them without `tui`)."""
    missing = tmp_path / "none.toml"
    for args in (["--config", str(missing)], ["--no-mouse", "--config", str(missing)],
                 ["tui", "--config", str(missing)], ["--config", str(missing), "tui"]):
        assert main(args) == 2
        assert f"no configuration at {missing}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # (a command's own --config would replace it)
        main(["--config", str(missing), "alerts"])
    assert exit_.value.code == 2 and "put them after `alerts`" in capsys.readouterr().err


def test_a_negative_alerts_limit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:  # (DuckDB's "Binder Error" before)
        main(["alerts", "--limit", "-1"])
    assert exit_.value.code == 2 and "not a number of rows" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["inf", "nan", "1e10", "0"])
def test_a_query_timeout_out_of_range_is_a_usage_error(
        timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    """(`--timeout inf` printed a thread's traceback and ran the query with no timeout.)"""
    with pytest.raises(SystemExit) as exit_:
        main(["query", "--timeout", timeout, "SELECT 1"])
    assert exit_.value.code == 2 and "from 0 to 86400" in capsys.readouterr().err


def test_a_bug_reading_one_file_quarantines_it_and_the_scan_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parser's bug is simulated (a monkeypatched reader raising for one file): the bugs
    an adversarial review found each made `scan` of a folder store nothing at all."""
    import core.scan

    for name in ("a.log", "b.log", "c.log"):
        (tmp_path / name).write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    real = core.scan.read_object

    def buggy(ref: Any, *args: Any) -> Any:
        if ref.key.endswith("b.log"):
            raise RecursionError("maximum recursion depth exceeded")
        return real(ref, *args)

    monkeypatch.setattr(core.scan, "read_object", buggy)
    code, summary = run_json(["scan", str(tmp_path), "--state-dir", str(tmp_path / "s"),
                              "--json"], capsys)
    assert summary["objects"]["quarantined"] == 1 and summary["objects"]["done"] == 2
    assert summary["records"] == 10 and code == 1


def test_quarantined_objects_are_read_again_when_asked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A quarantined object keeps its status while its ETag does (so a bad object is not
    read at every poll); once its cause is mended, --retry-quarantined reads it again."""
    logs = tmp_path / "logs"
    logs.mkdir()
    big = flowgen.flow_object(flowgen.V2, 20_000, seed=3)  # (about 1.5 MB expanded)
    (logs / "big.log.gz").write_bytes(big.gz())
    bucket = [{"type": "vpcflow", "name": "unused"}]
    small = write_config(tmp_path, bucket, max_object_size="1MiB")
    scan = ["scan", str(logs), "--config", str(small), "--json"]
    code, first = run_json(scan, capsys)
    assert (code, first["objects"]["quarantined"], first["records"]) == (1, 1, 0)
    write_config(tmp_path, bucket, max_object_size="16MiB")  # the cause mended
    code, kept = run_json(scan, capsys)  # (left alone: not read again)
    assert (kept["objects"]["done"], kept["records"]) == (0, 0)
    assert main([*scan, "--retry-quarantined"]) == 0
    out, err = capsys.readouterr()
    again = json.loads(out.splitlines()[-1])
    assert (again["objects"]["done"], again["records"]) == (1, big.records)
    assert "1 quarantined objects will be read again" in err


def test_a_reader_that_leaves_early_ends_the_output_quietly(tmp_path: Path) -> None:
    """`vpcwatch alerts | head -1`, and `query`: no "Broken pipe" message; the exit status a
    shell gives a tool that SIGPIPE ended (128 + 13). (`query` once hung there for ever: its
    sandbox's lock was still held by the unfinished read when the sandbox was closed.)"""
    log = tmp_path / "many.log"
    log.write_bytes(flowgen.flow_object(flowgen.V2, 3000, seed=5).text())
    state = tmp_path / "state"
    assert main(["scan", str(log), "--state-dir", str(state)]) == 0
    for command in (["alerts", "--json", "--min-level", "3"],
                    ["query", "--format", "json", "SELECT * FROM flows"]):
        process = subprocess.Popen([str(VPCWATCH), *command, "--state-dir", str(state)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        assert json.loads(process.stdout.readline())
        process.stdout.close()  # as `head -1` does after its line
        assert process.wait(timeout=60) == 141
        assert process.stderr.read() == b""


def test_version_and_journald_priorities(tmp_path: Path) -> None:
    """Under systemd (JOURNAL_STREAM names the stderr stream), each log line carries its
    priority as "<N>", which the journal keeps as the entry's priority."""
    version = subprocess.run([str(VPCWATCH), "--version"], capture_output=True, text=True,
                             check=True)
    assert version.stdout.strip().startswith("vpcwatch ")
    (tmp_path / "a.log").write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    (tmp_path / "bad.log.gz").write_bytes(b"not gzip")
    err = tmp_path / "stderr"
    for journal in (False, True):
        with err.open("w") as stream:
            status = os.fstat(stream.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
            if not journal:
                env.pop("JOURNAL_STREAM")
            subprocess.run([str(VPCWATCH), "scan", str(tmp_path), "--state-dir",
                            str(tmp_path / f"s{journal}")], stderr=stream,
                           stdout=subprocess.DEVNULL, env=env, check=False)
        lines = err.read_text().splitlines()
        warning = next(line for line in lines if "quarantined" in line)
        assert warning.startswith("<4>vpcwatch: WARNING: " if journal else "vpcwatch: WARNING: ")


def test_rules_without_an_action_is_a_usage_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an adversarial test: `vpcwatch rules` started the app, which collected."""
    with pytest.raises(SystemExit) as ended:
        main(["rules"])
    assert ended.value.code == 2
    assert "ACTION" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["alerts"], ["alerts", "--json"], ["query", "SELECT 1"]])
def test_a_closed_standard_output_is_an_error(tmp_path: Path, command: list[str]) -> None:
    """`vpcwatch alerts >&-` printed nothing and exited 0 (Python has no sys.stdout then, and
    print() writes nothing); `--json` and `query` failed as internal errors. Found by an
    adversarial test."""
    (tmp_path / "a.log").write_bytes(flowgen.flow_object(flowgen.V2, 5, seed=1).text())
    assert main(["scan", str(tmp_path / "a.log"), "--state-dir", str(tmp_path / "s")]) == 0
    words = " ".join(f"'{word}'" for word in [str(VPCWATCH), *command, "--state-dir",
                                               str(tmp_path / "s")])
    ran = subprocess.run(["sh", "-c", f"exec {words} >&-"], capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 1
    assert ran.stderr == "vpcwatch: standard output is closed: nothing could be printed\n"
