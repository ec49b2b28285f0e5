"""The store: segments listed in the same transaction as the ledger; pruning; compaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.flowlog_parser import parse_text
from core.layouts import Kind
from core.objects import ObjectRef, ObjectResult, Status
from core.store import DATABASE_NAME, Store, StoreError, ledger
from core.store import segments as store_module
from core.store.segments import write_segment
from tests import flowgen
from tests.conftest import assert_summary_is_the_flows


def result(n: int, records: int, start: int = flowgen.BASE_TIME) -> ObjectResult:
    """A parsed object of ``records`` rows (the parser is tested elsewhere; here it only
    builds input for the store)."""
    table = parse_text(flowgen.flow_object(flowgen.V2, records, seed=n, start=start).text())
    return ObjectResult(ObjectRef("b", f"key-{n}", "etag", 1, Kind.TEXT), Status.DONE,
                        flows=table.table)


def count(store: Store, sql: str = "SELECT count(*) FROM flows") -> int:
    return store.con.execute(sql).fetchone()[0]


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
    assert len(list((tmp_path / "flows").iterdir())) == 1
    # the old done object is forgotten; the pending one is kept to be retried
    assert store.con.execute("SELECT key FROM objects ORDER BY key").fetchall() == [
        ("key-2",), ("pending-one",)]
    store.close()


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
    assert len(list((tmp_path / "flows").iterdir())) == 1
    after = store.con.execute("SELECT object_key, count(*), sum(bytes) FROM flows "
                              "GROUP BY 1 ORDER BY 1").fetchall()
    assert after == before and sum(row[1] for row in after) == sum(100 + n for n in range(6))
    assert store.compact() == 0
    store.close()


def test_a_large_batch_is_written_as_several_segments_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table of at least two compaction sizes is written as one segment per core (up to
    MAX_PARTS), in parallel; each is listed with its summary and every row is there once.
    (Sizes scaled down: 100 rows stand for a compaction size.)"""
    monkeypatch.setattr(store_module, "COMPACT_BELOW", 100)
    monkeypatch.setattr(store_module.os, "cpu_count", lambda: 2)
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


def test_a_part_that_fails_to_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_BELOW", 100)
    monkeypatch.setattr(store_module.os, "cpu_count", lambda: 2)
    store = Store(tmp_path)
    written = store_module.write_segment
    calls = []

    def second_fails(directory: Path, table: object) -> str:
        calls.append(table)
        if len(calls) == 2:
            raise OSError("disk full")
        return written(directory, table)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "write_segment", second_fails)
    with pytest.raises(OSError, match="disk full"):
        store.commit([result(n, 150) for n in range(3)])
    assert len(calls) == 2
    assert list((tmp_path / "flows").iterdir()) == []
    assert count(store) == 0
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
    with pytest.raises(ValueError, match="two results for s3://b/key-1"):
        store.commit([result(1, 10), result(1, 10)])
    assert count(store) == 0
    assert count(store, "SELECT count(*) FROM objects") == 0
    store.close()
