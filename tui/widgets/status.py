"""The status bar: each bucket's ledger counts, the last and next poll, the ingest rate, the
lag between the newest record and now, the time zone, and how many problems ``!`` shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from rich.text import Text
from textual.widgets import Static

from core.explorer import BucketState
from tui.cells import clock, plain, zone_name

MAX_ERRORS = 100


@dataclass
class Activity:
    """What the app learned from the core's events (the ledger holds the rest)."""

    polling: bool = False
    last_poll: float | None = None
    next_poll: float | None = None
    records_per_second: float = 0.0
    newest_record: int | None = None
    problems: int = 0
    late: int = 0  # objects found by relists since the app started (see core.listing_plan)
    attached: str | None = None  # the collector the app follows (docs/attach.md), if any
    collector_gone: bool = False  # …and it stopped (its lock is free): waiting for it
    views_wait: bool = False  # …is busy, and a view waits for it to rest (core/priority.py)
    errors: list[str] = field(default_factory=list)  # poll and rule errors, newest last

    def add_error(self, error: str) -> None:
        """Remember an error once (polls repeat them), the newest MAX_ERRORS."""
        if error in self.errors:
            self.errors.remove(error)
        self.errors.append(error)
        del self.errors[:-MAX_ERRORS]


class StatusBar(Static):
    _shown: Text | None = None

    def show(self, buckets: list[BucketState], activity: Activity, zone: tzinfo,
             now: float) -> None:
        """Show the status, unless it is what is shown. The screen is laid out again only
        when the bar's height changes (it follows the text): an attached app shows its
        collector's activity as it changes, several times a poll, and each layout renders
        the whole screen again (that was most of an idle attached app's CPU)."""
        text = status_text(buckets, activity, zone, now)
        if text == self._shown:
            return
        self._shown = text
        self.update(text, layout=False)
        if self._rows_needed() != self.content_size.height:
            self.refresh(layout=True)

    def _rows_needed(self) -> int | None:
        """The rows the text shown needs at the bar's width, up to its max-height (None
        before its first layout)."""
        width = self.content_size.width
        if not width:
            return None
        rows = self.get_content_height(self.container_size, self.app.size, width)
        if (limit := self.styles.max_height) is not None:
            most = limit.resolve(self.container_size, self.app.size) - self.styles.gutter.height
            rows = min(rows, int(most))
        return rows


def status_text(buckets: list[BucketState], activity: Activity, zone: tzinfo,
                now: float) -> Text:
    text = Text()
    if activity.attached is not None and activity.collector_gone:
        text.append("✕ stopped: ", style="bold red")
        text.append(plain(activity.attached, 60, "red"))
        text.append(" (waiting for it)  ", style="red")
    elif activity.attached is not None:
        text.append("⇄ attached to ", style="cyan")
        text.append(plain(activity.attached, 60, "cyan"))
        text.append("  ")
    if not activity.collector_gone:
        text.append("● polling " if activity.polling else "○ idle ",
                    style="green" if activity.polling else "dim")
    if activity.views_wait:
        text.append("(views wait: the collector is busy) ", style="yellow")
    text.append(f"last {clock(activity.last_poll, zone) or '–'} "
                f"next {clock(activity.next_poll, zone) or '–'}  ")
    if activity.last_poll is not None:
        text.append(f"last poll {activity.records_per_second:,.0f} rec/s  ")
    lag = _lag(activity.newest_record, now)
    text.append(f"lag {lag}  ", style="yellow" if lag.endswith("h") else "")
    text.append(zone_name(zone), style="bold")
    if activity.late:
        text.append(f"  {activity.late} late", style="yellow")
    if activity.problems or activity.errors:
        text.append(f"  ! {activity.problems + len(activity.errors)} problems", style="bold red")
    for state in buckets:
        text.append("\n")
        text.append(plain(f"{state.bucket}/{state.kind}", 40, "bold"))
        counts = state.counts
        text.append(f"  done {counts.get('done', 0):,} pending {counts.get('pending', 0):,}")
        quarantined, blocked = counts.get("quarantined", 0), counts.get("blocked", 0)
        text.append(f" quarantined {quarantined:,}", style="red" if quarantined else "")
        text.append(f" blocked {blocked:,}", style="red" if blocked else "")
    return text


def _lag(newest: int | None, now: float) -> str:
    if newest is None:
        return "–"
    seconds = max(0, int(now - newest))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
