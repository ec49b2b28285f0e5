"""What the app shows honours one scope: the filter bar's terms, the selected time range
and the minimum alert level."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.filters import Filter
from core.timeline import TimeRange


@dataclass(frozen=True)
class Scope:
    filter: Filter = field(default_factory=Filter)
    range: TimeRange | None = None
    min_level: int = 0
