"""Files vpcwatch trusts are refused when another user may write them; files it writes are
private and never written through a link; the state directory is kept private."""

from __future__ import annotations

import grp
import os
import stat
import threading
from pathlib import Path

import pytest

from core.permissions import shared_write_problem, write_private
from tests import flowgen
from tests.conftest import VPCWATCH
from tui.cli import main

RULE = """[[rule]]
id = "mine.reject"
level = 5
title = "refused {srcaddr}"
source = "vpcflow"
where = "action = 'REJECT'"
group_by = ["srcaddr"]
window = "5m"
"""


def other_group() -> int | None:
    """A group that is not the owner's private group (None if this user cannot chown)."""
    for name in ("daemon", "adm", "users", "nogroup"):
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    return None


@pytest.mark.parametrize("mode", [0o666, 0o602])
def test_a_rule_file_others_can_write_is_refused(
        mode: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "mine.toml"
    rules.write_text(RULE)
    os.chmod(rules, 0o644)
    assert main(["rules", "check", str(rules)]) == 0
    capsys.readouterr()
    os.chmod(rules, mode)
    assert main(["rules", "check", str(rules)]) == 1
    assert f"{rules}: refused, writable by every user; run: chmod o-w {rules}" in (
        capsys.readouterr().err)


def test_a_file_writable_by_a_shared_group_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULE)
    os.chmod(path, 0o664)
    assert shared_write_problem(path) is None  # the owner's own (private) group
    gid = other_group()
    try:
        os.chown(path, -1, gid if gid is not None else -1)
    except PermissionError:
        pytest.skip("this user cannot give a file to another group")
    if gid is None:
        pytest.skip("no shared group on this machine")
    assert shared_write_problem(path) == f"writable by its group; run: chmod g-w {path}"


@pytest.mark.parametrize(("make", "said"), [
    (lambda path: (path.write_text(RULE), os.chmod(path, 0o666)),
     "mine.toml: refused, writable by every user"),
    (lambda path: None, "mine.toml: cannot read: No such file or directory"),
    (lambda path: path.write_text("[[rule]\n"), "mine.toml: not valid TOML"),
])
@pytest.mark.parametrize("command", [["collect", "--once"], ["scan", "{tmp}"]])
def test_a_configured_rule_file_that_cannot_be_used_stops_vpcwatch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, said: str,
        command: list[str]) -> None:
    """Found by an adversarial test: such a file was said not loaded, and vpcwatch ran
    without it: a service silently without the user's overrides (a threshold tightened,
    a default rule switched off), where the README says it stops."""
    make(tmp_path / "mine.toml")  # type: ignore[operator]
    config = tmp_path / "c.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path / "state"}"\n'
                      'rules = ["mine.toml"]\n[[bucket]]\ntype = "vpcflow"\nname = "b-1"\n')
    assert main([*(word.format(tmp=tmp_path) for word in command), "--config",
                 str(config)]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "state").exists()
    # `rules check` lists it among the rules rejected, as it lists a bad rule (a review)
    assert main(["rules", "check", "--config", str(config)]) == 1
    assert said in capsys.readouterr().err


def test_a_blocklist_others_can_write_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "block.txt").write_text("203.0.113.9\n")
    os.chmod(tmp_path / "block.txt", 0o666)
    config = tmp_path / "c.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path / "state"}"\n'
                      'blocklist = ["block.txt"]\n[[bucket]]\ntype = "vpcflow"\nname = "b-1"\n')
    assert main(["collect", "--config", str(config), "--once"]) == 2
    assert "block.txt: refused, writable by every user" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_write_private_refuses_a_link_and_writes_0600(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        write_private(tmp_path / "link", "log text")
    assert victim.read_text() == "keep"
    write_private(tmp_path / "new", "text")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600


@pytest.mark.parametrize("planted", ["hard link", "FIFO"])
def test_write_private_refuses_a_hard_link_or_a_fifo(tmp_path: Path, planted: str) -> None:
    """Found by an adversarial test: the app's `c` wrote the copied row through a hard link
    planted where it goes (its target overwritten, made 0600), and froze on a FIFO there
    until something read it."""
    victim, path = tmp_path / "victim", tmp_path / "vpcwatch-copied.txt"
    victim.write_text("keep")
    mode = victim.stat().st_mode
    if planted == "hard link":
        os.link(victim, path)
    else:
        os.mkfifo(path)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            write_private(path, "log text")
        except OSError as exc:
            failed.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=30)
    if writer.is_alive():  # (blocked on the FIFO: let it go, then fail)
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail("blocked on a FIFO")
    assert failed and "not written" in str(failed[0])
    assert (victim.read_text(), victim.stat().st_mode) == ("keep", mode)


def test_a_state_directory_others_can_read_is_made_private(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    logs = tmp_path / "a.log"
    logs.write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    assert main(["scan", str(logs), "--state-dir", str(state)]) == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert "made it private" in capsys.readouterr().err
    os.chmod(state, 0o750)  # readers check too
    assert main(["query", "--state-dir", str(state), "SELECT count(*) FROM flows"]) == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    os.chmod(state, 0o770)  # writable by others: refused, left as it is
    assert main(["scan", str(logs), "--state-dir", str(state)]) == 1
    assert "writable by other users" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["vpcwatch.lock", "flows", "spill"])
def test_a_link_planted_in_the_state_directory_is_refused_and_nothing_written_through_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    """(Found by an adversarial review: the lock file was written through such a link, and
    segments into the directory a `flows` link pointed to, readable by everyone.)"""
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    state.mkdir(mode=0o700)
    elsewhere.mkdir()
    victim = elsewhere / "victim.txt"
    victim.write_text("keep")
    (state / name).symlink_to(victim if name.endswith(".lock") else elsewhere)
    logs = tmp_path / "a.log"
    logs.write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    assert main(["scan", str(logs), "--state-dir", str(state)]) == 1
    assert "a symbolic link in the state directory" in capsys.readouterr().err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["victim.txt"]
    assert victim.read_text() == "keep"


def test_a_hard_link_at_the_state_directorys_top_is_refused_and_nothing_written_through_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(Found by an adversarial test: the lock's owner was written into the file a hard
    link named vpcwatch.lock shared its content with.)"""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    os.link(victim, state / "vpcwatch.lock")
    logs = tmp_path / "a.log"
    logs.write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    assert main(["scan", str(logs), "--state-dir", str(state)]) == 1
    assert "another name elsewhere (a hard link" in capsys.readouterr().err
    assert victim.read_text() == "keep"


def test_what_vpcwatch_writes_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """(Found by a review: with umask 022 the store and its segments were 0644, private
    only through the state directory's mode, and not in a copy of it.)"""
    import subprocess

    logs = tmp_path / "a.log"
    logs.write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    state = tmp_path / "state"
    subprocess.run([str(VPCWATCH), "scan", str(logs), "--state-dir", str(state)], check=True,
                   preexec_fn=lambda: os.umask(0o022))
    made = [path for path in state.rglob("*") if path.is_file()]
    assert {p.name for p in made} >= {"vpcwatch.duckdb", "vpcwatch.lock"}
    assert any(p.suffix == ".parquet" for p in made)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) & 0o077 for p in made} == {
        p.name: 0 for p in made}


def test_a_file_gone_while_the_state_directory_is_checked_is_no_error(tmp_path: Path) -> None:
    """(A review: the check of hard links looked at each file after listing it, and a WAL
    that a collector's checkpoint removed in between failed a reader: 47 times in 20,000.)"""
    from core.store.statedir import StateDirError, make_private

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            (state / "vpcwatch.duckdb.wal").write_bytes(b"x")
            (state / "vpcwatch.duckdb.wal").unlink()

    churner = threading.Thread(target=churn)
    churner.start()
    failures: list[str] = []
    try:
        for _ in range(20_000):
            try:
                make_private(state)
            except StateDirError as exc:
                failures.append(str(exc))
    finally:
        stop.set()
        churner.join()
    assert failures == []
