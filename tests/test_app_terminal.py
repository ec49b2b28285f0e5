"""The app in a real pseudo-terminal: `vpcwatch demo` draws (with 256 colours, and with 16),
and a hang-up (what a dropped SSH session sends) ends it cleanly, pollers stopped, exit 0."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import struct
import time
from pathlib import Path

import pytest

from tests.conftest import VPCWATCH

ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z]")


def read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    """What the terminal received until ``wanted`` shows (escape sequences removed)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
            if wanted in ANSI.sub(b"", seen):
                return seen
    raise AssertionError(f"{wanted!r} not shown within {timeout} s")


def wait_exit(pid: int, timeout: float) -> int:
    """The child's exit code, waiting on its pidfd (readable when it exits)."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"still running {timeout} s after SIGHUP")
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(not VPCWATCH.exists(), reason="the vpcwatch script is not installed")
@pytest.mark.parametrize("term", ["xterm-256color", "xterm"])
def test_demo_draws_and_a_hangup_ends_it_cleanly(term: str, tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app in a 100x30 terminal
        os.environ.pop("COLORTERM", None)
        os.environ.update(TERM=term, XDG_STATE_HOME=str(tmp_path))
        os.execv(str(VPCWATCH), [str(VPCWATCH), "demo", "--state-dir", str(tmp_path / "s")])
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        drawn = read_until(fd, b"vpcwatch-demo/vpcflow", timeout=90)  # after the first poll
        if term == "xterm":  # 16 colours: no 256-colour or 24-bit colour sequences
            assert not re.search(rb"\x1b\[[0-9;]*[34]8;[25];", drawn)
        os.kill(pid, signal.SIGHUP)
        assert wait_exit(pid, timeout=30) == 0
    finally:
        os.close(fd)
