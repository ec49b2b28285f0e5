"""The feed's and the conversations' keys: pages, following, drilling down to flows and
events, a pair as the filter. Mixed into :class:`tui.app.VpcwatchApp`."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.cells import plain
from tui.screens import TableScreen
from tui.widgets.conversations import Conversations
from tui.widgets.feed import PAGE, AlertFeed
from tui.widgets.rowtable import RowTable


class FeedKeys:
    def on_row_table_selected(self, event: RowTable.Selected) -> None:
        if isinstance(event.table, AlertFeed):
            row = event.table.rows_shown[event.index]
            event.table.stop_following()
            if row is None:
                return
            self.selected_alert = row
            self._show_detail()
            if row["source"] == "cloudtrail":
                self._background("drill", self._show_events(row))
            else:
                self.focus_address = row["srcaddr"] or row["dstaddr"]
                self.request_view("conversations")
        elif isinstance(event.table, Conversations):
            self._drill_down(event.table.rows_shown[event.index])

    def action_other_address(self) -> None:
        alert = self.selected_alert
        if alert is None or not (alert["srcaddr"] and alert["dstaddr"]):
            return
        self.focus_address = (alert["dstaddr"] if self.focus_address == alert["srcaddr"]
                              else alert["srcaddr"])
        self.request_view("conversations")

    def action_follow(self) -> None:
        feed = self.query_one(AlertFeed)
        feed.following, feed.page_offset, feed.new_alerts = True, 0, 0
        self.request_view("feed")

    def action_columns(self, step: int) -> None:
        focused = self.focused
        table = focused if isinstance(focused, RowTable) else self.query_one(AlertFeed)
        table.scroll_columns(step)

    def action_page(self, step: int) -> None:
        feed = self.query_one(AlertFeed)
        offset = feed.page_offset + step * PAGE
        if offset >= 0 and (offset < max(feed.total, 1) or feed.total_partial):
            feed.page_offset, feed.following = offset, offset == 0 and feed.following
            self.request_view("feed")

    def action_conversation_filter(self) -> None:
        row = self.query_one(Conversations).selected
        if row is not None:
            self.apply_filter_text(f"{row['address']} {row['peer']}")

    def _drill_down(self, row: dict[str, Any] | None) -> None:
        if row is not None:
            self._background("drill", self._show_flows(row["address"], row["peer"]))

    async def _show_flows(self, address: str, peer: str) -> None:
        assert self.explorer is not None
        flows = await self._read(self.explorer.flows_between, self.scope, address, peer)
        title = Text("Flows between ").append(plain(address, 39)).append(" and ").append(
            plain(peer, 39)).append(f" ({flows.num_rows} newest; Esc closes)")
        await self.push_screen(TableScreen(title, flows))

    async def _show_events(self, alert: dict[str, Any]) -> None:
        assert self.explorer is not None
        events = await self._read(self.explorer.events_of, alert)
        title = Text("CloudTrail events of ").append(plain(alert["title"], 120)).append(
            " (Esc closes)")
        await self.push_screen(TableScreen(title, events))
