"""Local files and folders through the same parsers and store as S3 objects (no AWS needed)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from core.decompress import CorruptObject
from core.events import PollSummary
from core.layouts import Kind, kind_of_path, name_context
from core.objects import ObjectRef, ObjectResult, Status
from core.reader import not_a_log, read_object
from core.safetext import visible
from core.store import CommitStats, Store
from core.store.isolation import commit_isolating

log = logging.getLogger(__name__)
LOCAL_BUCKET = "local"
COMMIT_RECORDS = 500_000


def local_files(paths: list[Path]) -> Iterator[Path]:
    """The readable log files among ``paths`` and, recursively, inside the folders among them
    (each once, however often it is named or linked; a link to a folder is not followed, and
    said so; a file named here whose name is none of a log's is said so too)."""
    seen: set[tuple[int, int]] = set()  # (device, inode: a hard link is the same file too)
    named = [path.resolve() for path in paths if path.is_dir()]
    for path in paths:
        found = _in_folder(path, named) if path.is_dir() else _named(path)
        for file in found:
            if (same := _identity(file)) not in seen:
                seen.add(same)
                yield file


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _in_folder(folder: Path, named: list[Path]) -> list[Path]:
    found = []
    for root, folders, files in os.walk(folder):
        for name in folders:
            link = Path(root) / name
            if link.is_symlink() and not any(link.resolve().is_relative_to(n) for n in named):
                log.warning("%s: a link to a folder, not followed (name the folder to scan "
                            "it)", visible(str(link)))
        found += [p for name in files if (p := Path(root) / name).is_file() and _wanted(p)]
    return sorted(found)


def _named(path: Path) -> list[Path]:
    if not _wanted(path):
        log.warning("%s: skipped: a log's name ends in .log, .log.gz, .parquet, .json or "
                    ".json.gz", visible(str(path)))
    return [path]


def _wanted(path: Path) -> bool:
    return kind_of_path(path.name) is not Kind.OTHER


def scan(paths: list[Path], store: Store, max_size: int,
         on_commit: Callable[[CommitStats], None] | None = None) -> PollSummary:
    """Read every file once (a file already done with the same size and mtime is not re-read).
    ``on_commit`` receives what each commit did (the alerts it created or updated...)."""
    started = time.monotonic()
    summary = PollSummary()
    refs = [_ref(path) for path in local_files(paths)]
    batch: list[ObjectResult] = []
    rows = 0
    for candidate in store.candidates(refs):
        result = _read(candidate.ref, max_size)
        result.replaces = candidate.replaces
        batch.append(result)
        rows += result.rows
        if rows >= COMMIT_RECORDS:
            _commit(store, batch, summary, on_commit)
            batch, rows = [], 0
    _commit(store, batch, summary, on_commit)
    summary.seconds = time.monotonic() - started
    return summary


def _ref(path: Path) -> ObjectRef:
    stat = path.stat()
    account, region = name_context(path.name)  # a file named as AWS names objects
    return ObjectRef(LOCAL_BUCKET, str(path.resolve()), f"{stat.st_size}-{stat.st_mtime_ns}",
                     stat.st_size, kind_of_path(path.name), account, region)


def _read(ref: ObjectRef, max_size: int) -> ObjectResult:
    if ref.kind is Kind.OTHER:  # (a file named to scan that is no log: not read at all)
        return not_a_log(ref)
    try:
        data = Path(ref.key).read_bytes()
        return read_object(ref, data, max_size)
    except CorruptObject as exc:
        log.warning("quarantined %s: %s", ref.key, exc)
        return ObjectResult(ref, Status.QUARANTINED, error=str(exc))
    except OSError as exc:
        return ObjectResult(ref, Status.PENDING, error=f"cannot read: {exc.strerror}")
    except Exception as exc:  # a bug: shown with its traceback, the file set aside (as collect)
        log.exception("%s: internal error", ref.key)
        return ObjectResult(ref, Status.QUARANTINED, error=f"internal error: {exc!r}")


def _commit(store: Store, batch: list[ObjectResult], summary: PollSummary,
            on_commit: Callable[[CommitStats], None] | None) -> None:
    stats = commit_isolating(store, batch)
    summary.add(batch, stats)
    if on_commit is not None:
        on_commit(stats)
