"""Names and durations as AWS and the configuration write them: leaf definitions that the
configuration, the key layouts and the rules share (so none of them imports another)."""

from __future__ import annotations

import re

ACCOUNT = re.compile(r"^\d{12}$")
ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
# a region code: us-east-1, us-gov-west-1, us-isob-east-1, and the European Sovereign
# Cloud's eusc-de-east-1 (its objects were never read: found by an adversarial test)
REGION_CODE = r"[a-z]{2,4}(?:-[a-z]+)+-\d+"
REGION = re.compile(f"^{REGION_CODE}$")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


MAX_DURATION = 100 * 365 * 86400.0  # seconds: longer is a mistake (and overflows dates)


def parse_duration(value: object) -> float:
    """``"10m"`` -> 600.0. Plain numbers are seconds. Raises ValueError, also for NaN,
    infinity and anything over MAX_DURATION (100 years)."""
    if isinstance(value, bool):
        raise ValueError(value)
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = _DURATION.match(str(value))
            if not match:
                raise ValueError(value)
            seconds = float(match[1]) * _UNITS[match[2] or "s"]
    except OverflowError:  # (an integer of hundreds of digits)
        raise ValueError(value) from None
    if not 0 <= seconds <= MAX_DURATION:  # (NaN compares false)
        raise ValueError(value)
    return seconds
