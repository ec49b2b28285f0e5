"""The publication (core/store/publication.py): what a viewer loads from it equals what the
store holds, commit after commit; files are private; a failed publication loses nothing."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import socket
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.layouts import Kind
from core.objects import ObjectRef, ObjectResult, Status
from core.rules import load_engine
from core.store import Store, StoreError, publication
from core.store.ledger import ListingMarks
from core.store.opening import _attached
from core.store.statedir import StateLock
from tests import flowgen, scenarios
from tests.conftest import write_config
from tests.storetools import flows
from tui.cli import main

TABLES = {"alerts": "id", "objects": "bucket, key", "cloudtrail": "event_id",
          "segments": "name", "prefixes": "bucket, prefix", "meta": "key",
          "traffic_minutes": "ALL"}


def events(n: int, key: str | None = None) -> ObjectResult:
    """An object (``trail-n``, or ``key``) holding CloudTrail event ``en``."""
    from core.cloudtrail_parser import parse_cloudtrail

    body = flowgen.trail_object([flowgen.trail_event("CreateVpc", event_id=f"e{n}",
                                                     error="Client.UnauthorizedOperation")])
    parsed = parse_cloudtrail(gzip.decompress(body))
    return ObjectResult(ObjectRef("b", key or f"trail-{n}", "etag", 1, Kind.CLOUDTRAIL),
                        Status.DONE, events=parsed.table)


class Follower:
    """A viewer attached as the app is (``Store.reload_publication``: each new state loaded
    from the one it holds)."""

    def __init__(self) -> None:
        self.store: Store | None = None

    def follow(self, state_dir: Path) -> duckdb.DuckDBPyConnection:
        if self.store is None:  # (this process publishes: it stands for the collector)
            owner = f"pid {os.getpid()} on {socket.gethostname()} (vpcwatch collect)"
            self.store = _attached(state_dir, None, owner)
        else:
            assert self.store.reload_publication()
        return self.store.con


def same_as_store(store: Store, follower: Follower | None = None) -> None:
    """What a viewer loads (whole, and from the state it held) equals what the store holds."""
    published = publication.load(store.state_dir, publication.current(store.state_dir))
    for viewer in [published] + ([follower.follow(store.state_dir)] if follower else []):
        same_tables(viewer, store)


def same_tables(viewer: duckdb.DuckDBPyConnection, store: Store) -> None:
    for table, key in TABLES.items():
        sql = f"SELECT * FROM {table} ORDER BY {key}"
        assert viewer.sql(sql).fetchall() == store.con.sql(sql).fetchall(), table


def test_what_a_viewer_loads_equals_the_store_commit_after_commit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="core.store.publication")
    store = Store(tmp_path, engine=load_engine([]))
    store.start_publishing()
    lines = [line for s in scenarios.detections() for line in s.lines]
    follower, skipping = Follower(), Follower()  # (the second loads every other state)
    for n in range(4):  # windows span commits: alerts are updated (new revisions)
        store.commit([flows(n, lines[n::4]), events(n)])
        same_as_store(store, follower)
        if n % 2 == 0:
            same_tables(skipping.follow(store.state_dir), store)
        if n == 0:
            small = {table: store.publisher.files[table] for table in ("prefixes", "meta")}
    # (tables the commits left as they were keep their files: nothing to write or load)
    assert {table: store.publisher.files[table] for table in small} == small
    late = flows(20, lines[::7])  # an object that failed once, then was read
    store.commit([ObjectResult(late.ref, Status.PENDING, error="timed out")])
    same_as_store(store, follower)
    store.commit([late])
    same_as_store(store, follower)
    same_tables(skipping.follow(store.state_dir), store)  # (three states at once)
    store.commit([events(1, key="trail-again")])  # (an event delivered twice: stored once)
    same_as_store(store, follower)
    assert store.con.sql("SELECT count(*) FROM cloudtrail WHERE event_id = 'e1'"
                         ).fetchall() == [(1,)]
    assert store.con.sql("SELECT max(revision) FROM alerts").fetchall()[0][0] > 1
    changed = flows(0, lines[::3])  # an object read again with another ETag
    changed.replaces = True
    store.commit([changed])
    same_as_store(store, follower)
    for n in range(4, 8):  # (enough small segments to be merged)
        store.commit([flows(n, lines[n::9])])
        same_as_store(store, follower)
    assert store.compact() > 0  # (merged: the summary's rows of the old segments leave)
    same_as_store(store, follower)
    store.prune(10 * 365 * 86400, date.today())  # (the first notes the ledger's first day)
    generation = store.publisher.generation
    store.prune(10 * 365 * 86400, date.today())  # (nothing that old: nothing changed…)
    assert store.publisher.generation == generation  # (…so no new state to load)
    store.publisher.whole()  # (as after a prune that dropped rows)
    same_as_store(store, follower)
    store.commit([flows(9, lines[::5]), events(9)])  # (after a whole one: from it)
    same_as_store(store, follower)
    assert "loading it whole" not in caplog.text  # (each state from the one held)
    directory = tmp_path / publication.DIRECTORY
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}
    store.close()


def spilled(con: duckdb.DuckDBPyConnection) -> list[Path]:
    """The files DuckDB spilled to while a sort too large for ``con``'s memory limit is
    under way (its reader open: the sort has run, its runs are on disk)."""
    reader = con.sql("SELECT md5(i::VARCHAR) || repeat('x', 40) AS s FROM range(3000000) t(i) "
                     "ORDER BY s").to_arrow_reader(1000)
    try:
        next(iter(reader))
        files = con.cursor().sql("SELECT path FROM duckdb_temporary_files()").fetchall()
        return [Path(path) for (path,) in files]
    finally:
        reader.close()


def test_what_a_query_spills_stays_in_the_state_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's default for an in-memory database (a viewer's copy of the state, the SQL
    sandbox) is ``.tmp`` in the current directory, its files readable by everyone: every
    database vpcwatch opens spills into the state directory's ``spill/`` (0700) instead."""
    from core.sandbox import Sandbox

    state, elsewhere = tmp_path / "state", tmp_path / "cwd"
    state.mkdir(mode=0o700)
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # (where DuckDB's default would put them)
    store = Store(state, engine=load_engine([]))
    store.start_publishing()
    store.commit([flows(0, scenarios.detections()[0].lines)])
    owner = f"pid {os.getpid()} on {socket.gethostname()} (vpcwatch collect)"
    viewer = _attached(state, None, owner)
    sandbox = Sandbox(viewer, memory_limit="128MB")
    try:
        for con in (store.con, viewer.con):
            con.execute("SET memory_limit = '128MB'")
        for name, con in {"store": store.con, "viewer": viewer.con, "sandbox": sandbox.con
                          }.items():
            files = spilled(con)
            assert files and {f.parent for f in files} == {state / "spill"}, (name, files)
            assert list(elsewhere.iterdir()) == [], name
        assert stat.S_IMODE((state / "spill").stat().st_mode) == 0o700
    finally:
        sandbox.close()
        viewer.close()
        store.close()


def test_the_row_of_the_latest_delta_wins_whatever_its_clock(tmp_path: Path) -> None:
    """A delta holds what a later commit wrote, as the store keeps it: its row of a key
    wins over an earlier file's even when its ``updated`` is older (the clock stepped back
    between an object's failure and its retry), loaded whole or from the state held."""
    (tmp_path / "store").mkdir()
    store = Store(tmp_path / "store")
    schema = store.con.sql("SELECT * FROM objects").to_arrow_table().schema
    store.close()
    directory = tmp_path / publication.DIRECTORY
    directory.mkdir()
    for generation, status, hour in ((1, "pending", 12), (2, "done", 11)):
        row = {"bucket": "b", "key": "k", "status": status,
               "updated": datetime(2026, 12, 5, hour, tzinfo=UTC).replace(tzinfo=None)}
        pq.write_table(pa.Table.from_pylist([row], schema=schema),
                       directory / f"objects-{generation}.parquet")
    first = {"pid": 1, "files": {"objects": ["objects-1.parquet"]}}
    both = {"pid": 1, "files": {"objects": ["objects-1.parquet", "objects-2.parquet"]}}
    held = duckdb.connect()
    publication.fill(held, tmp_path, first)
    publication.fill(held, tmp_path, both, first)
    for con in (publication.load(tmp_path, both), held):
        assert con.sql("SELECT key, status FROM objects").fetchall() == [("k", "done")]


def test_upkeep_that_changes_nothing_publishes_no_new_state(tmp_path: Path) -> None:
    """Each poll ends with upkeep (the listing marks, retention): when it changed nothing a
    viewer could see, no new state is published (each would make every attached app load
    it and recompute its views, every poll); when it changed the marks, one is."""
    store = Store(tmp_path)
    store.start_publishing()
    store.commit([flows(1, [line for s in scenarios.detections() for line in s.lines])])
    marks = ListingMarks(date(2026, 12, 1), date(2026, 11, 1), 1_764_000_000.0)
    store.set_listing_marks("flows", marks)
    store.prune(10 * 365 * 86400, date.today())
    follower = Follower()
    follower.follow(tmp_path)
    published = store.publisher.generation
    for _ in range(3):  # polls that found nothing new
        store.set_listing_marks("flows", marks)
        store.prune(10 * 365 * 86400, date.today())
    assert store.publisher.generation == published
    store.set_listing_marks("flows", ListingMarks(date(2026, 12, 1), date(2026, 11, 1),
                                                  1_764_003_600.0))  # (a relist finished)
    store.prune(10 * 365 * 86400, date.today())
    assert store.publisher.generation == published + 1
    same_as_store(store, follower)
    store.close()


def test_a_state_whose_new_files_cannot_be_added_is_loaded_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path, engine=load_engine([]))
    store.start_publishing()
    lines = [line for s in scenarios.detections() for line in s.lines]
    follower = Follower()
    store.commit([flows(0, lines[::2]), events(0)])
    same_as_store(store, follower)

    def fails(*_: object) -> None:
        raise duckdb.ConversionException("a column of another type")

    monkeypatch.setattr(publication, "_add", fails)
    store.commit([flows(1, lines[1::2]), events(1)])
    same_as_store(store, follower)
    store.close()


def test_a_state_another_collector_published_is_loaded_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector restarted without its old manifests numbers its files from 1 again: the
    names a viewer holds may then hold other rows, so only the same collector's are added."""
    store = Store(tmp_path, engine=load_engine([]))
    store.start_publishing()
    lines = [line for s in scenarios.detections() for line in s.lines]
    store.commit([flows(0, lines[::2]), events(0)])
    held = publication.current(tmp_path)
    viewer = publication.load(tmp_path, held)
    store.commit([flows(1, lines[1::2]), events(1)])
    added: list[object] = []
    monkeypatch.setattr(publication, "_add", lambda *args: added.append(args))
    publication.fill(viewer, tmp_path, publication.current(tmp_path), {**held, "pid": -1})
    assert added == []
    same_tables(viewer, store)
    store.close()


def test_a_failed_publication_fails_no_commit_and_the_next_one_is_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path, engine=load_engine([]))
    store.start_publishing()
    lines = [line for s in scenarios.detections() for line in s.lines]
    assert store.publisher is not None
    real = store.publisher.commit

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.publisher, "commit", full_disk)
    store.commit([flows(0, lines[::2])])  # committed all the same
    assert store.con.sql("SELECT count(*) FROM objects").fetchall() == [(1,)]
    monkeypatch.setattr(store.publisher, "commit", real)
    store.commit([flows(1, lines[1::2])])
    same_as_store(store)  # (the one after the failure was whole: nothing missed)
    shutil.rmtree(tmp_path / "published")  # (found by a review: publication never came back)
    store.commit([flows(2, lines[:5])])  # fails, is logged: the next one is whole
    store.commit([flows(3, lines[5:10])])
    same_as_store(store)
    store.close()


def test_files_leave_two_minutes_after_no_manifest_names_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """However old a file is, a viewer that has just read the manifest naming it still
    finds it: removal counts from when it stopped being named."""
    import os

    store = Store(tmp_path, engine=load_engine([]))
    store.start_publishing()
    assert store.publisher is not None
    directory = tmp_path / publication.DIRECTORY
    first = publication.current(tmp_path)
    named = {n for names in first["files"].values() for n in names}  # type: ignore[union-attr]
    for name in named:
        os.utime(directory / name, (1, 1))  # written long ago
    store.publisher.whole()
    assert all((directory / name).exists() for name in named)  # retired just now: kept
    monkeypatch.setattr(publication, "GRACE_SECONDS", 0.0)
    store.publisher.whole()
    assert not any((directory / name).exists() for name in named)
    store.close()


def test_a_manifest_naming_other_files_is_refused(tmp_path: Path) -> None:
    import duckdb

    for files in ({"alerts": ["../../etc/x.parquet"]}, {"secrets": ["secrets-1.parquet"]}):
        with pytest.raises(ValueError, match="not a publication's"):
            publication.fill(duckdb.connect(), tmp_path, {"files": files})


def test_a_publication_of_another_shape_is_refused_by_every_reader(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Valid JSON of the wrong shape, or an alerts file of another schema: viewers crashed
    (`watch` with an internal error, the app with a traceback; found by a review). Now a
    follower takes no such state, and a reader says in one line that it cannot read it."""
    import json as json_module

    from core.follow import Follower
    from core.store.opening import open_store as opening

    (tmp_path / "state").mkdir()
    writing = StateLock(tmp_path / "state").acquire()  # (as the collector: readers attach)
    store = Store(tmp_path / "state", engine=load_engine([]))
    store.start_publishing()
    lines = [line for s in scenarios.detections() for line in s.lines]
    store.commit([flows(0, lines[:40])])
    follower = Follower(tmp_path / "state")
    assert follower.poll() is not None
    config = write_config(tmp_path, [{"type": "vpcflow", "name": "flow-logs"}],
                          state_dir=str(tmp_path / "state"))
    directory = tmp_path / "state" / "published"
    name = (directory / "CURRENT").read_text().strip()
    good = json_module.loads((directory / name).read_text())
    for shape in ([], "x", {**good, "files": []}, {**good, "files": None},
                  {**good, "files": {"alerts": [1]}}, {**good, "generation": "7"}):
        (directory / name).write_text(json_module.dumps(shape))
        assert follower.poll() is None
        with pytest.raises(StoreError, match="its publication cannot be read"), \
                opening(tmp_path / "state", read_only=True):
            pass
        assert main(["watch", "--headless", "--config", str(config)]) == 1  # (one line)
        assert "its publication cannot be read" in capsys.readouterr().err
    other = directory / "alerts-999.parquet"  # an alerts file without the alerts' columns
    pq.write_table(pa.table({"id": ["a"], "revision": [1]}), other)  # (no level: watch failed)
    files = {**good["files"], "alerts": [*good["files"]["alerts"], other.name]}
    (directory / name).write_text(json_module.dumps({**good, "generation": 999,
                                                     "files": files}))
    assert follower.poll() is None and follower.generation == good["generation"]
    store.close()
    writing.release()


def test_only_a_commit_adds_segments_for_a_follower(tmp_path: Path) -> None:
    """Compaction rewrites segments: `watch` must not print the parity alerts of windows
    that gained no flow."""
    from core.follow import Follower

    store = Store(tmp_path, engine=load_engine([]))
    store.start_publishing()
    follower = Follower(tmp_path)
    follower.poll()
    lines = [line for s in scenarios.detections() for line in s.lines]
    store.commit([flows(0, lines[:40])])
    update = follower.poll()
    assert update is not None and len(update.segments) == 1
    for n in range(1, 9):  # enough small segments to compact
        store.commit([flows(n, lines[n::9][:5])])
        follower.poll()
    assert store.compact() > 0
    update = follower.poll()
    assert update is not None and update.segments == []
    store.close()


def test_a_late_object_is_one_the_ledger_did_not_know() -> None:
    from datetime import timedelta

    from core.listing_plan import ListingPlan
    from core.store.ledger import Candidate

    today = date.today()
    plan = ListingPlan(first=today - timedelta(days=6), window=today - timedelta(days=2),
                       relist_from=today - timedelta(days=6), backfill_from=None)

    def candidate(days_ago: int, known: bool) -> Candidate:
        ref = ObjectRef("b", f"k{days_ago}{known}", "e", 1, Kind.TEXT,
                        day=today - timedelta(days=days_ago))
        return Candidate(ref, attempts=0, replaces=False, known=known)

    found = [candidate(4, False), candidate(4, True), candidate(1, False)]
    assert plan.late(found) == [found[0]]  # (retried pending ones and the window's: not late)


def test_a_status_of_another_shape_shows_nothing_it_cannot_read(tmp_path: Path) -> None:
    """The app crashed on a status.json of `[]`, `{"errors": 5}` or `{"late": 1e999}`
    (found by a review): what is not the collector's status is left out."""
    from tui.attach import _show_activity
    from tui.widgets.status import Activity

    (tmp_path / "published").mkdir()
    status = tmp_path / "published" / "status.json"
    status.write_text("[]")
    assert publication.read_status(tmp_path) is None
    for text, errors in (('{"errors": 5, "late": 1e999, "last_poll": 12}', []),
                         ('{"errors": ["a", 7], "late": ' + "9" * 400 + ', "polling": true}',
                          ["a", "7"])):
        status.write_text(text)
        shown = publication.read_status(tmp_path)
        assert shown is not None
        activity = Activity()
        _show_activity(activity, shown)
        assert (activity.late, activity.errors) == (0, errors)
    assert activity.polling
