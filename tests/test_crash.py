"""kill -9 in the middle of a collect, then a restart: not one record lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import flowgen
from tests.conftest import Bucket, LineReader, query, write_config
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

    assert main(["collect", "--config", str(config), "--once", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["objects"]["done"] == OBJECTS - done_before

    stored = dict(query(state, "SELECT object_key, count(*) FROM flows GROUP BY 1"))
    statuses = query(state, "SELECT DISTINCT status FROM objects")
    assert stored == expected
    assert statuses == [("done",)]
