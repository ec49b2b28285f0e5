"""The scope's keys and chips: the filter box, the range and level chips, Esc stepping back
out of a range, a filter and a focus, the time zone. Mixed into
:class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.widgets import Input, Static

from core.filters import Filter, FilterError, parse_filter
from core.timeline import TimeRange
from tui.cells import day_minute, plain, zone_name
from tui.widgets.chip import Chip
from tui.widgets.feed import AlertFeed


class ScopeKeys:
    def set_scope(self, **changes: Any) -> None:
        self.scope = replace(self.scope, **changes)
        feed = self.query_one(AlertFeed)
        feed.page_offset, feed.following, feed.new_alerts = 0, True, 0
        self._show_chips()
        self.request_view("feed", "chart", "conversations")  # (the buckets' state is not scoped)

    def apply_filter_text(self, text: str) -> bool:
        """Parse and apply; on a bad term show why and change nothing."""
        try:
            new = parse_filter(text)
        except FilterError as exc:
            self.query_one("#filter-error", Static).update(plain(exc, None))
            return False
        self.query_one("#filter-error", Static).update("")
        self.focus_address = self.selected_alert = None
        self.set_scope(filter=new)
        return True

    def action_open_filter(self, text: str | None = None) -> None:
        box = self.query_one("#filter-input", Input)
        box.value = self.scope.filter.text if text is None else text
        box.add_class("open")
        box.focus()

    def _close_filter(self) -> None:
        box = self.query_one("#filter-input", Input)
        box.remove_class("open")
        self.query_one("#filter-error", Static).update("")
        self.query_one(AlertFeed).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter-input":
            return
        try:
            parse_filter(event.value)
            message = ""
        except FilterError as exc:
            message = str(exc)
        self.query_one("#filter-error", Static).update(plain(message, None))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter-input" and self.apply_filter_text(event.value):
            self._close_filter()

    def action_back(self) -> None:
        box = self.query_one("#filter-input", Input)
        if box.has_class("open"):
            self._close_filter()
        elif self.scope.range is not None:
            self.set_scope(range=None)
        elif not self.scope.filter.empty:
            self.set_scope(filter=Filter())
        elif self.focus_address is not None:
            self.focus_address = self.selected_alert = None
            self.request_view("conversations")
            self._show_detail()

    def on_chip_removed(self, message: Chip.Removed) -> None:
        if message.kind == "range":
            self.set_scope(range=None)
        else:
            self.set_scope(filter=Filter())

    def action_level(self, step: int) -> None:
        self.set_scope(min_level=min(15, max(0, self.scope.min_level + step)))

    def action_toggle_zone(self) -> None:
        local = datetime.now().astimezone().tzinfo
        self.zone = UTC if self.zone is not UTC else (local or UTC)
        self._show_chips()
        self.request_view()


    def _show_chips(self) -> None:
        scope = self.scope
        filter_chip = self.query_one("#filter-chip", Chip)
        filter_chip.display = not scope.filter.empty
        _set_text(filter_chip, Text("filter: ").append(plain(scope.filter.text, 60)).append(" ✕"))
        range_chip = self.query_one("#range-chip", Chip)
        range_chip.display = scope.range is not None
        if scope.range:
            _set_text(range_chip, Text(f"{self._range_label(scope.range)} ✕"))
        _set_text(self.query_one("#level-chip", Static),
                  Text(f"level ≥ {scope.min_level} (+/-)"))
        _set_text(self.query_one("#notes", Static),
                  Text("; ".join(scope.filter.notes()), style="dim"))

    def _range_label(self, span: TimeRange) -> str:
        """The range with its day (the end's only when it differs), in the chosen zone."""
        first, last = day_minute(span.start, self.zone), day_minute(span.end, self.zone)
        if first[:5] == last[:5]:
            last = last[6:]
        return f"{first}–{last} {zone_name(self.zone)}"


def _set_text(widget: Static, text: Text) -> None:
    """Update only on a change: an update measures the widget and lays the screen out."""
    if widget.content != text:
        widget.update(text)
