"""The app attached to a running collector (docs/attach.md): instead of collecting, it
follows what the collector publishes. Each new state is loaded on the reader thread (the
views never see half of it), then announced as the collector's own events would be, so the
feed, chart and status update as they do when the app collects. Mixed into
:class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import duckdb

from core.events import AlertsChanged, BatchCommitted
from core.follow import Follower

log = logging.getLogger(__name__)
FOLLOW_SECONDS = 0.25  # how often the publication is looked at (one small file read)


class Attachment:
    async def _follow(self) -> None:
        follower = Follower(self.store.state_dir)
        await asyncio.to_thread(follower.poll)  # (what the store holds already)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FOLLOW_SECONDS):
                    await self._stop.wait()
            update = await asyncio.to_thread(follower.poll)
            if update is None:
                continue
            try:
                await self._read(self.store.reload_publication)
            except (OSError, ValueError, duckdb.Error) as exc:  # (files replaced meanwhile:
                # the next look reads the newer state)
                log.info("reading the collector's state failed, retrying: %s", exc)
                continue
            self._publish(BatchCommitted((), 0, 0, time.time()))
            if update.alerts is not None:
                self._publish(AlertsChanged(update.alerts, time.time()))
