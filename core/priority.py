"""A process attached to a running collector yields the CPU to it (docs/attach.md).

The collector is the service: its rate must not depend on who is looking. On a small host
(two cores) an app that recomputes its views, or three apps following every commit, would
otherwise take a core from it. So an attached viewer lowers the scheduling priority
(``nice``) of its work: while the collector is busy, the kernel gives that work what the
collector leaves; while it waits for S3 or for its next poll, which is most of the time,
the viewer has the CPU as before. Linux gives each thread its own niceness, and an
unprivileged process can lower a thread's priority but never raise it back.

The app spares what shows new alerts (its UI thread, and the thread that reloads the
collector's small tables and reads the feed, which the UI thread starts): they run at
SPARED_NICE, light work that should not wait for the collector's poll to end. Its heavy
threads (the view reader, the index) call ``follow_yield`` when they start. What the user
asks for by hand (SQL at the `:` prompt, an export) runs on threads the UI thread starts,
at SPARED_NICE too; DuckDB's own workers stay at VIEWER_NICE whoever calls. Measured
(bench/RESULTS.md): the spared threads at 0 showed an alert in 0.7 s (p95) but cost the
collector 21-31%; at 10, 0.95-1.0 s and 5-28%; everything at 19, 4.4 s and 13-29%.

Priority is not enough: what a viewer costs the collector is the memory its work streams
through, not the CPU time the scheduler gives it (measured: two memory-bound processes at
SCHED_IDLE, the lowest priority there is, cost the collector 20% of its rate; two
CPU-bound ones at SCHED_IDLE, 5% in the same run). So, while the collector is busy
(``CollectorLoad``: it used more than BUSY_SHARE of a core since the last look), an attached
app's views that read flows (all but a feed of stored alerts: tui/view_pump.py) wait for it
to rest, VIEW_WAIT_MAX at most. New alerts do not wait: they are read on a thread of their
own.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from core.store.statedir import owner_pid

log = logging.getLogger(__name__)

VIEWER_NICE = 19  # an attached viewer's niceness: the lowest priority (the collector runs at 0)
SPARED_NICE = 10  # the spared threads' (below the collector's, above the heavy work's)
BUSY_SHARE = 0.5  # of a core: a collector using more since the last look is busy
VIEW_WAIT_MAX = 10.0  # seconds: the longest a round of views waits for a busy collector
MIN_SAMPLE_SECONDS = 0.1  # the shortest span a sample measures the collector's CPU over
_yielding = False  # set once this process yields: threads started later follow


def yield_to_collector(spare: Iterable[threading.Thread] = ()) -> None:
    """Run every thread of this process at VIEWER_NICE but ``spare``, which runs (with the
    threads it starts later) at SPARED_NICE; heavy thread pools follow with
    ``follow_yield``. Never raises: it is a courtesy."""
    global _yielding
    _yielding = True
    kept = {thread.native_id for thread in spare}
    try:
        threads = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # (no /proc: this thread, and the threads it starts)
    for thread in threads:
        _lower(thread, SPARED_NICE if thread in kept else VIEWER_NICE)


def follow_yield() -> None:
    """For a thread pool's initializer: a heavy thread started after the process yielded
    runs at VIEWER_NICE too."""
    if _yielding:
        _lower(threading.get_native_id(), VIEWER_NICE)


def _lower(thread: int, nice: int) -> None:
    try:
        if os.getpriority(os.PRIO_PROCESS, thread) < nice:
            os.setpriority(os.PRIO_PROCESS, thread, nice)
    except OSError as exc:  # (gone meanwhile, or a sandbox refusing it)
        log.debug("cannot lower thread %d's priority: %s", thread, exc)


def process_cpu_seconds(pid: int) -> float | None:
    """The CPU time (user and system, every thread) process ``pid`` has used so far, or
    None when it is gone (or this is not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # (stat's 14, 15)


def local_pid(owner: str | None) -> int | None:
    """The pid of a state directory's lock owner (``StateDirBusy.owner``) when it runs on
    this host, else None."""
    writer = owner_pid(owner)
    return writer[0] if writer is not None and writer[1] == socket.gethostname() else None


class CollectorLoad:
    """Is the collector busy? Sampled every fraction of a second: it is when it used more
    than BUSY_SHARE of a core since the previous sample (its pauses between polls, and its
    waits for S3, use next to nothing), or since it said it started a poll."""

    def __init__(self, cpu_seconds: Callable[[int], float | None] = process_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cpu_seconds, self._clock = cpu_seconds, clock
        self._last: tuple[int, float, float] | None = None  # (pid, when, its CPU time)
        self.busy = False

    def sample(self, pid: int | None) -> bool:
        used = self._cpu_seconds(pid) if pid is not None else None
        now, last = self._clock(), self._last
        if used is None or pid is None:
            self._last, self.busy = None, False
        elif last is None or last[0] != pid or now <= last[1]:
            self._last = (pid, now, used)  # (a first look: busy as before)
        elif now - last[1] < MIN_SAMPLE_SECONDS:
            pass  # (too soon after an announcement: CPU time counts in ticks of 10 ms)
        else:
            self.busy = (used - last[2]) / (now - last[1]) > BUSY_SHARE
            self._last = (pid, now, used)
        return self.busy

    def announce(self, pid: int | None, polling: bool) -> bool:
        """The collector said that it started (``polling``) or finished a poll: it is busy
        (resting) from now on, and the next sample measures from here. The views need not
        wait for a sample to see a poll start: an app changing its filter without pause ran
        about 20 rounds in a poll's first quarter of a second before the sampler saw it."""
        used = self._cpu_seconds(pid) if pid is not None else None
        if used is None or pid is None:
            self._last, self.busy = None, False
        else:
            self._last, self.busy = (pid, self._clock(), used), polling
        return self.busy
