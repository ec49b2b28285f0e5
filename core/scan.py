"""Local files and folders through the same parsers and store as S3 objects (no AWS needed)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from core.decompress import CorruptObject
from core.events import PollSummary
from core.layouts import Kind, kind_of_path, name_context
from core.objects import ObjectRef, ObjectResult, Status
from core.reader import read_object
from core.store import CommitStats, Store
from core.store.isolation import commit_isolating

log = logging.getLogger(__name__)
LOCAL_BUCKET = "local"
COMMIT_RECORDS = 500_000


def local_files(paths: list[Path]) -> Iterator[Path]:
    """The readable log files among ``paths`` and, recursively, inside the folders among them."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and _wanted(p))
        else:
            yield path


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
