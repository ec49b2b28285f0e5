"""The chart's keys and mouse: a cursor and a selection of buckets, peaks, applying a range.
Mixed into :class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

from textual.widgets import Input

from core.timeline import Axis, Peak, TimeRange
from tui.widgets.chart import Timeline, TrafficChart

ZOOM_MIN_SECONDS = 1800  # a range is shown in at least this much time


class ChartKeys:
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The arrows are the chart's everywhere except in a text field (and under a modal
        screen), where they move the text cursor."""
        if action in ("move", "widen"):
            return not isinstance(self.focused, Input) and len(self.screen_stack) == 1
        return True

    def _cursor_index(self) -> int | None:
        axis = self.chart.axis
        if axis is None:
            return None
        return self.chart.cursor if self.chart.cursor is not None else axis.count - 1

    def _set_cursor(self, index: int, first: int | None = None, last: int | None = None
                    ) -> None:
        axis = self.chart.axis
        assert axis is not None
        index = min(axis.count - 1, max(0, index))
        self.cursor_t = axis.start + index * axis.size
        low = index if first is None else first
        high = index if last is None else last
        self.selection = axis.bucket_range(low, high)
        self.query_one(TrafficChart).focus()
        self._show_chart()

    def action_move(self, step: int) -> None:
        index = self._cursor_index()
        if index is not None:
            self._anchor_t = None
            self._set_cursor(index + (step if self.chart.cursor is not None else 0))

    def action_widen(self, step: int) -> None:
        index, axis = self._cursor_index(), self.chart.axis
        if index is None or axis is None:
            return
        if self._anchor_t is None:
            self._anchor_t = axis.start + index * axis.size
        new = min(axis.count - 1, max(0, index + step))
        self._set_cursor(new, min(new, axis.index(self._anchor_t)),
                         max(new, axis.index(self._anchor_t)))

    def action_peak(self, step: int) -> None:
        peaks, index = self.chart.peaks, self._cursor_index()
        if not peaks or index is None:
            self.notify("no peak in the chart", markup=False)
            return
        if self.chart.cursor is None:
            index = -1 if step > 0 else self.chart.axis.count if self.chart.axis else 0
        later = [p for p in peaks if p.top > index] if step > 0 else []
        earlier = [p for p in peaks if p.top < index] if step < 0 else []
        chosen = later[0] if later else earlier[-1] if earlier else None
        if chosen is None:
            self.notify("no further peak", markup=False)
            return
        self._select_peak(chosen)

    def _select_peak(self, peak: Peak) -> None:
        self._anchor_t = None
        self._set_cursor(peak.top, peak.first, peak.last)

    def action_biggest_peak(self) -> None:
        if self.chart.peaks:
            self._select_peak(max(self.chart.peaks, key=lambda p: p.bytes))

    def action_zoom(self, factor: float) -> None:
        """Show ``factor`` times the time shown, around the cursor (else around the middle),
        within what is stored; zooming out to all of it returns to the live view."""
        axis: Axis | None = self.chart.axis
        if axis is None:
            return
        shown = self.scope.range or TimeRange(axis.start, axis.end)
        middle = ((shown.start + shown.end) // 2 if self.cursor_t is None
                  or not shown.start <= self.cursor_t < shown.end
                  else self.cursor_t + axis.size // 2)
        width = max(ZOOM_MIN_SECONDS, round((shown.end - shown.start) * factor))
        whole: Axis | None = self.whole_axis
        if whole is None or width >= whole.end - whole.start:
            if self.scope.range is not None:
                self.set_scope(range=None)
            return
        start = min(max(middle - width // 2, whole.start), whole.end - width)
        self.set_scope(range=TimeRange(start, start + width))

    def action_apply_range(self) -> None:
        if self.selection is not None:
            self.set_scope(range=self.selection)

    def on_timeline_picked(self, message: Timeline.Picked) -> None:
        axis = self.chart.axis
        if axis is not None:
            self._set_cursor(message.last, message.first, message.last)
            self.action_apply_range()
