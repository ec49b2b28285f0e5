"""Values as JSON text, exactly, for the lines the command line prints (``query --format
json``, alerts): a DECIMAL or HUGEINT keeps every digit (``json.dumps`` took them as floats:
9007199254740993 came out as 9007199254740992.0), and a float that is not finite is ``null``
(``NaN`` and ``Infinity`` are not JSON), as JavaScript's ``JSON.stringify`` writes it. Strings
are escaped, and items separated, as ``json.dumps`` does (every control and non-ASCII
character escaped; ", " and ": ")."""

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
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # (an interval's parts)
        return json_object(value._asdict().items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(json_text, value)) + "]"
    if isinstance(value, datetime | date | time):
        return json.dumps(value.isoformat())
    return json.dumps(str(value))  # (an interval, a UUID, a blob: as DuckDB prints it)


def json_object(items: Iterable[tuple[str, object]]) -> str:
    return "{" + ", ".join(f"{json.dumps(key)}: {json_text(value)}" for key, value in items) + "}"


def _decimal(value: Decimal) -> str:
    if not value.is_finite():
        return "null"
    if value == value.to_integral_value():
        return str(int(value))
    return str(value)  # (a JSON number: digits, a point, maybe an exponent such as 1E-7)
