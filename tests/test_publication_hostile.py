"""The publication under attack (found by an adversarial test; docs/attach.md): what was planted
in ``published/`` is refused, never written through, never read outside the state directory,
never waited on; and a follower reports every commit's flows, whatever came between two of its
looks."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.follow import Follower
from core.rules import load_engine
from core.store import Store, StoreError, publication
from core.store.opening import _attached
from tests import scenarios
from tests.storetools import flows

LINES = [line for s in scenarios.detections() for line in s.lines]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    (tmp_path / "state").mkdir()
    store = Store(tmp_path / "state", engine=load_engine([]))
    store.start_publishing()
    yield store
    store.close()


def test_published_replaced_by_a_link_is_neither_written_nor_emptied(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """``published`` replaced by a link while the collector ran: the publication went where
    it pointed, and two minutes later every other file there was removed."""
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    directory = store.state_dir / publication.DIRECTORY
    directory.rename(tmp_path / "moved")
    directory.symlink_to(precious)
    monkeypatch.setattr(publication, "GRACE_SECONDS", 0.0)
    store.commit([flows(1, LINES[:5])])  # (its publication fails, and is logged)
    store.commit([flows(2, LINES[5:10])])
    store.compact()
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]
    with pytest.raises(OSError, match="not a directory of the user's own"):
        publication.write_status(store.state_dir, {"polling": True})
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]


def test_only_the_publications_own_files_are_ever_removed(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = store.state_dir / publication.DIRECTORY
    (directory / "notes.txt").write_text("mine")
    monkeypatch.setattr(publication, "GRACE_SECONDS", 0.0)
    store.commit([flows(1, LINES[:5])])
    store.commit([flows(2, LINES[5:10])])
    assert (directory / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["/etc/hostname", "../../outside.json", "manifest-1.json/.."])
def test_current_naming_a_file_that_is_no_manifest_is_refused(store: Store, name: str) -> None:
    (store.state_dir / publication.DIRECTORY / publication.CURRENT).write_text(name)
    with pytest.raises(ValueError, match="names no manifest"):
        publication.current(store.state_dir)


def test_a_fifo_or_a_device_in_place_of_a_file_is_not_waited_on(store: Store) -> None:
    """A FIFO planted as the manifest hung every reader (and ``watch`` then ignored
    SIGTERM), one as ``status.json`` froze the attached app; ``/dev/zero`` as the manifest
    was read without end."""
    directory = store.state_dir / publication.DIRECTORY
    name = (directory / publication.CURRENT).read_text().strip()
    (directory / name).unlink()
    os.mkfifo(directory / name)
    (directory / publication.STATUS).unlink(missing_ok=True)
    os.mkfifo(directory / publication.STATUS)
    outcome: list[object] = []

    def read() -> None:
        for attempt in (lambda: publication.current(store.state_dir),
                        lambda: publication.read_status(store.state_dir)):
            try:
                outcome.append(attempt())
            except OSError as exc:
                outcome.append(type(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert outcome == [OSError, None]
    (directory / name).unlink()
    (directory / name).symlink_to("/dev/zero")
    with pytest.raises(OSError):
        publication.current(store.state_dir)


def test_a_manifest_nested_past_recursion_is_no_manifest(store: Store) -> None:
    directory = store.state_dir / publication.DIRECTORY
    name = (directory / publication.CURRENT).read_text().strip()
    (directory / name).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deep"):
        publication.current(store.state_dir)
    assert Follower(store.state_dir).poll() is None  # (a follower retries later)


def test_a_segment_name_leading_outside_is_refused(store: Store) -> None:
    """A segments file naming ``../../outside.parquet`` had the attached store read flows
    from outside the state directory."""
    store.commit([flows(1, LINES[:5])])
    directory = store.state_dir / publication.DIRECTORY
    manifest = publication.current(store.state_dir)
    [segments_file] = manifest["files"]["segments"]  # type: ignore[index]
    table = pq.read_table(directory / segments_file)
    names = table["name"].to_pylist()
    names[0] = "../../../outside/seg-0.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("name"), "name",
                                    pa.array(names)), directory / segments_file)
    follower = Follower(store.state_dir)
    assert follower.poll() is None
    owner = f"pid {os.getpid()} on {socket.gethostname()} (vpcwatch collect)"
    with pytest.raises(StoreError, match=r"its publication cannot be read: .*not the name of a "
                       r"segment"):  # (an attached store, as alerts and query open it)
        _attached(store.state_dir, None, owner)


def test_every_commit_is_reported_when_its_state_was_published_whole(store: Store) -> None:
    """The 51st delta is published as a whole rewrite: its commit's flows went unreported
    (and ``watch --headless --min-level 3`` left out their parity alerts)."""
    follower = Follower(store.state_dir)
    follower.poll()
    unreported = []
    for n in range(60):
        store.commit([flows(n, LINES[n::60][:3])])
        update = follower.poll()
        if update is None or not update.segments:
            unreported.append(n)
    assert unreported == []


def test_a_commit_compacted_before_the_next_look_is_reported(store: Store) -> None:
    follower = Follower(store.state_dir)
    follower.poll()
    for n in range(8):  # small segments, as polls leave them
        store.commit([flows(n, LINES[n::9][:5])])
        follower.poll()
    store.commit([flows(8, LINES[8::9][:5])])  # a commit, then the poll's upkeep...
    committed = set(store.segments.names()) - follower.segments
    assert store.compact() > 0
    update = follower.poll()  # ...both seen at the follower's next look
    assert update is not None and set(update.segments) == committed
    rows = pq.read_table([store.segments.directory / name for name in update.segments])
    assert rows.num_rows == 5  # (the retired file is still there to read)


def test_the_status_file_still_reads(store: Store) -> None:
    publication.write_status(store.state_dir, {"polling": True, "late": 2})
    assert publication.read_status(store.state_dir) == {"polling": True, "late": 2}
    assert json.loads((store.state_dir / publication.DIRECTORY / publication.STATUS)
                      .read_text())["late"] == 2


def test_upkeep_published_whole_reports_no_flows(store: Store) -> None:
    """A compaction whose publication is the whole one that follows a failed publication
    (found by a review): its merged segment was reported as new flows, and ``watch``
    printed the parity alerts of their windows again."""
    follower = Follower(store.state_dir)
    follower.poll()
    for n in range(8):
        store.commit([flows(n, LINES[n::8][:5])])
        follower.poll()
    store._publication_failed = True  # (the poll's last publication failed: a full disk)
    assert store.compact() > 0
    assert publication.current(store.state_dir)["reason"] == "whole"
    update = follower.poll()
    assert update is not None and update.segments == []
    store._publication_failed = True  # …and a commit published whole is one
    store.commit([flows(9, LINES[9::8][:5])])
    update = follower.poll()
    assert update is not None and len(update.segments) == 1


def test_a_planted_generation_far_ahead_is_no_endless_walk(store: Store) -> None:
    directory = store.state_dir / publication.DIRECTORY
    follower = Follower(store.state_dir)
    follower.poll()
    manifest = publication.current(store.state_dir)
    manifest["generation"] = int(manifest["generation"]) + 10**12  # type: ignore[call-overload]
    (directory / "manifest-999.json").write_text(json.dumps(manifest))
    (directory / publication.CURRENT).write_text("manifest-999.json")
    polled = threading.Thread(target=follower.poll, daemon=True)
    polled.start()
    polled.join(timeout=30)
    assert not polled.is_alive()
