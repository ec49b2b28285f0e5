"""Kill points, for crash tests: ``VPCWATCH_KILL_AT=name`` (or ``name:N``) makes the process
kill itself with SIGKILL the first (or Nth) time it reaches the point ``name``: between
writing a segment and committing it (``segment-written``), between writing a compacted
segment and swapping it in (``compacting``), and after pruning's transaction, before its
files are removed (``pruning``). Unset, as in every real run, a point costs one test of an
empty string."""

from __future__ import annotations

import os
import signal
from collections import Counter

_WANTED = os.environ.get("VPCWATCH_KILL_AT", "")
_reached: Counter[str] = Counter()


def reached(point: str) -> None:
    if not _WANTED:
        return
    name, _, nth = _WANTED.partition(":")
    if name == point:
        _reached[point] += 1
        if _reached[point] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
