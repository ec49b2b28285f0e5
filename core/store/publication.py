"""The store published for viewers (docs/attach.md): a running collector holds the DuckDB
file, so after each commit it also writes what changed as Parquet files, and a manifest
naming every file of that committed state; viewers load a manifest into a database of their
own and never touch the collector's file, its lock or its threads.

``published/`` (0700 inside the private state directory; files 0600):
- ``alerts-N.parquet``, ``cloudtrail-N.parquet``, ``objects-N.parquet``: the rows commit N
  wrote (alerts with their revision, events, ledger entries); a base file holds a whole
  table (at start, after retention's prune, and when 50 deltas have piled up);
- ``segments-N.parquet``, ``prefixes-N.parquet``, ``meta-N.parquet``: small tables, whole;
- ``traffic_minutes-N.parquet``: the summary rows of the segments listed since the last
  file (a viewer keeps the rows of the segments its ``segments`` lists);
- ``manifest-N.json``: the files of state N, never changed once written;
- ``CURRENT``: the name of the newest manifest, replaced by a rename (atomic);
- ``status.json``: the collector's activity (polls, errors), rewritten on each of its
  events, for attached apps' status bars.
Files no manifest names are removed GRACE_SECONDS after they stopped being named: a viewer
still reading an older state has that long (after that it gets an I/O error and loads the
current one). Each manifest says why it was written (``reason``: a commit, whether its
tables were written as deltas or whole; upkeep such as compaction; or a whole rewrite at
start, after pruning or a retry): only a commit adds flows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from core.permissions import own_directory, read_small, replace_private
from core.rules.sqlparts import literal
from core.store import spill
from core.store.segments import READ_OPTIONS
from core.store.statedir import owner_pid
from core.store.transaction import transaction

log = logging.getLogger(__name__)

DIRECTORY = "published"
CURRENT = "CURRENT"
STATUS = "status.json"
MAX_DELTAS = 50
GRACE_SECONDS = 120.0
MAX_MANIFEST = 16 << 20  # bytes: a manifest (or status.json) larger was not written here
# the names of the files this module writes (and so the only ones it removes)
_MANIFEST = re.compile(r"manifest-(\d+)\.json")
_OURS = re.compile(rf"[a-z_]+-\d+\.parquet|{_MANIFEST.pattern}|\..+\.tmp")
# tables published as deltas: the key a newer row replaces an older one by, and which wins
# among the rows of one file (among files, the latest file's: a later commit wrote it)
DELTAS = {"alerts": ("id", "revision DESC, updated DESC"),
          "cloudtrail": ("event_id", "event_time"),
          "objects": ("bucket, key", "updated DESC")}
WHOLE = ("segments", "prefixes", "meta")
SUMMARY = "traffic_minutes"  # rows added per segment, kept while the segment is listed


class Publisher:
    """Writes the publication of one store, on the store's thread, after its commits."""

    def __init__(self, con: duckdb.DuckDBPyConnection, state_dir: Path):
        self.con = con
        self.directory = state_dir / DIRECTORY
        self._make_directory()
        self.generation = _current_generation(self.directory)
        self.files: dict[str, list[str]] = {}
        self._small: dict[str, pa.Table] = {}  # the WHOLE tables as last published
        self._retired: dict[str, float] = {}  # file -> when it stopped being named
        self._summarised: set[str] = set()  # segments whose summary rows are published
        self.whole()

    def whole(self, adds_flows: bool = False) -> None:
        """Every table whole: at start, after pruning, when deltas pile up, and after a
        publication failed (into a directory made again, if it was deleted meanwhile).
        ``adds_flows``: it stands for a commit's publication (its reason is then "commit":
        followers report the segments it lists newly)."""
        self._make_directory()
        self.generation += 1
        tables = {table: self.con.sql(f"SELECT * FROM {table}").to_arrow_table()
                  for table in (*DELTAS, *WHOLE, SUMMARY)}
        self.files = {table: [self._write(table, rows)] for table, rows in tables.items()}
        self._small = {table: tables[table] for table in WHOLE}
        self._summarised = {row[0] for row in self.con.execute("SELECT name FROM segments")
                            .fetchall()}
        self._publish("commit" if adds_flows else "whole")

    def commit(self, keys: Sequence[tuple[str, str]], alerts: pa.Table | None) -> None:
        """What one commit changed: the ledger entries and events of the objects ``keys``
        (bucket, key), the alerts it wrote, and each small table that changed, whole.
        Without ``keys``: upkeep (compaction, the listing marks), which adds no flows;
        upkeep that changed nothing publishes no new state (a poll that found nothing new
        would otherwise make every viewer load one, and recompute its views, at each
        poll)."""
        if any(len(files) > MAX_DELTAS for files in self.files.values()):
            self.whole(adds_flows=bool(keys))
            return
        small = {table: self.con.sql(f"SELECT * FROM {table}").to_arrow_table()
                 for table in WHOLE}
        if not keys and not (alerts is not None and alerts.num_rows) and all(
                table in self._small and rows.equals(self._small[table])
                for table, rows in small.items()):
            self._remove_unnamed(self._named())  # (files retired two minutes ago go)
            return
        self.generation += 1
        self.con.register("published_keys", pa.table({
            "bucket": [bucket for bucket, _ in keys], "key": [key for _, key in keys]}))
        try:
            for table, key in (("objects", "key"), ("cloudtrail", "object_key")):
                rows = self.con.sql(f"SELECT t.* FROM {table} t SEMI JOIN published_keys k "
                                    f"ON t.bucket = k.bucket AND t.{key} = k.key"
                                    ).to_arrow_table()
                if rows.num_rows:
                    self.files[table].append(self._write(table, rows))
        finally:
            self.con.unregister("published_keys")
        if alerts is not None and alerts.num_rows:
            self.files["alerts"].append(self._write("alerts", alerts))
        self._publish_summaries()
        for table, rows in small.items():  # (one left as it was keeps its file)
            if table not in self._small or not rows.equals(self._small[table]):
                self.files[table] = [self._write(table, rows)]
        self._small = small
        self._publish("commit" if keys else "upkeep")

    def _publish_summaries(self) -> None:
        """The summary rows of the segments listed since the last publication."""
        listed = {row[0] for row in self.con.execute("SELECT name FROM segments").fetchall()}
        new = sorted(listed - self._summarised)
        self._summarised &= listed
        if not new:
            return
        rows = self.con.sql(f"SELECT * FROM {SUMMARY} WHERE list_contains(?, segment)",
                            params=[new]).to_arrow_table()
        self.files[SUMMARY].append(self._write(SUMMARY, rows))
        self._summarised.update(new)

    def _make_directory(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        info = own_directory(self.directory)  # (not a link planted there)
        os.chmod(self.directory, 0o700)
        self._identity = (info.st_dev, info.st_ino)

    def _check_directory(self) -> None:
        """Before each write or removal: the directory is still the one made (found by an
        adversarial test: ``published`` replaced by a link while the collector ran had the
        publication written where it pointed, and every other file there removed two
        minutes later)."""
        info = own_directory(self.directory)
        if (info.st_dev, info.st_ino) != self._identity:
            raise OSError(f"{self.directory}: replaced while vpcwatch wrote it")

    def _write(self, table: str, rows: pa.Table) -> str:
        self._check_directory()
        name = f"{table}-{self.generation}.parquet"
        replace_private(self.directory / name, lambda out: pq.write_table(rows, out))
        return name

    def _publish(self, reason: str) -> None:
        self._check_directory()
        manifest = self._manifest()
        text = json.dumps({"generation": self.generation, "pid": os.getpid(),
                           "written": time.time(), "reason": reason, "files": self.files})
        for name, content in ((manifest, text), (CURRENT, manifest)):
            replace_private(self.directory / name, lambda out, c=content: out.write(c.encode()))
        self._remove_unnamed(self._named())

    def _manifest(self) -> str:
        return f"manifest-{self.generation}.json"

    def _named(self) -> set[str]:
        """The files the current state names (with its manifest, CURRENT and the status)."""
        return {self._manifest(), CURRENT, STATUS} | {f for fs in self.files.values() for f in fs}

    def _remove_unnamed(self, named: set[str]) -> None:
        """Files no manifest names any more, once GRACE_SECONDS after they stopped being
        named (a viewer may still be reading the manifest that named them)."""
        self._check_directory()
        now = time.time()
        for path in self.directory.iterdir():
            if path.name in named or not _OURS.fullmatch(path.name):
                self._retired.pop(path.name, None)
                continue
            if now - self._retired.setdefault(path.name, now) < GRACE_SECONDS:
                continue
            try:
                path.unlink()
            except OSError as exc:
                log.debug("publication: cannot remove %s: %s", path, exc)
            self._retired.pop(path.name, None)


def exists(state_dir: Path) -> bool:
    return (state_dir / DIRECTORY / CURRENT).is_file()


def current(state_dir: Path) -> dict[str, object]:
    """The newest manifest (OSError or ValueError when there is none readable, or it is
    not shaped as this module writes them: a name ``CURRENT`` holds that is not a
    manifest's, a FIFO or a device in their place, JSON nested past Python's recursion)."""
    directory = state_dir / DIRECTORY
    name = read_small(directory / CURRENT, 256).decode("utf-8", "replace").strip()
    if not _MANIFEST.fullmatch(name):
        raise ValueError(f"{directory / CURRENT}: names no manifest")
    return _manifest(directory, name)


def manifest_of(state_dir: Path, generation: int) -> dict[str, object]:
    """The manifest of state ``generation`` (OSError once it is removed: GRACE_SECONDS
    after a newer one was published)."""
    return _manifest(state_dir / DIRECTORY, f"manifest-{generation}.json")


def generations_between(state_dir: Path, after: int, before: int) -> list[int]:
    """The generations of the manifests there, strictly between ``after`` and ``before``."""
    try:
        names = os.listdir(state_dir / DIRECTORY)
    except OSError:
        return []
    found = (_MANIFEST.fullmatch(name) for name in names)
    return sorted(g for match in found if match and after < (g := int(match[1])) < before)


def _manifest(directory: Path, name: str) -> dict[str, object]:
    manifest = _json(read_small(directory / name, MAX_MANIFEST))
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(files, dict) and type(manifest.get("generation")) is int
            and all(isinstance(table, str) and isinstance(names, list)
                    and all(isinstance(n, str) for n in names) for table, names in files.items())):
        raise ValueError(f"{name}: not a manifest of this version's publication")
    return manifest  # type: ignore[no-any-return]


def _json(data: bytes) -> object:
    try:
        return json.loads(data)
    except RecursionError:  # (a RecursionError is no ValueError)
        raise ValueError("JSON nested too deep") from None


def published_by(manifest: dict[str, object], owner: str) -> bool:
    """Whether the process holding the lock (``owner``: "pid N on host (command)") wrote
    ``manifest``: a publication left by a collector that has stopped must not be taken for
    the state of whatever writes the directory now (a scan, say)."""
    writer = owner_pid(owner)
    return writer is not None and writer[0] == manifest.get("pid")


def load(state_dir: Path, manifest: dict[str, object]) -> duckdb.DuckDBPyConnection:
    """An in-memory database holding the state ``manifest`` names, with the store's tables
    (for ``core.store.Store`` opened on it)."""
    con = spill.connect(state_dir)
    fill(con, state_dir, manifest)
    return con


def fill(con: duckdb.DuckDBPyConnection, state_dir: Path, manifest: dict[str, object],
         previous: dict[str, object] | None = None) -> None:
    """(Re)create the store's tables in ``con`` as ``manifest`` names them, all or none
    (ValueError for a manifest that names anything but this module's files). ``previous``:
    the manifest ``con`` holds now. A table of deltas (or the summary) whose files only grew
    since (the same collector's) is brought up to date from its new files alone, so a
    viewer's cost per commit is the commit's, not that of every alert and ledger row kept;
    if that fails, every table is loaded whole."""
    if previous is not None and previous.get("pid") != manifest.get("pid"):
        previous = None  # (another collector's files: the same names may hold other rows)
    try:
        _fill(con, state_dir / DIRECTORY, manifest, previous)
    except duckdb.Error as exc:
        if previous is None:
            raise
        log.info("loading the publication's new files failed (%s): loading it whole", exc)
        _fill(con, state_dir / DIRECTORY, manifest, None)


def _fill(con: duckdb.DuckDBPyConnection, directory: Path, manifest: dict[str, object],
          previous: dict[str, object] | None) -> None:
    files: dict[str, list[str]] = manifest["files"]  # type: ignore[assignment]
    loaded: dict[str, list[str]] = (previous or {}).get("files") or {}  # type: ignore[assignment]
    with transaction(con):
        # (the summary last: it keeps the rows of the segments listed)
        for table, names in sorted(files.items(), key=lambda item: item[0] == SUMMARY):
            if table not in (*DELTAS, *WHOLE, SUMMARY) or not all(
                    re.fullmatch(rf"{table}-\d+\.parquet", name) for name in names):
                raise ValueError(f"a manifest naming {table!r}: not a publication's")
            known = loaded.get(table) or []
            if table != SUMMARY and names == known:
                continue  # (the same files: a table the commit left as it was)
            if table not in WHOLE and known and names[:len(known)] == known:
                _add(con, table, [directory / name for name in names[len(known):]])
            else:
                source = _source(table, [directory / name for name in names])
                con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {source}")


def _source(table: str, paths: list[Path]) -> str:
    """The rows of ``table`` that files ``paths`` hold, as SQL: a delta's newest row of each
    key (the row of the latest file: a later commit wrote it; within one file, as
    ``DELTAS`` says), the summary's rows of the segments listed."""
    if table in DELTAS:
        key, newest = DELTAS[table]
        if len(paths) == 1:  # (the usual state, one commit's file: about 1 ms a load less)
            return (f"(SELECT * FROM {_read(paths)} QUALIFY row_number() OVER "
                    f"(PARTITION BY {key} ORDER BY {newest}) = 1)")
        return (f"(SELECT * EXCLUDE (filename) FROM {_read(paths, filename=True)} "
                f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY "
                f"{_GENERATION} DESC, {newest}) = 1)")
    if table == SUMMARY:
        return f"(SELECT * FROM {_read(paths)} WHERE segment IN (SELECT name FROM segments))"
    return _read(paths)


# the generation of the file a row was read from (names are ``table-N.parquet``)
_GENERATION = r"regexp_extract(filename, '-(\d+)\.parquet$', 1)::BIGINT"


def _read(paths: list[Path], filename: bool = False) -> str:
    names = ", ".join(literal(str(path)) for path in paths)
    options = READ_OPTIONS + (", filename=true" if filename else "")
    return f"read_parquet([{names}], {options})"


def _add(con: duckdb.DuckDBPyConnection, table: str, paths: list[Path]) -> None:
    """Files ``paths`` added to those ``table`` was loaded from: for a table of deltas, the
    newest row of each key in the new files replaces the row held, if any (a delta holds
    what a later commit wrote: a newer revision of an alert, a newer ledger entry, events
    the store had not held); for the summary, the rows of the segments still listed."""
    if table == SUMMARY:
        con.execute(f"DELETE FROM {SUMMARY} WHERE segment NOT IN (SELECT name FROM segments)")
        if paths:
            con.execute(f"INSERT INTO {SUMMARY} BY NAME SELECT * FROM {_source(table, paths)}")
        return
    if not paths:
        return
    on = " AND ".join(f"{table}.{k} IS NOT DISTINCT FROM n.{k}"
                      for k in DELTAS[table][0].split(", "))
    # (a temporary table of the caller's transaction: a failure rolls it back with it)
    con.execute(f"CREATE OR REPLACE TEMP TABLE published_new AS "
                f"SELECT * FROM {_source(table, paths)}")
    con.execute(f"DELETE FROM {table} USING published_new n WHERE {on}")
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM published_new")
    con.execute("DROP TABLE published_new")


def _current_generation(directory: Path) -> int:
    try:
        return int(current(directory.parent)["generation"])  # type: ignore[call-overload]
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def write_status(state_dir: Path, status: dict[str, object]) -> None:
    """The collector's activity, for attached apps' status bars (renamed into place)."""
    text = json.dumps(status, default=str).encode()
    own_directory(state_dir / DIRECTORY)  # (not written through a link planted there)
    replace_private(state_dir / DIRECTORY / STATUS, lambda out: out.write(text))


def read_status(state_dir: Path) -> dict[str, object] | None:
    """The collector's status, or None when there is none readable (or it is no object)."""
    try:
        status = _json(read_small(state_dir / DIRECTORY / STATUS, MAX_MANIFEST))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


class StatusWatch:
    """status.json, read again only when the collector has replaced it (a stat per look:
    cheap enough for every round of an app's views)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._seen: tuple[int, int] | None = None  # (its inode, its mtime)

    def changed(self) -> dict[str, object] | None:
        """The status when it changed since the last look, else None."""
        try:
            stat = os.stat(self.state_dir / DIRECTORY / STATUS)
        except OSError:
            return None
        if (stat.st_ino, stat.st_mtime_ns) == self._seen:
            return None
        self._seen = (stat.st_ino, stat.st_mtime_ns)
        return read_status(self.state_dir)
