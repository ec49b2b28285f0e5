"""A removable indicator of the scope ("12:03–12:08 UTC ✕"): a click removes what it shows."""

from __future__ import annotations

from typing import Any

from textual.events import Click
from textual.message import Message
from textual.widgets import Static


class Chip(Static):
    """A removable indicator ("12:03–12:08 UTC ✕"); a click removes what it shows."""

    class Removed(Message):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind

    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.kind = kind

    def on_click(self, event: Click) -> None:
        self.post_message(self.Removed(self.kind))
