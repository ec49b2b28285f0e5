"""Time buckets for the bytes-over-time chart, and the peaks in them. Pure functions, no I/O.

A peak is a run of buckets well above the recent baseline: each bucket in it holds at least
``PEAK_FACTOR`` times the median of the ``BASELINE`` buckets before it, and more than that
median plus ``PEAK_MADS`` median absolute deviations (so a flat line with noise has none).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# 1 min to 1 day: every size a whole number of minutes (the traffic summary's unit)
BUCKET_SIZES = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
BASELINE = 30  # buckets the baseline is the median of
MIN_BASELINE = 5  # fewer buckets before it: no judgement
PEAK_FACTOR = 3.0
PEAK_MADS = 6.0


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in epoch seconds."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty time range {self.start}..{self.end}")


@dataclass(frozen=True)
class Axis:
    """The chart's buckets: ``count`` buckets of ``size`` seconds from ``start``."""

    start: int
    size: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.size * self.count

    def bucket_range(self, first: int, last: int) -> TimeRange:
        """The time covered by buckets first..last (inclusive, in any order)."""
        low, high = sorted((first, last))
        return TimeRange(self.start + low * self.size, self.start + (high + 1) * self.size)

    def index(self, t: int) -> int:
        return min(self.count - 1, max(0, (t - self.start) // self.size))


@dataclass(frozen=True)
class Peak:
    first: int  # bucket indexes, inclusive
    last: int
    top: int  # the bucket with the most bytes
    bytes: int


def axis_for(span: TimeRange, columns: int) -> Axis:
    """Buckets covering ``span`` with at most ``columns`` of them: the smallest size that
    fits, from 1 minute to 1 day, aligned on that size. A span too long even for daily
    buckets keeps its most recent ``columns`` days."""
    columns = max(1, columns)
    for size in BUCKET_SIZES:
        start = span.start // size * size
        count = -(-(span.end - start) // size)
        if count <= columns:
            return Axis(start, size, max(1, count))
    size = BUCKET_SIZES[-1]
    end = -(-span.end // size) * size
    return Axis(end - columns * size, size, columns)


def find_peaks(values: list[int]) -> list[Peak]:
    """Runs of buckets well above their baseline (see the module docstring), oldest first."""
    flagged = [_is_high(values, i) for i in range(len(values))]
    peaks: list[Peak] = []
    i = 0
    while i < len(values):
        if not flagged[i]:
            i += 1
            continue
        first = i
        while i + 1 < len(values) and flagged[i + 1]:
            i += 1
        top = max(range(first, i + 1), key=lambda k: values[k])
        peaks.append(Peak(first, i, top, sum(values[first:i + 1])))
        i += 1
    return peaks


def _is_high(values: list[int], i: int) -> bool:
    before = values[max(0, i - BASELINE):i]
    if len(before) < MIN_BASELINE or values[i] <= 0:
        return False
    median = statistics.median(before)
    mad = statistics.median(abs(v - median) for v in before)
    return values[i] >= PEAK_FACTOR * median and values[i] > median + PEAK_MADS * mad
