"""User SQL (the app's ``:`` prompt and ``vpcwatch query``): one policy for both.

The store's own connection can read and write any file the user can, install extensions
over the network and checkpoint the live store. User SQL never runs there: it runs on a
DuckDB database of its own, in memory, that
- reads no file but the store's segments (``enable_external_access`` off, the segment
  directory the one allowed directory), installs and loads no extension, and has its
  configuration locked, so no ``SET`` undoes any of this;
- sees ``flows`` (a view over the committed segments) and copies of the store's tables the
  query names (``alerts``, ``cloudtrail``, ``objects``, ``prefixes``), taken when it starts;
- runs one query at a time, interrupted when it runs past its timeout (or by ``interrupt``
  from another thread: the app's Esc), with its memory and what it spills to disk bounded.
Only one statement, and only a query, is accepted (``check_read_only``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import duckdb
import pyarrow as pa

from core.rules import RuleEngine
from core.rules.sqlparts import literal
from core.store import Store, spill

TABLES = ("alerts", "cloudtrail", "objects", "prefixes")  # besides flows
TIMEOUT = 60.0  # seconds
MEMORY_LIMIT = "1GB"
# what a process running user SQL alone (`query`) may grow by while it runs: DuckDB's limit,
# and room for what it hands over and the interpreter (core/process_limits.py)
SANDBOX_GROWTH = 3 * 2**30
BATCH_ROWS = 10_000  # rows handed over at a time (``batches``)
SPILL_LIMIT = "4GB"  # what a query may spill into the state directory (the store's disk)


class ReadOnlyError(ValueError):
    """The SQL prompt runs one query, never a statement that writes or changes settings."""


class QueryStopped(RuntimeError):
    """The query ran past its timeout, or was interrupted."""


def check_read_only(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # (a command line's bytes that are not UTF-8)
        raise ReadOnlyError("the SQL is not UTF-8 text") from None
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise ReadOnlyError(str(exc).splitlines()[0]) from None
    if len(statements) != 1:
        raise ReadOnlyError(f"one statement at a time ({len(statements)} given)")
    kind = statements[0].type.name
    if kind != "SELECT":  # (EXPLAIN ANALYZE would run what it explains: not allowed)
        raise ReadOnlyError(f"only queries run here: SELECT, WITH, FROM, VALUES, DESCRIBE, "
                            f"SHOW, SUMMARIZE (this is {kind})")


def tables_named(text: str) -> list[str] | None:
    """The store's tables ``text`` names (of those a query may read), or None when that
    cannot be told (the sandbox then refuses it, or it reads every table). DuckDB binds the
    query's functions to find them, and binding reads: a ``read_csv`` opens its file,
    ``EXPORT`` makes its directory. So only a query is bound, on a database as locked as
    the sandbox's that may read no file at all (found by an adversarial test: this ran
    before the sandbox's checks, on a DuckDB that could read any file and install
    extensions)."""
    try:
        check_read_only(text)
    except ReadOnlyError:
        return None
    con = duckdb.connect(config=_LOCKED)  # (in memory, holding nothing: the catalogue)
    try:
        RuleEngine([]).install(con)
        names = {name.lower() for name in con.get_table_names(text)}
    except duckdb.Error:
        return None
    finally:
        con.close()
    return [table for table in TABLES if table in names]


# what no connection running user SQL may do: read or write files (but those allowed by
# name), install or load extensions, change its settings
_LOCKED = {"enable_external_access": False, "autoinstall_known_extensions": False,
           "autoload_known_extensions": False, "lock_configuration": True}


class Sandbox:
    """A locked-down database for user SQL over ``store`` (see the module's docstring).
    ``run`` may be called from any thread, one query at a time."""

    def __init__(self, store: Store, memory_limit: str = MEMORY_LIMIT):
        self._store = store
        self._source = store.con.cursor()  # reads the store's tables (under self._lock)
        self._lock = threading.Lock()
        self.con = spill.connect(store.state_dir, config={
            "autoinstall_known_extensions": False, "autoload_known_extensions": False,
            "memory_limit": memory_limit, "max_temp_directory_size": SPILL_LIMIT})
        (store.engine or RuleEngine([])).install(self.con)  # the rules' SQL functions
        allowed = str(store.segment_dir).rstrip("/") + "/"
        self.con.execute(f"SET allowed_directories = [{literal(allowed)}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def run(self, text: str, limit: int | None = None, timeout: float = TIMEOUT) -> pa.Table:
        """The query's rows (at most ``limit``); ReadOnlyError for anything but one query,
        QueryStopped past ``timeout`` seconds or when interrupted, duckdb.Error otherwise."""
        with self._running(text, timeout) as (relation, budget):
            if relation is None:
                return pa.table({})
            with budget:
                return (relation.limit(limit) if limit else relation).to_arrow_table()

    def batches(self, text: str, timeout: float = TIMEOUT) -> Iterator[pa.RecordBatch]:
        """``run``'s rows, all of them, BATCH_ROWS at a time: a result is never whole in this
        process (DuckDB's memory limit does not cover what it hands over; a query of every
        flow would take as much memory as the flows). The timeout counts DuckDB's time, not
        the caller's between batches (a reader paging through `less`). Close the generator
        when leaving early (``contextlib.closing``): until then the sandbox is busy."""
        with self._running(text, timeout) as (relation, budget):
            if relation is None:
                return
            with budget:
                reader = relation.to_arrow_reader(BATCH_ROWS)
            try:
                yield from _read(reader, budget)
            finally:
                reader.close()  # (before the query's view goes: DuckDB refuses it while open)

    @contextlib.contextmanager
    def _running(self, text: str, timeout: float
                 ) -> Iterator[tuple[duckdb.DuckDBPyRelation | None, _Budget]]:
        check_read_only(text)
        with self._lock:
            budget = _Budget(timeout, self._interrupt)
            try:
                with budget:  # (the copies of the store's tables count against it too)
                    self._prepare(text)
                    relation = self.con.sql(text)
                yield relation, budget
            except duckdb.InterruptException:
                if budget.spent:
                    raise QueryStopped(f"stopped after {timeout:g} s (the query timeout)"
                                       ) from None
                raise QueryStopped("interrupted") from None
            finally:
                self._release()

    @property
    def busy(self) -> bool:
        """Whether a query is running."""
        return self._lock.locked()

    def interrupt(self) -> None:
        """Stop the query running now, if any (from another thread)."""
        if self.busy:
            self._interrupt()

    def _interrupt(self) -> None:
        self.con.interrupt()
        self._source.interrupt()  # (copying a table the query names)

    def close(self) -> None:
        with self._lock:
            self.con.close()
            self._source.close()

    def _prepare(self, text: str) -> None:
        """``flows`` over the segments committed now, and copies of the tables ``text`` names.
        (The names come from this database's parser, which reads no file: external access
        is off.)"""
        names = {name.lower() for name in self.con.get_table_names(text)}
        if "flows" in names:
            store = self._store
            sql = store.segments_sql(store.segment_names(self._source))
            self.con.execute(f"CREATE TEMP VIEW flows AS {sql}")
        for table in TABLES:
            if table in names:
                self.con.register(table, self._source.sql(f"SELECT * FROM {table}")
                                  .to_arrow_table())

    def _release(self) -> None:
        """Forget the query's view and copies (their memory, and names the parser would
        otherwise expand next time)."""
        self.con.execute("DROP VIEW IF EXISTS flows")
        for table in TABLES:
            self.con.unregister(table)


class _Budget:
    """A query's time: counted while DuckDB works (``with budget:``), the query interrupted
    when it is spent."""

    def __init__(self, seconds: float, interrupt: Callable[[], None]) -> None:
        self.left, self.spent = seconds, False
        self._interrupt = interrupt
        self._timer: threading.Timer | None = None
        self._began = 0.0

    def __enter__(self) -> None:
        self._began = time.monotonic()
        self._timer = threading.Timer(max(self.left, 0.0), self._run_out)
        self._timer.start()

    def __exit__(self, *_: object) -> None:
        assert self._timer is not None
        self._timer.cancel()
        self.left -= time.monotonic() - self._began

    def _run_out(self) -> None:
        self.spent = True
        self._interrupt()


def _read(reader: pa.RecordBatchReader, budget: _Budget) -> Iterator[pa.RecordBatch]:
    """The reader's batches, each read within ``budget``; at least one (with no row, its
    columns still)."""
    given = False
    while True:
        try:
            with budget:
                batch = reader.read_next_batch()
        except StopIteration:
            if not given:
                yield pa.RecordBatch.from_pylist([], schema=reader.schema)
            return
        except (OSError, pa.ArrowException) as exc:  # (DuckDB's errors, through Arrow)
            if "INTERRUPT" in str(exc):
                raise duckdb.InterruptException(str(exc)) from None
            raise duckdb.Error(str(exc)) from None
        given = True
        yield batch
