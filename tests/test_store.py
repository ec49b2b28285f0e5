"""The store: segments listed in the same transaction as the ledger; pruning; compaction."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from core.objects import ObjectResult, Status
from core.store import DATABASE_NAME, Store, StoreError, detections, ledger, open_store
from core.store import segments as store_module
from core.store.database import AfterCommit
from core.store.isolation import commit_isolating
from core.store.segments import write_segment
from tests import flowgen
from tests.conftest import assert_summary_is_the_flows
from tests.storetools import count, result


def test_a_segment_no_commit_lists_is_removed_at_open(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.commit([result(1, 10)])
    orphan = write_segment(store.segment_dir, result(2, 5).flows)  # a crash before COMMIT
    store.close()
    assert (tmp_path / "flows" / orphan).exists()
    store = Store(tmp_path)
    assert not (tmp_path / "flows" / orphan).exists()
    assert count(store) == 10
    store.close()


def test_a_failed_commit_leaves_no_rows_and_no_file(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path)

    def fail(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger, "write", fail)
    with pytest.raises(RuntimeError):
        store.commit([result(1, 10)])
    assert count(store) == 0
    assert list((tmp_path / "flows").iterdir()) == []
    assert count(store, "SELECT count(*) FROM objects") == 0
    store.close()


@pytest.mark.parametrize("when", ["after the write", "during the write", "the write fails too"])
def test_rules_failing_while_the_segment_is_written_leave_no_file(
        tmp_path: Path, monkeypatch, when: str) -> None:
    """The segment is written on another thread while the rules run: when they fail (or
    an interrupt comes) before or after the file is written, it goes too, and the error
    raised is the rules' own."""
    store = Store(tmp_path)
    written, rules_failed = threading.Event(), threading.Event()
    write = store_module.write_segment

    def write_in_turn(*args: object) -> str:
        if when != "after the write":
            assert rules_failed.wait(timeout=10)  # (the rules fail first)
        if when == "the write fails too":
            raise OSError("disk full")
        name = write(*args)  # type: ignore[arg-type]
        written.set()
        return name

    def fail(*_: object) -> None:
        if when == "after the write":
            assert written.wait(timeout=10)
        rules_failed.set()
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "write_segment", write_in_turn)
    monkeypatch.setattr(detections, "evaluate", fail)
    with pytest.raises(KeyboardInterrupt):
        store.commit([result(1, 10)])
    assert written.is_set() == (when != "the write fails too")
    assert not any((tmp_path / "flows").glob("*"))
    assert count(store, "SELECT count(*) FROM objects") == 0
    store.close()


def test_prune_drops_old_segments_and_forgets_old_finished_objects(tmp_path: Path) -> None:
    store = Store(tmp_path)
    day = 86400
    today = date.fromtimestamp(flowgen.BASE_TIME)
    old, new = result(1, 30, start=flowgen.BASE_TIME - 10 * day), result(2, 20)
    old.ref = replace(old.ref, day=today - timedelta(days=10))
    new.ref = replace(new.ref, day=today)
    pending = ObjectResult(replace(old.ref, key="pending-one"), Status.PENDING, error="503")
    store.commit([old])  # segments are pruned whole: one per commit here
    store.commit([new, pending])
    dropped = store.prune(7 * day, listed_from=today - timedelta(days=2),
                          now=flowgen.BASE_TIME + 3600)
    assert dropped == 30
    assert count(store) == 20
    assert len(store.segment_names()) == 1
    # the old done object is forgotten; the pending one is kept to be retried
    assert store.con.execute("SELECT key FROM objects ORDER BY key").fetchall() == [
        ("key-2",), ("pending-one",)]
    store.close()
    assert len(list((tmp_path / "flows").iterdir())) == 1  # (the retired file: at close)


def test_compaction_merges_small_segments_and_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_AT", 4)
    store = Store(tmp_path)
    for n in range(6):
        store.commit([result(n, 100 + n)])
    before = store.con.execute("SELECT object_key, count(*), sum(bytes) FROM flows "
                               "GROUP BY 1 ORDER BY 1").fetchall()
    assert store.compact() == 6
    assert len(store.segment_names()) == 1
    after = store.con.execute("SELECT object_key, count(*), sum(bytes) FROM flows "
                              "GROUP BY 1 ORDER BY 1").fetchall()
    assert after == before and sum(row[1] for row in after) == sum(100 + n for n in range(6))
    assert store.compact() == 0
    store.close()
    assert len(list((tmp_path / "flows").iterdir())) == 1  # (the merged ones: at close)


def test_a_retired_segment_outlives_its_listing_for_readers_that_listed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction unlists segments in its commit; a reader that took the list before (an
    attached query, a reader's copy of the store) still reads them whole for
    RETIRE_SECONDS; then, or when the writer closes, their files go."""
    monkeypatch.setattr(store_module, "COMPACT_AT", 2)
    store = Store(tmp_path)
    for n in range(2):
        store.commit([result(n, 10)])
    old = store.segment_names()
    listed_before = f"SELECT count(*) FROM ({store.segments_sql(old)})"
    assert store.compact() == 2
    assert not set(old) & set(store.segment_names())
    assert count(store, listed_before) == 20  # (read after the merge, from the old list)
    store.segments.remove_retired(now=time.monotonic() + store_module.RETIRE_SECONDS - 5)
    assert all((tmp_path / "flows" / name).exists() for name in old)
    store.segments.remove_retired(now=time.monotonic() + store_module.RETIRE_SECONDS + 1)
    assert not any((tmp_path / "flows" / name).exists() for name in old)
    assert count(store) == 20
    for n in range(2, 4):
        store.commit([result(n, 10)])
    again = [name for name in store.segment_names() if name not in old]
    assert store.compact() == 3
    assert all((tmp_path / "flows" / name).exists() for name in again)
    listed = store.segment_names()
    store.close()
    assert sorted(p.name for p in (tmp_path / "flows").iterdir()) == sorted(listed)


def test_a_large_batch_is_written_as_several_segments_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table of at least two PART_ROWS is written as one segment per core (up to
    MAX_PARTS), the parts at the same time; each is listed with its summary and every row
    is there once. (Sizes scaled down: 100 rows stand for PART_ROWS.)"""
    monkeypatch.setattr(store_module, "PART_ROWS", 100)
    monkeypatch.setattr(store_module, "_cores", lambda: 2)
    both_writing = threading.Barrier(2, timeout=10)  # (broken unless both wait at once)
    write = store_module.write_segment

    def together(directory: Path, table: object) -> str:
        both_writing.wait()
        return write(directory, table)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "write_segment", together)
    store = Store(tmp_path)
    batch = [result(n, 150) for n in range(3)]  # 450 rows: two parts of 225
    store.commit(batch)
    sizes = store.con.execute("SELECT records FROM segments ORDER BY records").fetchall()
    assert sizes == [(225,), (225,)]
    assert len(list((tmp_path / "flows").iterdir())) == 2
    expected = sorted((r.ref.key, 150, sum(r.flows["bytes"].to_pylist())) for r in batch)
    assert store.con.execute("SELECT object_key, count(*), sum(bytes) FROM flows "
                             "GROUP BY 1 ORDER BY 1").fetchall() == expected
    assert_summary_is_the_flows(store.con)
    store.close()


@pytest.mark.parametrize(("rows", "cores", "sizes"), [
    (301, 3, [101, 100, 100]), (299, 3, [150, 149]), (199, 4, [199]), (800, 8, [200] * 4)])
def test_a_batch_is_cut_into_equal_parts_none_below_part_rows(
        monkeypatch: pytest.MonkeyPatch, rows: int, cores: int, sizes: list[int]) -> None:
    assert store_module.PART_ROWS >= store_module.COMPACT_BELOW  # (never compacted again)
    monkeypatch.setattr(store_module, "PART_ROWS", 100)
    monkeypatch.setattr(store_module, "_cores", lambda: cores)
    parts = store_module._parts(pa.table({"n": list(range(rows))}))
    assert [part.num_rows for part in parts] == sizes
    assert pa.concat_tables(parts)["n"].to_pylist() == list(range(rows))


def test_a_part_that_fails_leaves_no_file_once_the_other_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One part fails while the other is still being written: the commit fails and no
    segment or temporary file stays, the other's included."""
    monkeypatch.setattr(store_module, "PART_ROWS", 100)
    monkeypatch.setattr(store_module, "_cores", lambda: 2)
    write_parquet = store_module._write_parquet
    failed = threading.Event()
    calls: list[object] = []

    def first_fails(table: object, path: Path) -> None:
        calls.append(table)
        if len(calls) == 1:
            failed.set()
            raise OSError("disk full")
        assert failed.wait(timeout=10)
        write_parquet(table, path)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "_write_parquet", first_fails)
    store = Store(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        store.commit([result(n, 150) for n in range(3)])
    assert len(calls) == 2
    assert list((tmp_path / "flows").iterdir()) == []
    assert count(store) == 0
    store.close()


def test_two_objects_sharing_a_segment_are_both_replaced_in_one_commit(
        tmp_path: Path) -> None:
    """Dropping the first object's old rows rewrites their shared segment; that rewrite
    still holds the second's old rows, which must go too."""
    store = Store(tmp_path)
    old = [result(n, 10) for n in range(3)]
    store.commit(old)  # one segment holding the three objects
    new = [replace(result(n, 4, start=flowgen.BASE_TIME + 3600), replaces=True)
           for n in range(2)]
    store.commit(new)
    assert store.con.execute("SELECT object_key, count(*) FROM flows GROUP BY 1 ORDER BY 1"
                             ).fetchall() == [("key-0", 4), ("key-1", 4), ("key-2", 10)]
    assert_summary_is_the_flows(store.con)
    store.close()


def test_a_write_that_fails_half_way_leaves_no_transaction_open(tmp_path: Path) -> None:
    """Every write goes through one transaction helper: before it, a failed prefix record
    left its transaction open and every later commit failed ("cannot start a transaction
    within a transaction")."""
    store = Store(tmp_path)
    with pytest.raises(Exception, match=r"(?i)conversion|unsupported|not implemented|type"):
        store.record_prefixes("b", {"AWSLogs/1/": object()}, set())  # type: ignore[dict-item]
    store.commit([result(1, 10)])
    assert count(store) == 10
    store.close()


def test_a_store_file_without_tables_is_a_clear_error_for_readers(tmp_path: Path) -> None:
    """DuckDB creates the file at once: a crash before the tables were made leaves it empty."""
    import duckdb

    duckdb.connect(str(tmp_path / DATABASE_NAME)).close()
    with pytest.raises(StoreError, match=DATABASE_NAME):
        Store(tmp_path, read_only=True)


def test_a_commit_with_two_results_for_one_object_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for commit in (store.commit, lambda batch: commit_isolating(store, batch)):
        with pytest.raises(ValueError, match="two results for s3://b/key-1"):
            commit([result(1, 10), result(1, 10)])  # (never one at a time: twice the rows)
    assert count(store) == 0
    assert count(store, "SELECT count(*) FROM objects") == 0
    store.close()


def test_an_object_is_set_aside_only_when_its_rows_are_what_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(commit_isolating: the collector's and scan's commit.) Failures are stand-ins: rows
    that fail are made by a commit that refuses key-2's rows, or every commit."""
    store = Store(tmp_path)
    real = store.commit

    def refusing(batch: list[ObjectResult]) -> object:
        if any(r.ref.key in ("key-2", "key-7") and r.rows for r in batch):
            raise ValueError("rows the store cannot take")
        return real(batch)

    real([result(7, 10)])  # read before, then changed: its new rows are refused
    changed = replace(result(7, 10), replaces=True)
    monkeypatch.setattr(store, "commit", refusing)
    assert commit_isolating(store, [changed]).records == 0
    assert changed.status is Status.QUARANTINED and count(store) == 0  # (its old rows went)
    batch = [result(1, 10), result(2, 10), result(3, 10)]
    stats = commit_isolating(store, batch)
    assert stats.records == 20 and count(store) == 20
    assert [(r.ref.key, r.status, r.rows) for r in batch] == [
        ("key-1", Status.DONE, 10), ("key-2", Status.QUARANTINED, 0), ("key-3", Status.DONE, 10)]
    assert store.con.execute("SELECT key, status, last_error FROM objects ORDER BY key"
                             ).fetchall()[1] == ("key-2", "quarantined", "its rows could not "
                                                 "be stored: ValueError: rows the store "
                                                 "cannot take")

    def broken(batch: list[ObjectResult]) -> object:  # its ledger entry alone fails too
        raise ValueError("the store is broken")

    monkeypatch.setattr(store, "commit", broken)
    batch = [result(4, 10)]
    with pytest.raises(ValueError, match="the store is broken"):
        commit_isolating(store, batch)
    assert batch[0].status is Status.DONE  # (nothing set aside)
    monkeypatch.setattr(store, "commit", real)

    def once(*_: object) -> None:  # a failure after the transaction committed (found by
        monkeypatch.undo()  # review: the batch was committed again, one object at a time,
        raise duckdb.InvalidInputException("a segment's footer")  # its rows twice)

    monkeypatch.setattr(store, "_refresh_view", once)
    with pytest.raises(AfterCommit, match="committed, then failed: a segment's footer"):
        commit_isolating(store, [result(5, 10), result(6, 10)])
    store._refresh_view()  # (what failed: the view over the segments, not the segments)
    assert count(store) == 40  # (each row once)
    store.close()


def test_a_field_named_filename_is_a_column_like_any_other(tmp_path: Path) -> None:
    """Found by an adversarial test: a custom format's field ``filename`` was stored, and then
    every read of segments that asks for each row's file (an object changed since it was
    read, the app's index) failed on DuckDB's own ``filename`` column: collection stopped."""
    from core.scan import scan

    log = tmp_path / "custom.log"
    log.write_text("version srcaddr dstaddr filename\n2 10.0.0.1 10.0.0.2 a\n"
                   "2 10.0.0.3 10.0.0.4 b\n")
    with open_store(tmp_path / "state") as store:
        assert scan([log], store, 2**20).records == 2
        log.write_text("version srcaddr dstaddr filename\n2 10.0.0.5 10.0.0.6 c\n")
        os.utime(log, (1, 1))  # (changed: read again, its old rows dropped)
        assert scan([log], store, 2**20).records == 1
        rows = store.con.execute(
            f"SELECT filename, _file FROM ({store.segments_sql(store.segment_names(), True)})"
        ).fetchall()
    assert [(name, Path(file).parent.name) for name, file in rows] == [("c", "flows")]


def test_a_state_dir_under_a_folder_named_like_a_partition_keeps_every_column(
        tmp_path: Path) -> None:
    """Found by an adversarial test: DuckDB took ``bucket=prod`` in the segments' path for a
    Hive partition, and every record's bucket read "prod"; the publication's files, read
    the same way, too."""
    from core.store.opening import _attached

    state = tmp_path / "bucket=prod" / "object_key=k" / "state"
    with open_store(state) as store:
        store.commit([result(1, 10)])
        store.start_publishing()
        assert store.con.execute("SELECT DISTINCT bucket, object_key FROM flows"
                                 ).fetchall() == [("b", "key-1")]
        owner = f"pid {os.getpid()} on {socket.gethostname()} (vpcwatch collect)"
        viewer = _attached(state, None, owner)
        try:
            assert viewer.con.execute("SELECT bucket, key FROM objects").fetchall() == [
                ("b", "key-1")]
            assert count(viewer, "SELECT count(*) FROM flows WHERE bucket = 'b'") == 10
        finally:
            viewer.close()


def test_a_segment_of_a_future_flow_is_not_merged_with_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an adversarial test: merged, a segment holding a flow dated in 2037 kept
    every other poll's flows from retention until then; and by a review: the flows
    committed beside it too, and never merging such segments let them pile up."""
    monkeypatch.setattr(store_module, "COMPACT_AT", 2)
    store = Store(tmp_path)
    future = result(9, 2, start=2_145_000_000)  # (2037)
    store.commit([replace(future, flows=pa.concat_tables([future.flows, result(8, 5).flows]))])
    for n in range(3):
        store.commit([result(n, 10), replace(future, ref=replace(future.ref, key=f"f{n}"))])
    # written apart from the others' in its commit; merged with its own kind only
    assert store.compact() == 4 + 4
    assert sorted(records for _, _, _, records in store.segments.listed()) == [8, 35]
    store.prune(86400, date.today(), now=2_000_000_000)  # (2033: the others' day is long past)
    assert count(store) == 8
    store.close()
