"""Where the DuckDB databases vpcwatch opens write what a query cannot hold in memory.

DuckDB's default for an in-memory database (an attached viewer's copy of the collector's
state, the SQL sandbox) is ``.tmp`` in the current directory: files of flows and alerts,
readable by everyone (0644), in whatever directory the command was started from, through a
symbolic link if one is planted there. Every database vpcwatch opens over the store's data
spills into the state directory's own ``spill/`` instead (0700, inside the 0700 state
directory). vpcwatch makes the directory itself, so DuckDB, which removes the directories
it made when it closes, never removes it under another process. Processes share it:
DuckDB 2 names its spill files per process and database (``duckdb_temp_<pid>_<n>_…``) and
removes dead processes' files (DuckDB 1 did neither: pyproject.toml asks for 2).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

SPILL_NAME = "spill"


def connect(state_dir: Path, database: str = ":memory:", read_only: bool = False,
            config: dict[str, object] | None = None) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect`` with spilling into ``state_dir``'s ``spill/`` (or none)."""
    settings = {"temp_directory": spill_directory(state_dir), **(config or {})}
    return duckdb.connect(database, read_only=read_only, config=settings)


def spill_directory(state_dir: Path) -> str:
    """``state_dir/spill``, made 0700 if needed; "" (DuckDB then spills nothing, and a query
    too large for memory fails with its error) when it cannot be made or is not a private
    directory of this user's."""
    path = state_dir / SPILL_NAME
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        log.info("%s: cannot spill there (%s): queries keep to memory", path, exc.strerror)
        return ""
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        log.warning("%s is not a directory of this user's: queries keep to memory", path)
        return ""
    return str(path)
