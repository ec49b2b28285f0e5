"""Opening the store: the state directory's lock, and, while a collector writes it, the
state that collector last published (docs/attach.md)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import duckdb

from core.rules import RuleEngine
from core.rules.sqlparts import literal
from core.store import publication, spill
from core.store.database import DATABASE_NAME, Store, StoreError
from core.store.statedir import (
    StateDirBusy,
    StateDirRead,
    StateLock,
    collector_owner,
    make_private,
    owner_command,
    prepare,
)

log = logging.getLogger(__name__)
READERS_WAIT = 0.5  # seconds between looks at a state directory that readers alone hold
SMALL_TABLES = ("segments", "meta", "prefixes")  # what every reader's copy holds whole
# The commands whose process publishes its state for viewers (core/collector.py): a viewer
# started as one starts waits this long for its first publication, looking every so often
PUBLISHING_COMMANDS = ("collect", "watch", "tui", "demo")
FIRST_PUBLICATION_WAIT = 30.0
PUBLICATION_POLL = 0.2


@contextlib.contextmanager
def open_store(state_dir: Path, read_only: bool = False, engine: RuleEngine | None = None,
               tables: Collection[str] | None = None) -> Iterator[Store]:
    """The store of ``state_dir``, with the directory's lock held while it is open; for
    reading while a collector writes it, the state that collector last published (see
    ``publication``; a publication left by another process is never taken); for reading
    while none does, a copy (``_snapshot``: of ``tables`` and the small ones, when given)."""
    if read_only:
        if not (state_dir / DATABASE_NAME).exists():
            raise StoreError(f"{state_dir}: no store yet; run vpcwatch collect or scan first")
        make_private(state_dir)
    else:
        prepare(state_dir)
    lock = StateLock(state_dir, exclusive=not read_only)
    try:
        _acquire(lock)
    except StateDirBusy as busy:
        if not read_only:
            raise
        store = _attached(state_dir, engine, busy.owner)
    else:
        try:
            store = (_snapshot(state_dir, engine, tables) if read_only
                     else Store(state_dir, engine=engine))
        except BaseException:
            lock.release()
            raise
        if read_only:  # (the file is closed: nothing held that a collector would wait for)
            lock.release()
    try:
        yield store
    finally:
        store.close()
        lock.release()


def _snapshot(state_dir: Path, engine: RuleEngine | None,
              tables: Collection[str] | None = None) -> Store:
    """The store for a reader started while no collector runs: its tables copied into
    memory, in one read of the file under the shared lock, and the file closed at once.
    Reading it and printing from it then holds nothing: DuckDB lets no writer open the file
    while a reader has it open, so a reader that printed from the file (`alerts | less`)
    kept a collector started meanwhile waiting until its last line. The flows are read
    from the segments the copy lists (a collector that started meanwhile keeps the files of
    those it merges or prunes ten minutes: a longer read may end with an I/O error)."""
    path = state_dir / DATABASE_NAME
    wanted = set(tables) | set(SMALL_TABLES) if tables is not None else None
    con = spill.connect(state_dir)
    try:
        con.execute(f"ATTACH {literal(str(path))} AS stored (READ_ONLY)")
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE "
                                    "database_name = 'stored' ORDER BY 1").fetchall():
            # (a table not wanted is there, empty: queries of it still bind)
            rows = "" if wanted is None or table in wanted else " LIMIT 0"
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM stored.{table}{rows}")
        con.execute("DETACH stored")
        return Store(state_dir, read_only=True, engine=engine, published=con)
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"{path}: cannot open the store: {str(exc).splitlines()[0]}"
                         ) from None
    except BaseException:  # (an interrupt while copying, or the store refused)
        con.close()
        raise


def _acquire(lock: StateLock) -> None:
    """``lock``; a writer held back by readers alone (``alerts`` or ``query`` started while
    no collector ran: DuckDB lets no writer open the file while they read it) waits for them
    to finish, rather than failing (a service restarted in a loop) or taking the last
    writer's publication for a live collector's."""
    waiting = False
    while True:
        try:
            lock.acquire()
            return
        except StateDirRead as readers:
            if not waiting:
                log.warning("%s; waiting for them to finish", readers)
                waiting = True
        time.sleep(READERS_WAIT)


def published_state(state_dir: Path, owner: str) -> dict[str, object]:
    """The manifest of the state that the writer holding the lock (``owner``) last
    published. A collector that has just started has not published yet: its first
    publication is waited for, ``FIRST_PUBLICATION_WAIT`` at most, while it holds the lock
    (before, a viewer started then was told it "publishes nothing for readers"). A writer
    that publishes nothing (``scan``) is named at once."""
    waits = owner_command(owner).split(" ")[-1] in PUBLISHING_COMMANDS
    deadline = time.monotonic() + (FIRST_PUBLICATION_WAIT if waits else 0.0)
    told = False
    while True:
        manifest = _manifest_of(state_dir, owner)
        if manifest is not None:
            return manifest
        if collector_owner(state_dir) != owner:
            raise StoreError(f"{state_dir}: {owner} stopped before it published its state; "
                             "run this again")
        if time.monotonic() >= deadline:
            if waits:  # (a collector still starting: upgrading a store, say)
                raise StoreError(f"{state_dir}: {owner} has not published its state after "
                                 f"{FIRST_PUBLICATION_WAIT:.0f} s (still starting?); try again")
            raise StoreError(f"{state_dir}: the state directory is being written by {owner}, "
                             "which publishes nothing for readers; stop it or use another "
                             "state_dir")
        if not told:
            log.warning("%s: waiting for %s to publish its state", state_dir, owner)
            told = True
        _pause(PUBLICATION_POLL)


def _manifest_of(state_dir: Path, owner: str) -> dict[str, object] | None:
    """The newest manifest if ``owner`` wrote it; None while there is none, or one of
    another process (a collector gone)."""
    if not publication.exists(state_dir):
        return None
    try:
        manifest = publication.current(state_dir)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{state_dir}: the state directory is being written by {owner}, "
                         f"and its publication cannot be read: {exc}") from None
    return manifest if publication.published_by(manifest, owner) else None


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def _attached(state_dir: Path, engine: RuleEngine | None, owner: str) -> Store:
    """The store as the collector ``owner`` last published it (read-only)."""
    manifest = published_state(state_dir, owner)
    busy = f"{state_dir}: the state directory is being written by {owner}"
    try:
        published = publication.load(state_dir, manifest)
    except (OSError, ValueError, KeyError, duckdb.Error) as exc:
        raise StoreError(f"{busy}, and its publication cannot be read: {exc}") from None
    try:  # (its view over the segments it lists: a name that is none is refused)
        store = Store(state_dir, read_only=True, engine=engine, published=published)
    except (ValueError, duckdb.Error) as exc:
        published.close()
        raise StoreError(f"{busy}, and its publication cannot be read: {exc}") from None
    store.attached_to, store.generation = owner, manifest.get("generation")
    store.manifest = manifest
    log.info("attached to %s (its last committed state)", owner)
    return store
