"""The engine loop: list, download, parse and commit, every bucket, every interval.

One poll runs a pipeline per bucket: listing -> the ledger picks what to read -> a bounded
pool of downloads (a slow object never blocks the others) -> parsing in worker threads
(pyarrow releases the GIL) -> a single writer that commits groups of objects, each object's
rows with its ledger entry, in one transaction, while the next group is read. The store is
used from one thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from core.collector_status import CollectorStatus
from core.config import BucketConfig, Config
from core.decompress import CorruptObject
from core.discovery import list_bucket
from core.events import (
    AlertsChanged,
    BatchCommitted,
    CoreEvent,
    ObjectOutcome,
    PollFailed,
    PollFinished,
    PollStarted,
    PollSummary,
    PrefixBlocked,
    Publish,
)
from core.layouts import Kind, days_between, kinds_of
from core.listing_plan import plan
from core.objects import ObjectResult, Status
from core.reader import not_a_log, read_object
from core.s3 import TRANSIENT_ERRORS, AccessDenied, Gone, S3Bucket, describe, open_bucket
from core.store import Candidate, Store
from core.store.isolation import commit_isolating
from core.store.ledger import ListingMarks, Scope

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_TRIES = 6  # per object per poll; then it stays pending for the next poll
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0


class Collector:
    def __init__(self, config: Config, store: Store, publish: Publish | None = None):
        self.config = config
        self.store = store
        self.status = CollectorStatus(store.state_dir)  # (for attached apps)
        outside: Publish = publish or (lambda event: None)

        def announce(event: CoreEvent) -> None:
            self.status.record(event)
            outside(event)

        self.publish: Publish = announce
        self._db = ThreadPoolExecutor(1, thread_name_prefix="vpcwatch-store")
        self._parsers = ThreadPoolExecutor(2, thread_name_prefix="vpcwatch-parse")
        self._halt = asyncio.Event()  # set when a bad object must stop the poll
        self._errors: list[str] = []
        self._listed: list[tuple[str, ListingMarks]] = []  # saved once a poll's commits are done

    def close(self) -> None:
        self._parsers.shutdown(wait=True, cancel_futures=True)
        self._db.shutdown(wait=True)

    async def db(self, function: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db, function, *args)

    # -- polling ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event,
                  before_poll: Callable[[], Awaitable[None]] | None = None) -> None:
        """Poll every ``interval`` until ``stop`` is set. A failed poll is logged, not fatal.
        ``before_poll`` runs before each poll (the demo writes its next traffic there)."""
        general = self.config.general
        await self.db(self.store.start_publishing)  # (viewers attach before the first poll)
        if not general.run_on_start:
            await _wait(stop, general.interval)
        while not stop.is_set():
            started = time.monotonic()
            try:
                if before_poll is not None:
                    await before_poll()
                summary = await self.poll(next_in=general.interval, stop=stop)
                log.info("poll finished: %s", json.dumps(summary.as_json()))
            except Exception as exc:
                log.error("poll failed: %s", describe(exc))
                self.publish(PollFailed(describe(exc), time.time()))
            await _wait(stop, max(0.0, general.interval - (time.monotonic() - started)))

    async def poll(self, next_in: float | None = None,
                   stop: asyncio.Event | None = None) -> PollSummary:
        """One poll of every bucket. ``stop`` set meanwhile (SIGTERM) ends it at its next
        commit: no object is read after it, what was read is committed (it went on to the
        poll's end, which a long backfill takes many minutes to reach: found by an
        adversarial test; systemd's stop timeout then killed it)."""
        await self.db(self.store.start_publishing)  # viewers may attach (docs/attach.md)
        summary = PollSummary()
        self._halt = asyncio.Event()
        stopping = asyncio.create_task(_halt_when(stop, self._halt)) if stop else None
        try:
            return await self._poll(summary, next_in)
        finally:
            if stopping is not None:
                stopping.cancel()

    async def _poll(self, summary: PollSummary, next_in: float | None) -> PollSummary:
        self._errors = summary.errors
        self._listed = []
        started = time.monotonic()
        self.publish(PollStarted(tuple(b.label for b in self.config.buckets), time.time()))
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.config.general.concurrency * 2)
        # One group: if the writer fails (disk full...), the readers blocked on the full
        # queue are cancelled instead of waiting for ever.
        try:
            async with asyncio.TaskGroup() as poll:
                poll.create_task(self._write(queue, summary))
                async with asyncio.TaskGroup() as readers:
                    for bucket in self.config.buckets:
                        readers.create_task(self._poll_bucket(bucket, queue, summary))
                await queue.put(None)
        except ExceptionGroup as group:
            raise _first(group) from None
        for label, marks in self._listed:
            await self.db(self.store.set_listing_marks, label, marks)
        window = datetime.now(UTC) - timedelta(seconds=self.config.general.lookback)
        await self.db(self.store.prune, self.config.general.retention, window.date())
        await self.db(self.store.compact)
        await self.db(self.store.checkpoint)
        summary.seconds = time.monotonic() - started
        next_at = time.time() + next_in if next_in else None
        self.publish(PollFinished(summary, time.time(), next_at))
        return summary

    async def _poll_bucket(
        self, bucket: BucketConfig, queue: asyncio.Queue[Any], summary: PollSummary
    ) -> None:
        try:
            async with open_bucket(bucket, self.config.general) as s3:
                now = datetime.now(UTC)
                marks = await self.db(self.store.listing_marks, bucket.marks_key,
                                      bucket.label)  # (the marks' key before 2026-12-06)
                days = plan(bucket, self.config.general, marks, now)
                listing = await list_bucket(s3, bucket, days_between(days.first, now.date()))
                for prefix, error in listing.blocked.items():
                    summary.blocked_prefixes.append(f"s3://{bucket.name}/{prefix}")
                    self.publish(PrefixBlocked(bucket.name, prefix, error))
                for prefix, error in listing.failed.items():
                    summary.errors.append(f"s3://{bucket.name}/{prefix}: cannot list: {error}")
                await self.db(self.store.record_prefixes, bucket.name, listing.blocked,
                              listing.listed_ok)
                candidates = await self.db(self.store.candidates, listing.objects)
                log.info("%s: %d objects listed, %d to read", bucket.label,
                         len(listing.objects), len(candidates))
                late = days.late(candidates)
                summary.late += len(late)
                for candidate in late:
                    log.warning("late object (delivered after its day left the lookback "
                                "window): s3://%s/%s", bucket.name, candidate.ref.key)
                # pending or blocked objects whose day was not listed: still retried
                candidates += await self.db(self.store.unfinished_before, _scope(bucket),
                                            days.first)
                await self._read_all(s3, bucket, candidates, queue)
                # (a prefix denied for good is no failure: it would stop them for good; a
                # halted poll read not everything listed: its days must be listed again)
                if not listing.failed and not self._halt.is_set():
                    # saved once this poll's commits are done (see poll())
                    self._listed.append((bucket.marks_key, days.marks_after(marks, now)))
        except Exception as exc:  # one bucket's failure (bad credentials...) spares the others
            message = f"{bucket.label}: {describe(exc)}"
            log.error("%s", message, exc_info=not isinstance(exc, TRANSIENT_ERRORS))
            summary.errors.append(message)

    async def _read_all(
        self,
        s3: S3Bucket,
        bucket: BucketConfig,
        candidates: list[Candidate],
        queue: asyncio.Queue[Any],
    ) -> None:
        todo = deque(candidates)

        async def worker() -> None:
            while todo and not self._halt.is_set():
                candidate = todo.popleft()
                await queue.put(await self._read_one(s3, bucket, candidate))

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.config.general.concurrency, len(todo))):
                group.create_task(worker())

    async def _read_one(self, s3: S3Bucket, bucket: BucketConfig, cand: Candidate) -> ObjectResult:
        """Download and parse one object, retrying what may pass; never raises for S3 errors.
        An object that changed since it was read loses its old rows whatever becomes of its
        new content (stored, quarantined, pending, blocked): the ledger then holds the new
        ETag, and nothing would tell later that rows of the old one are stored. (Skipped: a
        file that is no log, or deleted before it was read, keeps what it had.)"""
        result = await self._read_attempts(s3, bucket, cand)
        if result.status is not Status.SKIPPED:
            result.replaces = cand.replaces
        return result

    async def _read_attempts(self, s3: S3Bucket, bucket: BucketConfig, cand: Candidate
                             ) -> ObjectResult:
        general = self.config.general
        ref = cand.ref
        if ref.kind is Kind.OTHER:
            return not_a_log(ref)
        if ref.size > general.max_object_size:  # (as listed: larger expanded, gzip or not)
            # (found by an adversarial test: each was downloaded whole, max_attempts times,
            # before the size was looked at: memory of concurrency times the object's size)
            return self._bad_object(cand, 1, f"its listed size, {ref.size} bytes, is larger "
                                    f"than {general.max_object_size} (max_object_size): not read")
        corrupt = transient = 0
        while True:
            attempt = corrupt + transient + 1
            try:
                data = await s3.fetch(ref.key)
                result = await asyncio.get_running_loop().run_in_executor(
                    self._parsers, read_object, ref, data, general.max_object_size,
                    bucket.discard_field, bucket.discard_regex,
                )
            except CorruptObject as exc:
                corrupt += 1
                if corrupt >= general.max_attempts:
                    return self._bad_object(cand, attempt, str(exc))
            except AccessDenied as exc:
                return ObjectResult(ref, Status.BLOCKED, cand.attempts + attempt, str(exc))
            except Gone as exc:
                return ObjectResult(ref, Status.SKIPPED, cand.attempts + attempt,
                                    f"deleted before it was read: {exc}")
            except TRANSIENT_ERRORS as exc:  # throttling, 5xx, timeouts, resets, short bodies
                transient += 1
                log.info("%s: attempt %d failed: %s", ref.key, attempt, describe(exc))
                if transient >= TRANSIENT_TRIES:
                    return ObjectResult(ref, Status.PENDING, cand.attempts + attempt, describe(exc))
            except Exception as exc:  # a bug: shown with its traceback, the object set aside
                log.exception("s3://%s/%s: internal error", ref.bucket, ref.key)
                return ObjectResult(ref, Status.QUARANTINED, cand.attempts + attempt,
                                    f"internal error: {describe(exc)}")
            else:
                result.attempts = cand.attempts + attempt
                return result
            await asyncio.sleep(_backoff(attempt))

    def _bad_object(self, cand: Candidate, attempts: int, reason: str) -> ObjectResult:
        if not self.config.general.skip_on_error:
            self._errors.append(
                f"s3://{cand.ref.bucket}/{cand.ref.key}: {reason} (skip_on_error = false: the "
                "poll stopped here, the object stays pending; set skip_on_error = true to "
                "quarantine such objects and go on)"
            )
            self._halt.set()
            return ObjectResult(cand.ref, Status.PENDING, cand.attempts + attempts, reason)
        log.warning("quarantined s3://%s/%s: %s", cand.ref.bucket, cand.ref.key, reason)
        return ObjectResult(cand.ref, Status.QUARANTINED, cand.attempts + attempts, reason)

    # -- committing ---------------------------------------------------------------------

    async def _write(self, queue: asyncio.Queue[Any], summary: PollSummary) -> None:
        """Group results into transactions and commit them one at a time, while the next
        batch is read: a batch is committed when it has ``commit_records`` rows, when
        ``commit_interval`` has passed since its first result, or at the poll's end; if the
        commit before it still runs then, the batch keeps growing (up to ``commit_records``
        rows, then reading waits). So slow commits (rules over a large batch) make fewer,
        larger ones instead of holding up the downloads and parsing behind them."""
        general = self.config.general
        loop = asyncio.get_running_loop()
        batch: list[ObjectResult] = []
        rows, deadline, ended = 0, 0.0, False
        committing: asyncio.Future[None] = loop.create_future()
        committing.set_result(None)
        getting: asyncio.Future[Any] | None = None
        try:
            while True:
                if committing.done():
                    committing.result()  # (a failed commit fails the poll at once)
                    if ended and not batch:
                        return
                full = rows >= general.commit_records
                due = bool(batch) and (ended or full or loop.time() >= deadline)
                if due and committing.done():
                    committing = asyncio.ensure_future(self._commit(batch, summary))
                    batch, rows = [], 0
                    continue
                waits: set[asyncio.Future[Any]] = set()
                if not committing.done():
                    waits.add(committing)
                if not (ended or full):
                    getting = getting or asyncio.ensure_future(queue.get())
                    waits.add(getting)
                timeout = max(0.0, deadline - loop.time()) if batch and not due else None
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if getting is not None and getting.done():
                    item, getting = getting.result(), None
                    if item is None:
                        ended = True
                        continue
                    if not batch:
                        deadline = loop.time() + general.commit_interval
                    batch.append(item)
                    rows += item.rows
        finally:
            for future in (getting, committing):
                if future is not None and not future.done():
                    future.cancel()

    async def _commit(self, batch: list[ObjectResult], summary: PollSummary) -> None:
        stats = await self.db(commit_isolating, self.store, batch)
        summary.add(batch, stats)
        log.info("committed %d objects, %d records, %d events",
                 len(batch), stats.records, stats.events)
        outcomes = tuple(
            ObjectOutcome(r.ref.bucket, r.ref.key, r.status, r.records, r.bad_lines, r.error)
            for r in batch
        )
        self.publish(BatchCommitted(outcomes, stats.records, stats.events, time.time()))
        if stats.alerts is not None or stats.derived is not None:
            self.publish(AlertsChanged(stats.alerts, time.time(), stats.derived))


async def _halt_when(stop: asyncio.Event, halt: asyncio.Event) -> None:
    await stop.wait()
    log.info("stopping: the poll ends at its next commit")
    halt.set()


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first exception of a (possibly nested) group: the one to report."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _backoff(attempt: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def _scope(bucket: BucketConfig) -> Scope:
    """The objects this entry lists, as the ledger knows them."""
    return Scope(bucket.name, bucket.logs_prefix, kinds_of(bucket.type),
                 bucket.aws_account_id, bucket.regions)
