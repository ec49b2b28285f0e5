"""A process attached to a running collector yields the CPU to it (docs/attach.md).

The collector is the service: its rate must not depend on who is looking. On a small host
(two cores) an app that recomputes its views, or three apps following every commit, would
otherwise take a core from it. So an attached viewer lowers its own scheduling priority
(``nice``): while the collector is busy, the kernel gives the viewer what the collector
leaves; while it waits for S3 or for its next poll, which is most of the time, the viewer
has the CPU as before. A process can only lower its priority, never raise it back, so this
is done once, when a command knows it is attached.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

VIEWER_NICE = 19  # an attached viewer's niceness: the lowest priority (the collector runs at 0)


def yield_to_collector() -> None:
    """Run every thread of this process, and those it starts later, at VIEWER_NICE (never
    raises: it is a courtesy). On Linux a niceness belongs to a thread, and threads started
    before (DuckDB's workers) keep theirs, so each thread is set."""
    try:
        threads = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # (no /proc: this thread, and the threads it starts)
    for thread in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, thread) < VIEWER_NICE:
                os.setpriority(os.PRIO_PROCESS, thread, VIEWER_NICE)
        except OSError as exc:  # (gone meanwhile, or a sandbox refusing it)
            log.debug("cannot lower thread %d's priority: %s", thread, exc)
