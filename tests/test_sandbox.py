"""User SQL runs in a sandbox (core/sandbox.py), one policy for `vpcwatch query` and the app's
`:` prompt: it reads the store's tables and segments and nothing else, writes nothing,
installs nothing, cannot change its settings, and stops at its timeout."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import duckdb
import pytest

from core.sandbox import QueryStopped, ReadOnlyError, Sandbox, check_read_only
from core.store import DATABASE_NAME, open_store
from core.store.segments import segment_dir
from tests import flowgen
from tui.cli import main

SECRET_LINE = "not for vpcwatch users"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sandbox")
    logs = root / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(flowgen.flow_object(flowgen.V2, 50, seed=3).text())
    (logs / "t.json.gz").write_bytes(flowgen.trail_object(
        [flowgen.trail_event("CreateVpc", event_id="e1")]))
    (root / "secret.txt").write_text(SECRET_LINE + "\n")
    assert main(["scan", str(logs), "--state-dir", str(root / "state")]) == 0
    return root / "state"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Each reproduced on the previous version, where `query` and `:` ran on the store's connection.
ATTACKS = [
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM glob('{root}/*')",
    "SELECT * FROM read_text('{segments}/../{database}')",  # outside the segments, via ..
    "SELECT * FROM read_csv('https://example.com/x.csv')",  # would auto-install httpfs
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
]
REFUSED_STATEMENTS = [
    "COPY (SELECT 1) TO '{root}/written.csv'", "INSTALL httpfs", "LOAD httpfs",
    "ATTACH '{root}/other.db'", "SET enable_external_access = true", "CHECKPOINT",
    "DELETE FROM alerts", "SELECT 1; SELECT 2", "EXPLAIN ANALYZE DELETE FROM alerts",
    "EXPORT DATABASE '{root}/exported'",  # (its directory was made while finding its tables)
]


def _fill(sql: str, state: Path) -> str:
    return sql.format(secret=state.parent / "secret.txt", root=state.parent,
                      segments=segment_dir(state), database=DATABASE_NAME)


@pytest.mark.parametrize("sql", ATTACKS + REFUSED_STATEMENTS)
def test_query_refuses_files_network_extensions_and_writes(
        sql: str, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(state / DATABASE_NAME)
    assert main(["query", "--state-dir", str(state), _fill(sql, state)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("vpcwatch: query failed: ")
    assert SECRET_LINE not in captured.out + captured.err
    assert not (state.parent / "written.csv").exists()
    assert not (state.parent / "exported").exists()
    assert not (state.parent / "other.db").exists()
    assert digest(state / DATABASE_NAME) == before


def test_setting_changes_are_refused_even_inside_a_query(state: Path) -> None:
    """`SET` is not a query (check_read_only), and the sandbox's settings are locked anyway:
    its own connection cannot turn file access back on."""
    with pytest.raises(ReadOnlyError):
        check_read_only("SET enable_external_access = true")
    with open_store(state, read_only=True) as store:
        sandbox = Sandbox(store)
        try:
            with pytest.raises(duckdb.Error, match="locked"):
                sandbox.con.execute("SET enable_external_access = true")
            with pytest.raises(duckdb.Error, match="disabled by configuration"):
                sandbox.run(_fill("SELECT * FROM read_text('{secret}')", state))
        finally:
            sandbox.close()


def test_the_stores_tables_and_functions_are_there(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the figures, read straight from the files, without vpcwatch
    con = duckdb.connect()
    [(flows, total)] = con.execute(
        f"SELECT count(*), sum(bytes) FROM read_parquet('{segment_dir(state)}/*.parquet')"
    ).fetchall()
    con.close()
    sql = ("SELECT (SELECT count(*) FROM flows) AS flows, (SELECT sum(bytes) FROM flows) AS b, "
           "(SELECT count(*) FROM objects) AS objects, (SELECT count(*) FROM cloudtrail) AS ct, "
           "(SELECT count(*) FROM alerts) >= 0 AS alerts, is_private('10.1.2.3') AS private")
    capsys.readouterr()
    assert main(["query", "--state-dir", str(state), "--format", "json", sql]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row == {"flows": flows, "b": total, "objects": 2, "ct": 1, "alerts": True,
                   "private": True}
    assert flows == 50


def test_a_query_past_its_timeout_is_stopped(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endless = "SELECT count(*) FROM range(1000000000000) a"
    assert main(["query", "--state-dir", str(state), "--timeout", "0.5", endless]) == 2
    assert "stopped after 0.5 s (the query timeout)" in capsys.readouterr().err
    with open_store(state, read_only=True) as store:
        sandbox = Sandbox(store)
        try:
            with pytest.raises(QueryStopped):
                sandbox.run(endless, timeout=0.2)
            assert sandbox.run("SELECT 42 AS n").to_pylist() == [{"n": 42}]  # usable after
            read = 0  # stopped while its rows are handed over (`query` reads them so)
            with pytest.raises(QueryStopped, match="the query timeout"):
                for batch in sandbox.batches("SELECT range FROM range(1000000000000)", 0.3):
                    read += batch.num_rows
                    assert read < 10**10  # (not stopped: fail rather than run for hours)
            assert read > 0
            for _ in range(2):  # (the second once found the first one's view in its way)
                assert sandbox.run("SELECT count(*) AS n FROM flows").to_pylist() == [{"n": 50}]
        finally:
            sandbox.close()


def test_a_read_left_early_frees_the_sandbox_and_time_between_batches_is_not_counted(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`query | less`: the reader's pauses between batches do not count against the
    timeout (only DuckDB's work does); `query | head`: a read closed early leaves the
    sandbox usable (before, closing it waited for ever on the unfinished read's lock)."""
    import core.sandbox

    monkeypatch.setattr(core.sandbox, "BATCH_ROWS", 7)
    with open_store(state, read_only=True) as store:
        sandbox = Sandbox(store)
        try:
            read = sandbox.batches("SELECT * FROM flows", timeout=1.0)
            assert next(read).num_rows == 7
            read.close()
            assert not sandbox.busy
            rows = 0
            for batch in sandbox.batches("SELECT * FROM flows", timeout=1.0):
                rows += batch.num_rows
                threading.Event().wait(0.3)  # (a reader's pause: 2 s in all, past the timeout)
            assert rows == 50
        finally:
            sandbox.close()


def test_two_columns_of_one_name_both_come_out(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A self-join's columns share names: CSV keeps every one of them."""
    capsys.readouterr()
    assert main(["query", "--state-dir", str(state), "SELECT 1 AS a, 2 AS a"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a,a", "1,2"]


def test_a_reader_copies_the_tables_its_query_names() -> None:
    """`query` without a collector copies the tables its SQL names (with the small ones);
    when DuckDB cannot tell which (a function it does not know), every table."""
    from core.sandbox import tables_named

    assert tables_named("SELECT count(*) FROM objects o JOIN (SELECT * FROM alerts) a "
                        "ON is_private(o.key), flows") == ["alerts", "objects"]
    assert tables_named("SELECT no_such_function(1) FROM cloudtrail") is None


def test_finding_a_querys_tables_opens_no_file(tmp_path: Path) -> None:
    """Found by an adversarial test: `query` bound the SQL on an unlocked DuckDB to find the
    tables to copy, before the sandbox's checks: a read_csv opened its file (/etc/shadow
    was opened, a FIFO hung the command past its timeout). A FIFO no one writes blocks
    whoever opens it (DuckDB holding the GIL: in a process of its own, to fail, not hang)."""
    import os
    import subprocess
    import sys

    from core.sandbox import tables_named

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    lookup = ("from core.sandbox import tables_named; "
              f"print(tables_named(\"SELECT * FROM read_csv('{fifo}') JOIN alerts ON true\"))")
    try:
        done = subprocess.run([sys.executable, "-c", lookup], capture_output=True, text=True,
                              timeout=60, cwd=Path(__file__).parents[1])
    except subprocess.TimeoutExpired:
        pytest.fail("finding the tables opened the FIFO")
    assert done.stdout.strip() == "None"  # (not told: the sandbox then refuses it)
    assert tables_named("SELECT * FROM alerts JOIN flows ON true") == ["alerts"]


def test_sql_that_is_not_utf8_is_refused(state: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert main(["query", "--state-dir", str(state), "SELECT '\udcff'"]) == 2
    assert "the SQL is not UTF-8 text" in capsys.readouterr().err


def test_a_value_larger_than_the_bound_ends_the_query_not_the_host(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an adversarial test: one value a function builds is outside DuckDB's memory
    limit (a list of 200 M numbers grew `query` to 14 GB); `query` bounds its own growth, so
    DuckDB's allocation of a list of 10^9 numbers (8 GB) fails, and says so, at once. The
    bound is put back after (this process goes on)."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_DATA)
    assert main(["query", "--state-dir", str(state), "SELECT len(range(1000000000))"]) == 2
    assert "Out of Memory" in capsys.readouterr().err
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
