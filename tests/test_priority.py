"""core/priority.py: when an attached app's views wait for the collector (it is busy), and
whose CPU time says so. Clocks and CPU counters are given by the tests, so every figure is
exact (worked out by hand from BUSY_SHARE); the one reading of /proc is compared with
Python's own counter."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from core.priority import (
    BUSY_SHARE,
    MIN_SAMPLE_SECONDS,
    CollectorLoad,
    local_pid,
    process_cpu_seconds,
)
from core.store import publication


class Counters:
    """A wall clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now


def test_the_collector_is_busy_when_it_used_more_than_its_share_since_the_last_look() -> None:
    c = Counters()
    cpu = {7: 1.0}
    load = CollectorLoad(cpu_seconds=lambda pid: cpu.get(pid), clock=c.clock)
    assert load.sample(7) is False  # a first look: nothing to compare with yet
    c.now += 0.25
    cpu[7] += 0.25 * BUSY_SHARE * 2  # twice the share: busy
    assert load.sample(7) is True
    assert load.sample(7) is True  # (the same instant: as before)
    c.now += 0.25
    cpu[7] += 0.25 * BUSY_SHARE / 2  # half the share: resting
    assert load.sample(7) is False
    c.now += 0.25
    cpu[7] += 1.0
    assert load.sample(8) is False  # a process that is gone (or none): not busy
    assert load.sample(None) is False
    assert load.sample(7) is False  # …and the first look again after it


def test_a_poll_the_collector_announces_is_busy_at_once_and_measured_from_then() -> None:
    c = Counters()
    cpu = {7: 1.0}
    load = CollectorLoad(cpu_seconds=lambda pid: cpu.get(pid), clock=c.clock)
    assert load.sample(7) is False
    c.now += 0.25
    cpu[7] += 0.25 * BUSY_SHARE * 2  # (busy before the announcement: not counted after it)
    assert load.announce(7, polling=True) is True  # no sample yet: busy from now
    c.now += 0.25
    cpu[7] += 0.25 * BUSY_SHARE / 2  # since the announcement, half the share: resting
    assert load.sample(7) is False
    assert load.announce(7, polling=True) is True
    c.now += 0.25
    cpu[7] += 0.25 * BUSY_SHARE * 2
    assert load.announce(7, polling=False) is False  # a finished poll: resting at once
    c.now += 0.25
    assert load.sample(7) is False  # (measured from the end of the poll: nothing since)
    assert load.announce(7, polling=True) is True
    c.now += MIN_SAMPLE_SECONDS / 2
    cpu[7] += 0.0  # (a sample this soon would read 0% or 100%: ticks of 10 ms)
    assert load.sample(7) is True  # too soon: as announced, measured later
    c.now += MIN_SAMPLE_SECONDS
    cpu[7] += 1.5 * MIN_SAMPLE_SECONDS * BUSY_SHARE * 2  # (twice the share since the baseline)
    assert load.sample(7) is True
    assert load.announce(None, polling=True) is False  # no collector here: never busy
    assert load.announce(8, polling=True) is False  # …nor one that is gone


def test_the_status_is_read_again_only_when_the_collector_replaced_it(tmp_path: Path) -> None:
    (tmp_path / publication.DIRECTORY).mkdir()
    watch = publication.StatusWatch(tmp_path)
    assert watch.changed() is None  # (none written yet)
    publication.write_status(tmp_path, {"polling": True})
    assert watch.changed() == {"polling": True}
    assert watch.changed() is None  # (the same file)
    publication.write_status(tmp_path, {"polling": True})
    assert watch.changed() == {"polling": True}  # (written again: a new poll)
    publication.write_status(tmp_path, {"polling": False})
    assert watch.changed() == {"polling": False}


def test_a_process_cpu_time_is_read_from_proc() -> None:
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("no /proc here")
    start = time.process_time()
    while time.process_time() - start < 0.2:  # (use some CPU)
        sum(range(10_000))
    read = process_cpu_seconds(os.getpid())
    assert read is not None and abs(read - time.process_time()) < 0.05  # (ticks of 10 ms)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert process_cpu_seconds(pid_max + 1) is None


def test_the_collector_s_pid_is_its_lock_owner_s_on_this_host_only() -> None:
    here = socket.gethostname()
    assert local_pid(f"pid 4242 on {here} (vpcwatch collect)") == 4242
    assert local_pid("pid 4242 on another-host (vpcwatch collect)") is None
    assert local_pid("another process") is None
    assert local_pid(None) is None
