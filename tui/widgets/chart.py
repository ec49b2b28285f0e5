"""The bytes-over-time chart (plotext) and the one-row timeline strip under it.

Both draw a :class:`ChartState`; neither queries anything. The chart colours the cursor
bucket, the selection and the peaks; the strip maps its width onto the same buckets and lets
the mouse click or drag a range (posted as :class:`Timeline.Picked`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from rich.text import Text
from textual.events import MouseDown, MouseMove, MouseUp
from textual.message import Message
from textual.widget import Widget
from textual_plotext import PlotextPlot

from core.timeline import Axis, Peak
from tui.cells import clock, human_bytes

Y_TICKS = 3
PLOT_MARGIN_ROWS = 4  # title, frame and time labels
X_TICKS = 5
PICTURES = 32  # recent renders kept: going back to an earlier scope redraws nothing
STRIP_KINDS = {"empty": ("─", "dim"), "normal": ("─", "dim"), "selected": ("█", "yellow"),
               "cursor": ("┃", "yellow"), "peak": ("▲", "red")}


@dataclass
class ChartState:
    axis: Axis | None = None
    values: list[int] = field(default_factory=list)
    peaks: list[Peak] = field(default_factory=list)
    cursor: int | None = None  # bucket index
    selection: tuple[int, int] | None = None  # bucket indexes, inclusive
    zoomed: bool = False  # the axis is the applied range

    def key(self) -> tuple[Any, ...]:
        return (self.axis, tuple(self.values), tuple(self.peaks), self.cursor, self.selection,
                self.zoomed)


class TrafficChart(PlotextPlot):
    """Bytes per bucket; focusable so ←/→, [/], shift+←/→ and Enter are its keys."""

    can_focus = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.state = ChartState()
        self.zone: tzinfo | None = None
        self._pictures: OrderedDict[tuple[Any, ...], Text] = OrderedDict()

    def show(self, state: ChartState, zone: tzinfo) -> None:
        if (state.key(), zone) != (self.state.key(), self.zone):  # (a redraw costs ~10 ms)
            self.state, self.zone = state, zone
            self.refresh()

    def prepare(self, state: ChartState, zone: tzinfo) -> Text:
        """Draw the picture of ``state`` now and keep it, without showing it: showing it
        later costs nothing. (The app calls this as soon as the histogram is known, so that
        plotext draws while the feed and the conversations are still being read.)"""
        return self._picture(state, zone)

    def render(self) -> Text:
        return self._picture(self.state, self.zone)

    def _picture(self, state: ChartState, zone: tzinfo | None) -> Text:
        """plotext takes ~50 ms a picture at 160 columns: keep the last few."""
        key = (state.key(), str(zone), self.size.width, self.size.height, self.app.theme)
        picture = self._pictures.get(key)
        if picture is None:
            self._draw(state, zone)
            picture = self._pictures[key] = super().render()  # type: ignore[assignment]
            if len(self._pictures) > PICTURES:
                self._pictures.popitem(last=False)
        self._pictures.move_to_end(key)
        return picture

    def _draw(self, state: ChartState, zone: tzinfo | None) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.xfrequency(0)
        if state.axis is None or not state.values or zone is None:
            plt.title("no flows stored yet")
            return
        peak_tops = {p.top for p in state.peaks}
        low, high = state.selection or (-1, -2)
        selected = set(range(low, high + 1))
        layers: dict[str, tuple[list[int], list[int]]] = {
            "normal": ([], []), "peak": ([], []), "selected": ([], [])}
        for i, value in enumerate(state.values):
            layer = "selected" if i in selected or i == state.cursor else (
                "peak" if _in_peak(i, state.peaks) else "normal")
            layers[layer][0].append(i)
            layers[layer][1].append(value)
        for name, color in (("normal", "blue"), ("peak", "red"), ("selected", "yellow")):
            xs, ys = layers[name]
            if any(ys):  # each bar() call costs ~30 ms at 160 columns: only the bars it has
                plt.bar(xs, ys, color=color, width=0.8, marker="sd")
        for top in peak_tops:
            plt.text("▲", x=top, y=state.values[top], color="red", alignment="center")
        self._ticks(state, state.axis, zone)
        plt.title(_title(state, state.axis, zone))

    def _ticks(self, state: ChartState, axis: Axis, zone: tzinfo) -> None:
        plt, count = self.plt, len(state.values)
        step = max(1, count // X_TICKS)
        positions = list(range(0, count, step))
        plt.xticks(positions, [clock(axis.start + p * axis.size, zone, False)
                               for p in positions])
        top = max(state.values, default=0)
        if top > 0:  # as many labels as the plot has rows for (plotext drops the others)
            ticks = min(Y_TICKS, max(1, (self.size.height - PLOT_MARGIN_ROWS) // 2))
            ys = [top * k / ticks for k in range(ticks + 1)]
            plt.yticks(ys, [human_bytes(y) for y in ys])
        plt.xlim(-0.5, count - 0.5)


def _title(state: ChartState, axis: Axis, zone: tzinfo) -> str:
    minutes = axis.size // 60
    size = f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"
    title = f"bytes per {size}; peaks: {len(state.peaks)}"
    if state.cursor is not None:
        t = axis.start + state.cursor * axis.size
        title += f"; cursor {clock(t, zone, False)} {human_bytes(state.values[state.cursor])}"
    return title + ("; zoomed to the range" if state.zoomed else "")


def _in_peak(i: int, peaks: list[Peak]) -> bool:
    return any(p.first <= i <= p.last for p in peaks)


class Timeline(Widget):
    """One row under the chart: the buckets across the full width; click or drag a range."""

    DEFAULT_CSS = "Timeline { height: 1; }"

    class Picked(Message):
        def __init__(self, first: int, last: int) -> None:
            super().__init__()
            self.first, self.last = first, last

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.state = ChartState()
        self._anchor: int | None = None
        self._drag: tuple[int, int] | None = None

    def show(self, state: ChartState) -> None:
        if state.key() != self.state.key():
            self.state = state
            self.refresh()

    def bucket_at(self, x: int) -> int | None:
        count = len(self.state.values)
        if not count or self.size.width <= 0:
            return None
        return min(count - 1, max(0, x * count // self.size.width))

    def render(self) -> Text:
        """One character a column; runs of the same kind are appended at once (a change of
        view redraws this row, and 160 single appends cost ~3 ms)."""
        text = Text()
        kinds = [self._kind(x) for x in range(self.size.width)]
        start = 0
        for x in range(1, len(kinds) + 1):
            if x == len(kinds) or kinds[x] != kinds[start]:
                char, style = STRIP_KINDS[kinds[start]]
                text.append(char * (x - start), style=style)
                start = x
        return text

    def _kind(self, x: int) -> str:
        bucket = self.bucket_at(x)
        selection = self._drag or self.state.selection
        if bucket is None:
            return "empty"
        if selection and min(selection) <= bucket <= max(selection):
            return "selected"
        if bucket == self.state.cursor:
            return "cursor"
        return "peak" if _in_peak(bucket, self.state.peaks) else "normal"

    def on_mouse_down(self, event: MouseDown) -> None:
        self._anchor = self.bucket_at(event.x)
        if self._anchor is not None:
            self._drag = (self._anchor, self._anchor)
            self.capture_mouse()
            self.refresh()

    def on_mouse_move(self, event: MouseMove) -> None:
        if self._anchor is not None and event.button:
            bucket = self.bucket_at(event.x)
            if bucket is not None:
                self._drag = (self._anchor, bucket)
                self.refresh()

    def on_mouse_up(self, event: MouseUp) -> None:
        self.release_mouse()
        if self._drag is not None:
            first, last = sorted(self._drag)
            self.post_message(self.Picked(first, last))
        self._anchor = self._drag = None
        self.refresh()
