"""New alerts on the screen at once. An alert is what people wait for: when the feed follows
the newest alerts and holds stored ones only, its first page is read on a thread and cursor
of its own (``_alerts_reader``), not behind the view reader's work (new flows into the
index, the conversations) nor, in an app attached to a collector, at that work's low
priority (core/priority.py). Feed pages are thus read on two threads; each reading takes a
ticket first, and a page read before the one shown is never shown over it. Mixed into
:class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from tui.widgets.feed import PAGE, AlertFeed


class NewAlerts:
    def _alerts_changed(self, count: int) -> None:
        feed = self.query_one(AlertFeed)
        if feed.following and self.scope.range is None and feed.page_offset == 0:
            # at once: an alert is what people wait for (derived ones need the flows)
            if self.explorer is not None and not self.explorer.feed_reads_flows(self.scope):
                self._background("showing new alerts", self._show_new_alerts())
            else:
                self.request_view("feed")
        else:
            feed.new_alerts += count
            self._show_feed_title()

    def take_feed_ticket(self) -> int:
        """Before reading a page of the feed (see the module's docstring)."""
        self._feed_tickets += 1
        return self._feed_tickets

    def _show_feed_page(self, ticket: int, rows: pa.Table, total: int, partial: bool) -> None:
        if ticket < self._feed_shown:
            return
        self._feed_shown = ticket
        feed = self.query_one(AlertFeed)
        feed.show(rows, total, feed.page_offset, self.zone)
        feed.total_partial = partial
        if feed.following:
            feed.new_alerts = 0
        self._show_feed_title()
        self._show_detail()

    async def _show_new_alerts(self) -> None:
        """The first page of the feed of stored alerts, read on its own thread and cursor:
        not behind the reader's work, nor at its low priority when attached."""
        explorer, scope = self.explorer, self.scope
        if explorer is None:
            return
        ticket = self.take_feed_ticket()
        rows, total = await asyncio.get_running_loop().run_in_executor(
            self._alerts_reader, explorer.stored_feed, scope, PAGE)
        if scope == self.scope and self.query_one(AlertFeed).page_offset == 0:
            self._show_feed_page(ticket, rows, total, False)
