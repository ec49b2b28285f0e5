"""The app attached to a running collector (docs/attach.md): instead of collecting, it
follows what the collector publishes. Each new state is loaded (in one transaction, from the
state held: ``core.store.publication.fill``) on the thread that shows new alerts
(``tui.new_alerts``: not behind the view reader's work), then announced as the collector's
own events would be, so the feed, chart and status update as they do when the app
collects. Mixed into :class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from core.events import AlertsChanged, BatchCommitted
from core.follow import Follower
from core.priority import local_pid
from core.store.statedir import collector_owner
from tui.widgets.status import Activity

log = logging.getLogger(__name__)
FOLLOW_SECONDS = 0.25  # how often the publication is looked at (one small file read)
ALIVE_SECONDS = 1.0  # how often the collector's lock is looked at
LOAD_SECONDS = 0.25  # how often its CPU time is (views wait while it is busy: priority.py)


class Attachment:
    async def _follow(self) -> None:
        state_dir = self.store.state_dir
        follower = Follower(state_dir)
        await asyncio.to_thread(follower.poll)  # (what the store holds already)
        checked = 0.0
        pending: list[pa.Table] = []  # alerts announced once the state holding them is shown
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FOLLOW_SECONDS):
                    await self._stop.wait()
            if time.monotonic() - checked >= ALIVE_SECONDS:
                checked = time.monotonic()
                await self._check_collector(state_dir)
            update = await asyncio.to_thread(follower.poll)
            if update is not None and update.alerts is not None:
                pending.append(update.alerts)
            if self.store.generation != follower.generation:
                try:  # (all tables or none: a failed load leaves the last state whole)
                    loaded = await asyncio.get_running_loop().run_in_executor(
                        self._alerts_reader, self.store.reload_publication)
                except (OSError, ValueError, KeyError, duckdb.Error) as exc:
                    log.info("reading the collector's state failed, retrying: %s", exc)
                    continue  # (the next tick tries again)
                if loaded:
                    self._publish(BatchCommitted((), 0, 0, time.time()))
            if pending:
                alerts = pa.concat_tables(pending, promote_options="permissive")
                self._publish(AlertsChanged(alerts, time.time()))
                pending = []

    def _sample_collector_load(self) -> None:
        """Is the collector (the lock's owner, on this host) busy? The view pump waits while
        it is."""
        if self._notice_poll():
            return  # (the next sample measures from now)
        self._rest(not self._collector_load.sample(self._collector_pid()))

    def _notice_poll(self) -> bool:
        """Has the collector rewritten its status since the last look (it does when a poll
        starts or ends, and on a problem)? Then it is busy (while its poll runs) or resting
        from now on: the view pump looks before each round, not only at the sampler's pace
        (core/priority.py)."""
        if self.store.attached_to is None or (status := self._status_watch.changed()) is None:
            return False
        polling = bool(status.get("polling"))
        self._rest(not self._collector_load.announce(self._collector_pid(), polling))
        if not self.activity.collector_gone:  # (what the status bar shows of it)
            _show_activity(self.activity, status)
            self._show_status()
        return True

    def _collector_pid(self) -> int | None:
        return None if self.activity.collector_gone else local_pid(self.activity.attached)

    def _rest(self, rests: bool) -> None:
        if rests:
            self.collector_rests.set()
        else:
            self.collector_rests.clear()

    async def _check_collector(self, state_dir: Path) -> None:
        """Is the collector still there (its lock)? (What it is doing, its status, is read
        when it changes: ``_notice_poll``.)"""
        owner = await asyncio.to_thread(collector_owner, state_dir)
        self.activity.collector_gone = owner is None
        if owner is not None:
            self.activity.attached = owner
        self._show_status()


def _show_activity(activity: Activity, status: dict[str, object]) -> None:
    """The collector's status (status.json) as the status bar shows it."""
    activity.polling = bool(status.get("polling"))
    activity.last_poll = _number(status.get("last_poll"))
    activity.next_poll = _number(status.get("next_poll"))
    activity.records_per_second = _number(status.get("records_per_second")) or 0.0
    activity.late = int(_number(status.get("late")) or 0)
    errors = status.get("errors")
    for error in errors if isinstance(errors, list) else []:
        activity.add_error(str(error))


def _number(value: object) -> float | None:
    """A finite number from status.json (what the collector wrote), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # (an integer of hundreds of digits)
        return None
    return number if math.isfinite(number) else None
