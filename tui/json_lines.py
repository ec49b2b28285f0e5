"""Values as JSON text, exactly, for the lines the command line prints (``query --format
json``, alerts): a DECIMAL or HUGEINT keeps every digit (``json.dumps`` took them as floats:
9007199254740993 came out as 9007199254740992.0), and a float that is not finite is ``null``
(``NaN`` and ``Infinity`` are not JSON), as JavaScript's ``JSON.stringify`` writes it. Strings
are escaped, and items separated, as ``json.dumps`` does (every control and non-ASCII
character escaped; ", " and ": "). A line is written by ``json.dumps`` when it can be
(``json_line``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal

_AS_IS = (str, int, type(None))  # (bool is an int)


def json_text(value: object) -> str:
    """``value`` (what pyarrow's ``to_pylist`` gives) as JSON text."""
    if isinstance(value, _AS_IS):
        return json.dumps(value)
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else "null"
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, Mapping):
        return json_object(((str(k), v) for k, v in value.items()))
    if isinstance(value, list | tuple):  # (an interval too: [months, days, nanoseconds])
        return "[" + ", ".join(map(json_text, value)) + "]"
    return json.dumps(_plain(value))


def json_line(document: Mapping[str, object]) -> str:
    """``document`` as one JSON object: by ``json.dumps`` (in C: an alert's line 5 µs, 35 in
    ``json_text``) unless it holds a DECIMAL or a float that is not finite."""
    try:
        return json.dumps(document, allow_nan=False, default=_plain)
    except (TypeError, ValueError):
        return json_object(document.items())


def json_object(items: Iterable[tuple[str, object]]) -> str:
    return "{" + ", ".join(f"{json.dumps(key)}: {json_text(value)}" for key, value in items) + "}"


def _plain(value: object) -> str:
    """What ``json.dumps`` cannot write itself, as text (a time as ISO 8601; a UUID, a blob
    as Python prints it); a DECIMAL is refused (TypeError): ``json_text`` writes it."""
    if isinstance(value, Decimal):
        raise TypeError("a DECIMAL: written exactly by json_text")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _decimal(value: Decimal) -> str:
    if not value.is_finite():
        return "null"
    if value == value.to_integral_value():
        return str(int(value))
    return str(value)  # (a JSON number: digits, a point, maybe an exponent such as 1E-7)
