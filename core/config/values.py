"""What each configuration value may be: converters that return the value read or raise
ValueError/TypeError (``reading`` turns those into an error naming the file and key)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.cloudtrail_parser import COLUMN_OF_FIELD
from core.fields import KNOWN_FIELDS, column_name
from core.names import parse_duration

_SIZE_UNITS = {"": 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
               "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)}


def parse_size(value: object) -> int:
    """``"1GiB"`` -> 1073741824. Plain numbers are bytes. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match or match[2].lower() not in _SIZE_UNITS:
        raise ValueError(value)
    try:
        return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    except OverflowError:  # (hundreds of digits: an infinite float)
        raise ValueError(value) from None


def parse_day(value: object) -> date:
    """ISO ``2026-01-01`` or Wazuh's ``2026-JAN-01``. Raises ValueError."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    parts = text.split("-")
    if len(parts) == 3 and parts[1].upper() in _MONTHS:
        return date(int(parts[0]), _MONTHS[parts[1].upper()], int(parts[2]))
    return date.fromisoformat(text)


def string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "no"):
        return value.lower() == "yes"
    raise TypeError(value)


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(value)
    return value


def string_list(pattern: re.Pattern[str]) -> Callable[[object], tuple[str, ...]]:
    def convert(value: object) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise TypeError(value)
        result = tuple(str(item).strip() for item in items)
        if not all(pattern.match(item) for item in result):
            raise ValueError(value)
        return result

    return convert


def matching(pattern: re.Pattern[str]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise ValueError(value)
        return value

    return convert


def prefix(value: object) -> str:
    text = string(value).strip("/")
    if "AWSLogs" in text.split("/"):
        raise ValueError(value)
    return text


def role_duration(value: object) -> int:
    seconds = int(parse_duration(value))
    if not 900 <= seconds <= 43200:
        raise ValueError(value)
    return seconds


def url(value: object) -> str:
    text = string(value)
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValueError(value)
    return text


def paths(base: Path) -> Callable[[object], tuple[Path, ...]]:
    def convert(value: object) -> tuple[Path, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise TypeError(value)
        paths = (Path(os.path.expandvars(item)).expanduser() for item in value)
        return tuple(path if path.is_absolute() else base / path for path in paths)

    return convert


def at_least(parse: Callable[[object], float], minimum: float,
             maximum: float = float("inf")) -> Callable[[object], Any]:
    """``parse``, refusing values below ``minimum`` (or above ``maximum``)."""
    def convert(value: object) -> float:
        parsed = parse(value)
        if not minimum <= parsed <= maximum:
            raise ValueError(value)
        return parsed

    return convert


def min_duration(minimum: float) -> Callable[[object], float]:
    return at_least(parse_duration, minimum)


def bounded_int(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        number = _positive_int(value)
        if not low <= number <= high:
            raise ValueError(value)
        return number

    return convert


def regex(value: object) -> re.Pattern[str]:
    pattern = re.compile(string(value))
    try:  # records are filtered by Arrow, whose engine is RE2: refuse what RE2 cannot run
        pc.match_substring_regex(pa.array([""]), pattern.pattern)
    except pa.ArrowInvalid as exc:
        raise ValueError(str(exc)) from None
    return pattern


def one_of(choices: tuple[str, ...]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError(value)
        return str(value)

    return convert


def discard_column(bucket_type: str) -> Callable[[object], str]:
    """A ``discard_field`` as the column it names: for flow logs an AWS field name (or its
    column, ``log_status``), for CloudTrail a column or the CloudTrail field it holds (as
    Wazuh names it: ``eventName``). Another name filtered nothing, silently."""
    if bucket_type == "cloudtrail":
        columns = {**{c: c for c in COLUMN_OF_FIELD.values()}, **COLUMN_OF_FIELD}
    else:
        columns = {name: column_name(name) for name in KNOWN_FIELDS}
        columns |= {column: column for column in columns.values()}

    def convert(value: object) -> str:
        if not isinstance(value, str) or value not in columns:
            raise ValueError(value)
        return columns[value]

    return convert


def discard_fields(bucket_type: str) -> str:
    """The names ``discard_column`` takes, for its error message."""
    if bucket_type == "cloudtrail":
        return "a CloudTrail field: " + ", ".join(COLUMN_OF_FIELD)
    return "a flow-log field such as srcaddr, dstport, action, log-status (AWS's names)"
