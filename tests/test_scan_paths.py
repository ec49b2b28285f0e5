"""What ``vpcwatch scan`` (and ``rules test``) read of the paths they are given: each file once,
whatever names or links reach it; what they do not read is said, never silently dropped."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tests import flowgen
from tests.conftest import query, run_json
from tui.cli import main


def logs(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A folder of two logs (one in a subfolder), a link to one of them beside it, and a
    link to a folder of a third log outside it; the records each log holds."""
    folder, outside = tmp_path / "logs", tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    written = {}
    for path, seed in ((folder / "a.log", 1), (folder / "sub" / "b.log", 2),
                       (outside / "c.log", 3)):
        flows = flowgen.flow_object(flowgen.V2, 10 * seed, seed=seed)
        path.write_bytes(flows.text())
        written[path.name] = flows.records
    (folder / "latest.log").symlink_to("a.log")
    (folder / "linked").symlink_to(outside)
    return folder, written


def ledger(state: Path) -> dict[str, int]:
    return dict(query(state, "SELECT regexp_extract(key, '[^/]+$'), records FROM objects"))


def test_a_file_named_twice_or_linked_is_read_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an adversarial test: a file reached twice (named twice, in a folder named
    too, or through a link beside it) made one commit with two results for it, refused as
    an internal error: nothing of the scan was stored."""
    folder, written = logs(tmp_path)
    state = tmp_path / "state"
    code, summary = run_json(["scan", str(folder), str(folder / "a.log"), str(folder / "a.log"),
                              "--state-dir", str(state), "--json"], capsys)
    assert code == 0
    assert ledger(state) == {"a.log": written["a.log"], "b.log": written["b.log"]}
    assert summary["records"] == written["a.log"] + written["b.log"]
    assert query(state, "SELECT count(*) FROM flows") == [(summary["records"],)]


def test_a_hard_link_or_a_link_to_a_folder_inside_is_read_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(Found by a review: a hard link was read as a second file, and a link to a folder
    inside the one scanned was said not followed, though its files were read.)"""
    folder, written = logs(tmp_path)
    os.link(folder / "a.log", folder / "z-hard.log")
    (folder / "current").symlink_to("sub")
    state = tmp_path / "state"
    code, summary = run_json(["scan", str(folder), "--state-dir", str(state), "--json"], capsys)
    assert code == 0 and summary["records"] == written["a.log"] + written["b.log"]
    assert ledger(state) == {"a.log": written["a.log"], "b.log": written["b.log"]}
    assert main(["scan", str(folder), "--state-dir", str(tmp_path / "again")]) == 0
    err = capsys.readouterr().err
    assert "linked: a link to a folder" in err and "current" not in err


def test_a_link_to_a_folder_is_not_followed_and_said_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, written = logs(tmp_path)
    assert main(["scan", str(folder), "--state-dir", str(tmp_path / "state")]) == 0
    assert f"{folder / 'linked'}: a link to a folder, not followed" in capsys.readouterr().err
    assert "c.log" not in ledger(tmp_path / "state")
    # named, it is read (and, named, no longer said to be left out)
    assert main(["scan", str(folder), str(folder / "linked"),
                 "--state-dir", str(tmp_path / "named")]) == 0
    assert "not followed" not in capsys.readouterr().err
    assert ledger(tmp_path / "named") == written


def test_a_named_file_that_is_not_a_log_by_its_name_is_said_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(And not read: a 400 MB file took 563 MB to be skipped; found by a review.)"""
    (tmp_path / "flows.txt").write_bytes(flowgen.flow_object(flowgen.V2, 5, seed=1).text())
    read: list[Path] = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: read.append(path) or read_bytes(path))
    assert main(["scan", str(tmp_path / "flows.txt"), "--state-dir", str(tmp_path / "state"),
                 "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.splitlines()[-1])
    assert (summary["objects"]["skipped"], summary["records"]) == (1, 0)
    assert "flows.txt: skipped: a log's name ends in .log" in err
    assert read == []


@pytest.mark.parametrize("command", [["scan", "--state-dir", "{tmp}/state"],
                                     ["rules", "test", "vpc.portscan"]])
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, command: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO (or a terminal: ``/dev/stdin``) named to scan was opened and waited on for
    ever; it is not a file to scan (inside a folder it was, and is, passed over)."""
    os.mkfifo(tmp_path / "pipe.log")
    command = [word.format(tmp=tmp_path) for word in command]
    code: list[int] = []
    scanning = threading.Thread(target=lambda: code.append(main([*command, str(
        tmp_path / "pipe.log")])), daemon=True)
    scanning.start()
    scanning.join(timeout=60)  # (a failure, not a hang, without the check)
    assert code == [2]
    assert "not a regular file or a folder" in capsys.readouterr().err
