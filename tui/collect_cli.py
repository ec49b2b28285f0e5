"""Collecting from the command line (``collect``, and ``watch --headless`` when no
collector runs): the store opened before the event loop, the service's signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator

from core.config import Config
from core.events import CoreEvent, Publish
from core.store import Store, open_store
from tui.cli_base import EXIT_FAILED, EXIT_OK, engine_of
from tui.output import report, warn_rule_errors


def retry_quarantined(store: Store, asked: bool) -> None:
    """``--retry-quarantined``: the quarantined objects are read again."""
    if asked:
        print(f"vpcwatch: {store.retry_quarantined()} quarantined objects will be read again",
              file=sys.stderr)


def collect(config: Config, once: bool, as_json: bool, publish: Publish | None = None,
            parity_level: int | None = None, retry: bool = False) -> int:
    """Collect into the configured store. It is opened before the event loop runs: a wait
    for readers that hold it (core/store/opening.py) stops on the first Ctrl-C."""
    engine = engine_of(config)
    try:
        with _stopped_by_signals(), open_store(config.general.state_dir, engine=engine) as store:
            store.parity_level = parity_level  # (None: no parity alerts per commit)
            warn_rule_errors(engine)
            retry_quarantined(store, retry)
            return asyncio.run(_run_collector(config, store, once, as_json, publish))
    except _Stopped:  # (before the event loop's handlers: opening, waiting for readers)
        return EXIT_OK


class _Stopped(BaseException):
    """SIGTERM or SIGHUP before the collector's event loop runs. (A BaseException, as
    KeyboardInterrupt is: the handler raises it wherever the main thread is, and an
    ``except Exception`` there, such as logging's around the line that says the collector
    waits for readers, took it for that code's own failure and the wait went on.)"""


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the service with exit 0 from the start: before the event
    loop takes them, they ended it with the signal's default (a service stopped while it
    waited for readers to finish was said to have failed; found by an adversarial test)."""
    def stop(signum: int, frame: object) -> None:
        raise _Stopped

    signals = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _run_collector(config: Config, store: Store, once: bool, as_json: bool,
                         publish: Publish | None) -> int:
    from core.collector import Collector

    stop = asyncio.Event()
    reader_left: list[BrokenPipeError] = []

    def publishing(event: CoreEvent) -> None:
        """``publish``, but a reader of the output that left (``watch --headless | head
        -1``) ends the service, as it ends other Unix tools (the collector took it for a
        failed poll and went on polling for ever; found by an adversarial test)."""
        if publish is None or reader_left:
            return
        try:
            publish(event)
        except BrokenPipeError as exc:
            reader_left.append(exc)
            stop.set()

    collector = Collector(config, store, publishing)
    try:
        if once:
            summary = await collector.poll()
            report(summary, as_json)
            return EXIT_FAILED if summary.incomplete else EXIT_OK
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        await collector.run(stop)
        if reader_left:
            raise reader_left[0]  # (main: exit 141, quietly)
        return EXIT_OK
    finally:
        collector.close()
