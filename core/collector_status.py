"""The collector's activity as attached apps show it: polls, their rate, late objects and
problems, published as ``status.json`` (``core.store.publication``) on each of its events."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from core.events import (
    CoreEvent,
    PollFailed,
    PollFinished,
    PollStarted,
    PrefixBlocked,
)
from core.store import publication

log = logging.getLogger(__name__)
MAX_ERRORS = 20


class CollectorStatus:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.status: dict[str, Any] = {
            "pid": os.getpid(), "started": time.time(), "polling": False, "last_poll": None,
            "next_poll": None, "records_per_second": 0.0, "late": 0, "errors": []}

    def record(self, event: CoreEvent) -> None:
        status = self.status
        if isinstance(event, PollStarted):
            status["polling"] = True
        elif isinstance(event, PollFinished):
            summary = event.summary
            status.update(polling=False, last_poll=event.at, next_poll=event.next_poll,
                          records_per_second=summary.records / max(summary.seconds, 1e-3),
                          late=status["late"] + summary.late)
            self._errors(*summary.errors)
        elif isinstance(event, PollFailed):
            status["polling"] = False
            self._errors(f"poll failed: {event.error}")
        elif isinstance(event, PrefixBlocked):
            self._errors(f"{event.bucket}/{event.prefix}: {event.error}")
        else:
            return
        status["written"] = time.time()
        try:
            publication.write_status(self.state_dir, status)
        except OSError as exc:  # (viewers then show the data without the activity)
            log.debug("status not published: %s", exc)

    def _errors(self, *errors: str) -> None:
        kept = [e for e in self.status["errors"] if e not in errors] + list(errors)
        self.status["errors"] = kept[-MAX_ERRORS:]
