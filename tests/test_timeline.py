"""Chart buckets and peak detection on hand-made series."""

from __future__ import annotations

from core.timeline import Axis, Peak, TimeRange, axis_for, find_peaks


def test_axis_uses_the_smallest_bucket_that_fits() -> None:
    day = TimeRange(0, 6 * 3600)  # six hours
    assert axis_for(day, 400) == Axis(0, 60, 360)  # 1-minute buckets fit in 400 columns
    assert axis_for(day, 100) == Axis(0, 300, 72)  # 5 minutes is the smallest that fits
    assert axis_for(TimeRange(90, 150), 10) == Axis(60, 60, 2)  # aligned on the bucket size


def test_a_week_fits_in_a_narrow_chart_and_a_span_too_long_keeps_its_most_recent_days(
) -> None:
    week = TimeRange(0, 7 * 86400)
    assert axis_for(week, 160) == Axis(0, 7200, 84)  # 168 hourly buckets do not fit
    axis = axis_for(TimeRange(0, 1000 * 86400), 50)
    assert (axis.size, axis.count, axis.end) == (86400, 50, 1000 * 86400)


def test_bucket_range_and_index() -> None:
    axis = Axis(600, 60, 10)
    assert axis.bucket_range(3, 1) == TimeRange(660, 840)
    assert axis.index(0) == 0 and axis.index(10_000) == 9 and axis.index(725) == 2


def test_a_burst_is_a_peak_and_noise_is_not() -> None:
    noise = [100, 104, 97, 101, 99, 103, 98, 102, 100, 96]
    assert find_peaks(noise) == []
    series = [*noise, 5000, 4000, 101, 99]
    assert find_peaks(series) == [Peak(10, 11, 10, 9000)]


def test_two_bursts_are_two_peaks_and_early_buckets_are_not_judged() -> None:
    series = [9000, 100, 100, 100, 100, 100, 900, 100, 100, 100, 100, 700]
    assert find_peaks(series) == [Peak(6, 6, 6, 900), Peak(11, 11, 11, 700)]
