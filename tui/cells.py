"""Table cells and labels for the app. Every value from a log becomes a ``rich.text.Text``
built from ``core.safetext`` (never markup): control, ESC, C1 and bidi characters shown as
escapes, long values cut with an ellipsis."""

from __future__ import annotations

from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from rich.text import Text

from core.filters import PROTOCOL_NAMES
from core.safetext import truncate, visible

SPARK = "▁▂▃▄▅▆▇█"


def plain(value: Any, width: int | None = 40, style: str = "") -> Text:
    """Untrusted ``value`` as literal text, at most ``width`` characters (None: all of it).
    The one way text that is not a literal of this code reaches a widget."""
    if value is None:
        return Text("", style=style)
    text = visible(str(value)) if width is None else truncate(str(value), width)
    return Text(text, style=style)


def level_cell(level: int | None) -> Text:
    """The level, coloured by severity (works with 16 colours)."""
    if level is None:
        return Text("")
    style = ("bold red" if level >= 12 else "red" if level >= 10 else "yellow" if level >= 7
             else "cyan" if level >= 5 else "dim")
    return Text(f"{level:>2}", style=style)


def number(value: int | Decimal | None) -> Text:
    return Text("" if value is None else f"{int(value):,}", justify="right")


def size(value: int | Decimal | None) -> Text:
    return Text(human_bytes(value), justify="right")


def human_bytes(value: int | Decimal | float | None) -> str:
    """Binary units, as the alert titles write them (DuckDB's format_bytes)."""
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def protocol_name(number: int | None) -> str:
    if number is None:
        return ""
    return PROTOCOL_NAMES.get(int(number), str(number))


def clock(epoch: int | float | None, zone: tzinfo, seconds: bool = True) -> str:
    return _formatted(epoch, zone, "%H:%M:%S" if seconds else "%H:%M")


def day_clock(epoch: int | float | None, zone: tzinfo) -> str:
    return _formatted(epoch, zone, "%m-%d %H:%M:%S")


def day_minute(epoch: int | float, zone: tzinfo) -> str:
    return _formatted(epoch, zone, "%m-%d %H:%M")


def _formatted(epoch: int | float | None, zone: tzinfo, form: str) -> str:
    """``epoch`` as ``form`` says, '' for None, '?' for a time no calendar holds (found by
    an adversarial test: a status.json saying its last poll was in the year 33658 ended
    the attached app)."""
    if epoch is None:
        return ""
    try:
        return datetime.fromtimestamp(epoch, zone).strftime(form)
    except (ValueError, OverflowError, OSError):
        return "?"


def zone_name(zone: tzinfo) -> str:
    return datetime.now(zone).strftime("%Z") or "local"


def sparkline(values: list[Any]) -> Text:
    numbers = [int(v or 0) for v in values]
    top = max(numbers, default=0)
    if top <= 0:
        return Text(SPARK[0] * len(numbers), style="dim")
    return Text("".join(SPARK[min(7, n * 8 // (top + 1))] if n else " " for n in numbers),
                style="green")
