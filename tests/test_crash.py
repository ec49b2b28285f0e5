"""kill -9 in the middle of a collect, then a restart: not one record lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.store import Store
from tests import flowgen
from tests.conftest import (
    Bucket,
    LineReader,
    assert_summary_is_the_flows,
    collect_once,
    query,
    write_config,
)
from tests.test_collect import NOW
from tui.cli import main

A = "111111111111"
OBJECTS = 40
RECORDS = 1500


@pytest.mark.parametrize("kill_after_commits", [1, 6])
def test_kill_9_mid_collect_then_restart_gives_exact_totals(
    tmp_path: Path, bucket: Bucket, capsys: pytest.CaptureFixture[str], kill_after_commits: int
) -> None:
    expected: dict[str, int] = {}
    for n in range(OBJECTS):
        obj = flowgen.flow_object(flowgen.V2, RECORDS, seed=n, account=A, skipdata=n % 2)
        key = flowgen.flow_key("", A, "us-east-1", NOW, n)
        bucket.put(key, obj.gz())
        expected[key] = obj.records
    config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                      "endpoint_url": bucket.url}],
                          concurrency=2, commit_records=RECORDS)

    command = [sys.executable, "-m", "tui.cli", "-v", "collect", "--config", str(config),
               "--once", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=os.environ.copy())
    assert process.stderr is not None
    LineReader(process.stderr).wait_for("committed", count=kill_after_commits)
    assert process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert process.stdout is not None and "objects" not in process.stdout.read()

    state = tmp_path / "state"
    [(done_before,)] = query(state, "SELECT count(*) FROM objects WHERE status='done'")
    assert 0 < done_before < OBJECTS  # killed mid-way

    code, summary = collect_once(config, capsys)
    assert code == 0
    assert summary["objects"]["done"] == OBJECTS - done_before

    stored = dict(query(state, "SELECT object_key, count(*) FROM flows GROUP BY 1"))
    statuses = query(state, "SELECT DISTINCT status FROM objects")
    assert stored == expected
    assert statuses == [("done",)]
    store = Store(state, read_only=True)
    try:
        assert_summary_is_the_flows(store.con)  # the summary of the lost batch left with it
    finally:
        store.close()


def test_kill_9_with_rules_gives_the_same_alerts_as_an_uninterrupted_run(
    tmp_path: Path, bucket: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests import scenarios

    lines = scenarios.benign(12_000) + [
        line for scenario in scenarios.detections() for line in scenario.lines]
    lines.sort(key=lambda text: int(text.split()[10]))  # by time, so windows span objects
    per_object = len(lines) // 12 + 1
    for n in range(12):
        key = flowgen.flow_key("", A, "us-east-1", NOW, n)
        bucket.put(key, flowgen.gzip_bytes(scenarios.text(lines[n * per_object:
                                                                 (n + 1) * per_object])))
    configs = {}
    for name in ("killed", "calm"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "blocklist.txt").write_text(scenarios.BLOCKLIST)
        configs[name] = write_config(folder, [{"type": "vpcflow", "name": bucket.name,
                                               "endpoint_url": bucket.url}],
                                     concurrency=1, commit_records=per_object,
                                     default_rules=True, blocklist=["blocklist.txt"])

    command = [sys.executable, "-m", "tui.cli", "-v", "collect", "--config",
               str(configs["killed"]), "--once"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    assert process.stderr is not None
    LineReader(process.stderr).wait_for("committed", count=4)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    [(done_before,)] = query(tmp_path / "killed" / "state",
                             "SELECT count(*) FROM objects WHERE status = 'done'")
    assert 0 < done_before < 12  # killed half-way
    assert main(["collect", "--config", str(configs["killed"]), "--once"]) == 0
    assert main(["collect", "--config", str(configs["calm"]), "--once"]) == 0
    capsys.readouterr()

    sql = ("SELECT id, rule_id, count, bytes, first_seen, last_seen, object_count FROM alerts "
           "ORDER BY id")
    killed = query(tmp_path / "killed" / "state", sql)
    calm = query(tmp_path / "calm" / "state", sql)
    assert killed == calm
    assert {row[1] for row in calm} >= {"vpc.portscan", "vpc.exfiltration"}
    derived = {}
    for name in ("killed", "calm"):  # the parity alerts, derived from the flows
        assert main(["alerts", "--config", str(configs[name]), "--min-level", "3",
                     "--json"]) == 0
        derived[name] = sorted((a["id"], a["count"], a["bytes"], a["object_count"])
                               for line in capsys.readouterr().out.splitlines()
                               if (a := json.loads(line))["derived"])
    assert derived["killed"] == derived["calm"] and len(derived["calm"]) > 100
