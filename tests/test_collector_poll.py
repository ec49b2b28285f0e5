"""The collector's poll (``core.collector.Collector``) against a real S3 endpoint, in the test's
process: a commit that fails, a stop mid-poll, reading while a commit runs, and what it
publishes for viewers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import flowgen
from tests.conftest import Bucket, query, write_config

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
A = "111111111111"


@pytest.mark.parametrize("objects", [30, 1], ids=["while reading", "the last commit"])
async def test_a_store_that_cannot_commit_ends_the_poll_with_its_error(
    tmp_path: Path, bucket: Bucket, monkeypatch: pytest.MonkeyPatch, objects: int
) -> None:
    """Disk full cannot be produced here, so the commit is made to fail (a stand-in): the
    readers blocked on the full queue must be cancelled, not left waiting, and the poll must
    end with the store's own error, also when the failed commit is the poll's last (found
    by review: the writer then ended without looking at it)."""
    import asyncio

    from core.collector import Collector
    from core.config import load_config
    from core.store import Store

    for n in range(objects):
        bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, n),
                   flowgen.flow_object(flowgen.V2, 20, seed=n).gz())
    config = load_config(write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                                  "endpoint_url": bucket.url}],
                                      concurrency=1, commit_records=20))
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state")

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "commit", disk_full)
    collector = Collector(config, store)
    try:
        with pytest.raises(OSError, match="No space left"):
            async with asyncio.timeout(60):
                await collector.poll()
    finally:
        collector.close()
        store.close()


async def test_viewers_can_attach_before_a_first_poll_that_waits_an_interval(
    tmp_path: Path, bucket: Bucket
) -> None:
    """`run_on_start = false`: the collector publishes the store at once (before, nothing
    until its first poll, an interval later: every viewer refused meanwhile; found by a
    review)."""
    import asyncio

    from core.collector import Collector
    from core.config import load_config
    from core.store import Store, publication

    config = load_config(write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                                  "endpoint_url": bucket.url}],
                                      run_on_start=False, interval="1h"))
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state")
    collector, stop = Collector(config, store), asyncio.Event()
    running = asyncio.create_task(collector.run(stop))
    try:
        async with asyncio.timeout(30):  # (a condition waited on: the publication's file)
            while not publication.exists(tmp_path / "state"):
                await asyncio.sleep(0.05)
        assert not running.done()  # (still waiting for its first poll)
    finally:
        stop.set()
        await running
        collector.close()
        store.close()


async def test_a_stop_ends_the_poll_at_its_next_commit(tmp_path: Path, bucket: Bucket) -> None:
    """Found by an adversarial test: SIGTERM (the service's `stop`) waited for the poll's
    end, minutes of a backfill, though docs/service.md says it ends at the next commit.
    Stopped at its first commit (one object at a time, a commit each), the poll reads no
    more; its listing marks are not saved; the next poll reads the rest, each object once."""
    import asyncio

    from core.collector import Collector
    from core.config import load_config
    from core.events import BatchCommitted
    from core.store import Store

    objects = 30
    for n in range(objects):
        bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, n),
                   flowgen.flow_object(flowgen.V2, 20, seed=n).gz())
    path = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                    "endpoint_url": bucket.url}],
                        concurrency=1, commit_interval="0s", commit_records=1)
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state")
    stop = asyncio.Event()

    def stop_at_first_commit(event: object) -> None:
        if isinstance(event, BatchCommitted):
            stop.set()

    collector = Collector(load_config(path), store, stop_at_first_commit)
    again = Collector(load_config(path), store, lambda _: None)
    try:
        summary = await asyncio.wait_for(collector.poll(stop=stop), 60)
        [(marks,)] = store.con.execute(
            "SELECT count(*) FROM meta WHERE key LIKE 'listed_from:%'").fetchall()
        rest = await asyncio.wait_for(again.poll(), 60)
        stored = store.con.execute(
            "SELECT count(*), count(DISTINCT object_key) FROM flows").fetchall()
    finally:
        collector.close()
        again.close()
        store.close()
    done = summary.objects.get("done", 0)
    assert 1 <= done < objects // 2  # (the one read, those queued and read meanwhile)
    assert marks == 0
    assert rest.objects.get("done", 0) == objects - done
    assert stored == [(objects * 20, objects)]


async def test_objects_are_read_while_a_commit_runs(
    tmp_path: Path, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer commits one batch at a time while the next one is read: with the first
    commit held (a real commit, gated), every other object is still downloaded and parsed,
    and they are committed together once it ends. Before, reading stopped when the results
    queue was full (``concurrency`` * 2 results)."""
    import asyncio
    import threading

    import core.collector
    from core.collector import Collector
    from core.config import load_config
    from core.events import BatchCommitted
    from core.store import Store

    objects = 30
    for n in range(objects):
        bucket.put(flowgen.flow_key("", A, "us-east-1", NOW, n),
                   flowgen.flow_object(flowgen.V2, 20, seed=n).gz())
    config = load_config(write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                                  "endpoint_url": bucket.url}],
                                      concurrency=1, commit_interval="0s"))
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state")
    read_object, commit = core.collector.read_object, store.commit
    parsed, all_parsed, release = [], threading.Event(), threading.Event()

    def counted(*args: object) -> object:
        result = read_object(*args)  # type: ignore[arg-type]
        parsed.append(result)
        if len(parsed) == objects:
            all_parsed.set()
        return result

    def held(batch: object) -> object:
        assert release.wait(60), "the test never released the first commit"
        return commit(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(core.collector, "read_object", counted)
    monkeypatch.setattr(store, "commit", held)
    events: list[object] = []
    collector = Collector(config, store, events.append)
    try:
        poll = asyncio.create_task(collector.poll())
        read_while_held = await asyncio.to_thread(all_parsed.wait, 60)
        release.set()
        async with asyncio.timeout(60):
            summary = await poll
    finally:
        release.set()
        collector.close()
        store.close()
    assert read_while_held, f"only {len(parsed)} of {objects} objects read during a commit"
    batches = [len(e.outcomes) for e in events if isinstance(e, BatchCommitted)]
    # (the last object parsed may reach the writer after the first commit ends)
    assert batches[0] == 1 and sum(batches) == objects and len(batches) <= 3
    assert summary.records == objects * 20
    assert query(tmp_path / "state", "SELECT count(*) FROM flows") == [(objects * 20,)]


async def test_the_core_publishes_what_it_committed_in_order(
    tmp_path: Path, bucket: Bucket
) -> None:
    """The app will listen to these events, published after the facts they report commit."""
    from core.collector import Collector
    from core.config import load_config
    from core.events import AlertsChanged, BatchCommitted, PollFinished, PollStarted
    from core.rules import load_engine
    from core.store import Store
    from tests import scenarios

    keys = []
    for n in range(3):
        keys.append(flowgen.flow_key("", A, "us-east-1", NOW, n))
        bucket.put(keys[-1], flowgen.flow_object(flowgen.V2, 40, seed=n).gz())
    [scan] = [s for s in scenarios.detections() if s.name == "portscan"]  # an alert to publish
    keys.append(flowgen.flow_key("", A, "us-east-1", NOW, 3))
    bucket.put(keys[-1], flowgen.gzip_bytes(scenarios.text(scan.lines)))
    config = load_config(write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                                  "endpoint_url": bucket.url}]))
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=load_engine([]))
    events: list[object] = []

    collector = Collector(config, store, events.append)
    try:
        summary = await collector.poll(next_in=600)
    finally:
        collector.close()
        store.close()
    kinds = [type(event).__name__ for event in events]
    assert kinds[0] == "PollStarted" and kinds[-1] == "PollFinished"
    assert isinstance(events[0], PollStarted) and isinstance(events[-1], PollFinished)
    assert events[-1].summary is summary and events[-1].next_poll is not None
    outcomes = [o for e in events if isinstance(e, BatchCommitted) for o in e.outcomes]
    assert sorted(o.key for o in outcomes) == sorted(keys)
    assert sum(o.records for o in outcomes) == summary.records == 120 + len(scan.lines)
    alerts = [e for e in events if isinstance(e, AlertsChanged)]
    assert sum(e.alerts.num_rows for e in alerts) == summary.alerts > 0
