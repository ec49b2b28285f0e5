"""Exports of what the app shows: CSV for people and spreadsheets, JSON lines for scripts."""

from __future__ import annotations

import csv
import itertools
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@")  # after any leading space: a cell a spreadsheet runs


def export_rows(rows: Iterable[dict[str, Any]], directory: Path, stem: str, fmt: str) -> Path:
    """Write ``rows`` to ``directory/stem-YYYYmmdd-HHMMSS.{csv,json}`` (JSON: one object per
    line, values exactly as stored; CSV: lists and objects as JSON, text that a spreadsheet
    would run as a formula made inert, see _csv_cell) and return the path. ``rows`` are
    written as they come (an export of millions of alerts never holds them all). The file is
    new (never one that was there, nor through a link), readable by its owner only (it holds
    what the logs say), and whole: when writing fails midway, it is removed."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"export format is csv or json, not {fmt!r}")
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = directory / f"{name}.{fmt}"
    n = 1
    while os.path.lexists(path):  # (a dangling link too: the file is created exclusively)
        n += 1
        path = directory / f"{name}-{n}.{fmt}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(path, flags, 0o600), "w", newline="", encoding="utf-8") as out:
        try:
            _write(rows, out, fmt)
            out.flush()  # (a full disk fails here, not in close, after the check)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path


def _write(rows: Iterable[dict[str, Any]], out: TextIO, fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
        return
    rows = iter(rows)
    first = next(rows, None)
    writer = csv.DictWriter(out, fieldnames=list(first) if first is not None else [])
    writer.writeheader()
    if first is not None:
        writer.writerows({k: _csv_cell(v) for k, v in row.items()}
                         for row in itertools.chain([first], rows))


def _csv_cell(value: Any) -> Any:
    """Log text is the attacker's: a user agent ``=HYPERLINK(...)`` must not become a live
    formula when the CSV is opened in a spreadsheet. Text starting like a formula gets a
    leading ``'`` (OWASP's CSV-injection advice), and so does text starting with white
    space (a spreadsheet skips `` =1+1`` or ``\\n=1+1`` to the formula); numbers are left
    alone."""
    if isinstance(value, list | dict):
        value = json.dumps(value)
    if isinstance(value, str) and (value[:1].isspace() or value.startswith(FORMULA_STARTS)):
        return "'" + value
    return value
