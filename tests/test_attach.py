"""Reading commands attached to a running collector (docs/attach.md): `alerts` and `query`
work while `collect` runs as a service, see each new commit, and give what the store holds
once the collector has stopped; what they read is private to the owner."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.priority import SPARED_NICE, VIEWER_NICE
from core.store import publication
from tests import flowgen, scenarios
from tests.conftest import Bucket, LineReader, write_config
from tests.test_collect import NOW
from tui.cli import main

A = "111111111111"


def put_detections(bucket: Bucket, first: int, count: int) -> None:
    """Objects whose records raise detections (scenarios'), plus CloudTrail events."""
    lines = [line for s in scenarios.detections() for line in s.lines]
    for n in range(first, first + count):
        key = flowgen.flow_key("", A, "us-east-1", NOW, n)
        bucket.put(key, flowgen.gzip_bytes(scenarios.text(lines[n::count + first])))
    bucket.put(flowgen.trail_key("", A, "us-east-1", NOW, first), flowgen.trail_object(
        [flowgen.trail_event("CreateVpc", error="Client.UnauthorizedOperation")]))


def start_collector(tmp_path: Path, bucket: Bucket, kill_at: str | None = None, first: bool = True
                    ) -> tuple[Path, subprocess.Popen[str], LineReader]:
    """`collect` as a service (its own process) over a bucket of detections and events;
    the caller stops it. ``kill_at``: a kill point (core/killpoints.py)."""
    if first:
        put_detections(bucket, 0, 4)
    config = write_config(tmp_path, [{"type": "vpcflow", "name": bucket.name,
                                      "endpoint_url": bucket.url},
                                     {"type": "cloudtrail", "name": bucket.name,
                                      "endpoint_url": bucket.url}],
                          default_rules=True, interval="1s")
    command = [sys.executable, "-m", "tui.cli", "-v", "collect", "--config", str(config)]
    env = {**os.environ, "VPCWATCH_KILL_AT": kill_at or ""}
    collector = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=env)
    assert collector.stderr is not None
    return config, collector, LineReader(collector.stderr)


def niceness(pid: int) -> set[int]:
    """The nice value of each thread of process ``pid`` (field 19 of its tasks' stat)."""
    values = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        values.add(int((task / "stat").read_text().rsplit(")", 1)[1].split()[16]))
    return values


def run_json_lines(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(args) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_alerts_and_query_attach_to_a_running_collector(
        tmp_path: Path, bucket: Bucket, capsys: pytest.CaptureFixture[str],
        yielded: list[str]) -> None:
    config, collector, log = start_collector(tmp_path, bucket)
    alerts = ["alerts", "--config", str(config), "--json", "--min-level", "5"]
    count = ["query", "--config", str(config), "--format", "json",
             "SELECT count(*) AS n FROM flows"]
    watch: subprocess.Popen[str] | None = None
    try:
        log.wait_for("poll finished")
        first = run_json_lines(alerts, capsys)
        assert first and {a["source"] for a in first} == {"vpcflow", "cloudtrail"}
        with_parity = run_json_lines([*alerts[:-1], "3"], capsys)  # (derived on the copy)
        assert [a for a in with_parity if not a["derived"]] == first
        assert len(with_parity) > len(first)
        [before] = run_json_lines(count, capsys)
        assert len(yielded) == 3  # each attached command yields the CPU to the collector
        watch = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", "--headless",
                                  "--config", str(config)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert watch.stdout is not None and watch.stderr is not None
        assert "attached to pid" in LineReader(watch.stderr).wait_for("attached to")
        assert niceness(watch.pid) == {VIEWER_NICE}  # (every thread: see core/priority.py)
        printed = LineReader(watch.stdout)

        put_detections(bucket, 10, 3)  # new objects: the next polls commit them
        for _ in range(5):  # (a poll may list the flows before the CloudTrail object is put)
            log.wait_for("poll finished")
            later = run_json_lines(alerts, capsys)
            if len(later) > len(first):
                break
        [after] = run_json_lines(count, capsys)
        assert after["n"] > before["n"] and len(later) > len(first)
        # watch printed each alert the new objects raised (and no other)
        new = {a["id"] for a in later} - {a["id"] for a in first}
        seen: set[str] = set()
        while not new <= seen:
            seen.add(json.loads(printed.wait_for('"id"', timeout=60))["id"])
        assert seen <= {a["id"] for a in later}
    finally:
        for process in (collector, watch):
            if process is not None:
                process.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0
        assert watch is None or watch.wait(timeout=60) == 0

    # the store itself, now that nobody holds it: the same alerts and flows
    yielded.clear()
    assert run_json_lines(alerts, capsys) == later
    assert run_json_lines(count, capsys) == [after]
    assert yielded == []  # (nothing to yield to)

    published = tmp_path / "state" / "published"
    assert stat.S_IMODE(published.stat().st_mode) == 0o700
    modes = {stat.S_IMODE(p.stat().st_mode) for p in published.iterdir()}
    assert modes == {0o600}


def test_without_a_publication_a_locked_store_still_names_its_owner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.store.statedir import StateLock

    state = tmp_path / "state"
    log = tmp_path / "a.log"
    log.write_bytes(flowgen.flow_object(flowgen.V2, 5).text())
    assert main(["scan", str(log), "--state-dir", str(state)]) == 0
    capsys.readouterr()
    with StateLock(state, exclusive=True):  # a writer that publishes nothing (scan)
        assert main(["query", "--state-dir", str(state), "SELECT 1"]) == 1
    assert f"pid {os.getpid()}" in capsys.readouterr().err


def scanned_state(tmp_path: Path, capsys: pytest.CaptureFixture[str], records: int) -> Path:
    state = tmp_path / "state"
    log = tmp_path / "a.log"
    log.write_bytes(flowgen.flow_object(flowgen.V2, records).text())
    assert main(["scan", str(log), "--state-dir", str(state)]) == 0
    capsys.readouterr()
    return state


def test_a_reader_started_as_a_collector_starts_waits_for_its_first_publication(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], yielded: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector holds the lock some time before it publishes (it opens the store and
    checks its rules first): a reader started meanwhile waits for that publication and
    attaches, instead of being told the collector "publishes nothing for readers"."""
    from core.store import open_store, opening
    from core.store.statedir import name_process

    state = scanned_state(tmp_path, capsys, 7)
    waiting, pause = threading.Event(), opening._pause
    monkeypatch.setattr(opening, "_pause", lambda seconds: (waiting.set(), pause(seconds)))
    name_process("vpcwatch collect")  # (what the lock file will say of this process)
    try:
        collector = open_store(state)
        store = collector.__enter__()
    finally:
        name_process(None)

    def publish_once_a_reader_waits() -> None:
        assert waiting.wait(timeout=30)
        store.start_publishing()

    publisher = threading.Thread(target=publish_once_a_reader_waits)
    publisher.start()
    try:
        count = run_json_lines(["query", "--state-dir", str(state), "--format", "json",
                                "SELECT count(*) AS n FROM flows"], capsys)
    finally:
        waiting.set()
        publisher.join()
        collector.__exit__(None, None, None)
    assert count == [{"n": 7}] and yielded == ["yielded"]  # (attached: it yields)


@pytest.mark.parametrize(("command", "waits"), [("vpcwatch collect", True),
                                                ("vpcwatch scan", False)])
def test_a_writer_that_never_publishes_is_named_after_the_wait_if_any(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: str, waits: bool) -> None:
    from core.store import opening
    from core.store.statedir import StateLock, name_process

    state = scanned_state(tmp_path, capsys, 3)
    pauses: list[float] = []
    monkeypatch.setattr(opening, "_pause", pauses.append)
    monkeypatch.setattr(opening, "FIRST_PUBLICATION_WAIT", 0.05)
    name_process(command)
    try:
        lock = StateLock(state, exclusive=True).acquire()
    finally:
        name_process(None)
    try:
        assert main(["query", "--state-dir", str(state), "SELECT 1"]) == 1
    finally:
        lock.release()
    err = capsys.readouterr().err
    said = ("has not published its state after 0 s (still starting?)" if waits
            else "which publishes nothing for readers")
    assert f"pid {os.getpid()}" in err and f"({command})" in err and said in err
    assert bool(pauses) == waits


def test_a_collector_that_stops_before_it_publishes_is_said_to_have_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from core.store import opening
    from core.store.statedir import StateLock, name_process

    state = scanned_state(tmp_path, capsys, 3)
    name_process("vpcwatch collect")
    try:
        lock = StateLock(state, exclusive=True).acquire()
    finally:
        name_process(None)
    monkeypatch.setattr(opening, "_pause", lambda _: lock.release())  # (it stops meanwhile)
    assert main(["query", "--state-dir", str(state), "SELECT 1"]) == 1
    assert "(vpcwatch collect) stopped before it published" in capsys.readouterr().err


async def test_an_app_attached_to_a_running_collector_follows_its_commits(
        tmp_path: Path, bucket: Bucket) -> None:
    """The app opened while `collect` runs: it says so, and new alerts reach its feed after
    the collector commits them (Textual's Pilot; the collector is a real process)."""
    from core.priority import local_pid
    from core.rules import load_engine
    from core.store import open_store
    from tests.apptools import until
    from tui.app import VpcwatchApp
    from tui.widgets.feed import AlertFeed
    from tui.widgets.status import StatusBar

    _, collector, log = start_collector(tmp_path, bucket)
    try:
        log.wait_for("poll finished")
        with open_store(tmp_path / "state", read_only=True, engine=load_engine([])) as store:
            assert store.attached_to is not None and f"pid {collector.pid}" in store.attached_to
            app = VpcwatchApp(store, None, min_level=0)
            try:
                async with app.run_test(size=(160, 48)):
                    await until(lambda: app.explorer is not None)
                    await app.wait_settled()
                    feed = app.query_one(AlertFeed)
                    before = feed.total
                    assert before > 0
                    assert "attached to pid" in str(app.query_one(StatusBar).render())
                    # the collector's own activity (status.json): its last poll
                    await until(lambda: app.activity.last_poll is not None, timeout=30)
                    # (whose CPU the app samples: its views wait while it is busy)
                    assert local_pid(app.activity.attached) == collector.pid
                    put_detections(bucket, 10, 3)  # (its CloudTrail event: a new alert)
                    await until(lambda: feed.total > before, timeout=60)
            finally:
                app.close_background()
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0


async def test_an_attached_app_outlives_a_collector_killed_mid_commit(
        tmp_path: Path, bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    """kill -9 of the collector between a segment's write and its commit: the app keeps
    the last committed state, says the collector stopped, and once it runs again shows
    what the store holds (the crash tests show that equals an uninterrupted run)."""
    from core.rules import load_engine
    from core.store import open_store, publication
    from tests.apptools import until
    from tui.app import VpcwatchApp
    from tui.widgets.feed import AlertFeed
    from tui.widgets.status import StatusBar

    config, collector, log = start_collector(tmp_path, bucket, kill_at="segment-written:2")
    restarted: subprocess.Popen[str] | None = None
    try:
        log.wait_for("poll finished")
        with open_store(tmp_path / "state", read_only=True, engine=load_engine([])) as store:
            app = VpcwatchApp(store, None)
            try:
                async with app.run_test(size=(160, 48)):
                    await until(lambda: app.explorer is not None)
                    await app.wait_settled()
                    put_detections(bucket, 10, 3)  # its commit is the one killed
                    assert collector.wait(timeout=60) == -signal.SIGKILL
                    bar = app.query_one(StatusBar)
                    await until(lambda: "stopped" in str(bar.render()), timeout=30)
                    _, restarted, again = start_collector(tmp_path, bucket, first=False)
                    again.wait_for("poll finished")
                    await until(lambda: "attached to" in str(bar.render()), timeout=30)
                    restarted.send_signal(signal.SIGTERM)
                    assert restarted.wait(timeout=60) == 0
                    last = publication.current(store.state_dir)["generation"]
                    await until(lambda: store.generation == last, timeout=30)
                    app.request_view()
                    await app.wait_settled()
                    feed = app.query_one(AlertFeed)
                    shown = {row["id"] for row in feed.rows_shown}
            finally:
                app.close_background()
    finally:
        for process in (collector, restarted):
            if process is not None and process.poll() is None:
                process.kill()
    stored = run_json_lines(["alerts", "--config", str(config), "--json", "--min-level", "5"],
                            capsys)
    assert shown == {a["id"] for a in stored} and len(stored) == feed.total



def test_a_stuck_or_killed_viewer_costs_the_collector_nothing(
        tmp_path: Path, bucket: Bucket) -> None:
    """A viewer stopped (SIGSTOP: stuck in a read) and another killed (-9) while attached:
    the collector goes on committing and publishing, and stops cleanly."""
    config, collector, log = start_collector(tmp_path, bucket)
    viewers: list[subprocess.Popen[str]] = []
    try:
        log.wait_for("poll finished")
        for _ in range(2):
            viewer = subprocess.Popen([sys.executable, "-m", "tui.cli", "watch", "--headless",
                                       "--config", str(config)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            assert viewer.stderr is not None
            LineReader(viewer.stderr).wait_for("attached to")
            viewers.append(viewer)
        viewers[0].send_signal(signal.SIGSTOP)
        viewers[1].kill()
        before = publication.current(tmp_path / "state")["generation"]
        put_detections(bucket, 10, 3)
        log.wait_for("committed")
        log.wait_for("poll finished")
        assert publication.current(tmp_path / "state")["generation"] > before
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=60) == 0
        for viewer in viewers:
            viewer.kill()
            viewer.wait(timeout=30)


def test_a_publication_left_by_a_stopped_collector_is_not_taken_for_another_writers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A collector published, then stopped; now another process (a scan, say) holds the
    directory: readers name it instead of showing the old collector's state."""
    from core.store import open_store
    from core.store.statedir import StateLock

    state = tmp_path / "state"
    with open_store(state) as store:
        store.start_publishing()  # (this process publishes: its pid is in the manifest)
    manifest = publication.current(state)
    manifest_path = state / publication.DIRECTORY / f"manifest-{manifest['generation']}.json"
    manifest_path.write_text(json.dumps({**manifest, "pid": 1}))  # …as another process had
    with StateLock(state, exclusive=True):
        assert main(["query", "--state-dir", str(state), "SELECT 1"]) == 1
    err = capsys.readouterr().err
    assert f"being written by pid {os.getpid()}" in err and "publishes nothing" in err



def test_yielding_lowers_every_thread_but_the_spared_and_heavy_pools_follow() -> None:
    """In a process of its own (a process cannot raise its priority back): a thread started
    before (as DuckDB's workers are) runs at VIEWER_NICE, the spared one (the app's UI
    thread) and what it starts later at SPARED_NICE, and a pool thread that calls
    follow_yield (the app's view reader) lowers itself to VIEWER_NICE."""
    script = """
import os, threading
from concurrent.futures import ThreadPoolExecutor
from core.priority import follow_yield, yield_to_collector
def nice(): return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
release = threading.Event(); seen = {}
before = threading.Thread(target=lambda: (release.wait(), seen.update(before=nice())))
before.start()
yield_to_collector(spare=[threading.main_thread()])
release.set(); before.join()
after = threading.Thread(target=lambda: seen.update(after=nice())); after.start(); after.join()
heavy = ThreadPoolExecutor(1, initializer=follow_yield).submit(nice).result()
print(seen["before"], nice(), seen["after"], heavy)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    base = os.nice(0)  # (the child starts at this process's niceness)
    low, spared = max(base, VIEWER_NICE), max(base, SPARED_NICE)
    assert out.split() == [str(low), str(spared), str(spared), str(low)]
