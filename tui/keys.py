"""The app's keys: one table gives the bindings, the footer and the help screen."""

from __future__ import annotations

# (key, action, footer label ("" = not in the footer), help): bindings and help come from here.
KEYS: list[tuple[str, str, str, str]] = [
    ("slash", "open_filter", "filter", "filter bar: IP, CIDR, src:, dst:, port:, proto:, "
     "action:, rule:, level>=N, eni:, vpc:, acct:, !negate"),
    ("escape", "back", "", "close the filter bar / clear the range (back to the live view) / "
     "clear the filter"),
    ("left", "move(-1)", "", "chart: cursor one bucket earlier"),
    ("right", "move(1)", "", "chart: cursor one bucket later"),
    ("shift+left", "widen(-1)", "", "chart: widen the selection earlier"),
    ("shift+right", "widen(1)", "", "chart: widen the selection later"),
    ("left_square_bracket", "peak(-1)", "", "chart: previous peak"),
    ("right_square_bracket", "peak(1)", "peak", "chart: next peak"),
    ("enter", "apply_range", "", "chart: apply the selection as the time range "
     "(feed: show the alert's conversations; conversations: raw flows)"),
    ("w", "explain", "explain", "chart: what made the selected buckets (or the range): the "
     "conversations by share of the bytes, their usual volume, new peers, ports, accounts, "
     "alerts (Enter on a row: filter on that pair then)"),
    ("i", "zoom(0.25)", "", "chart: zoom in around the cursor (a quarter of the time shown)"),
    ("o", "zoom(4)", "", "chart: zoom out (4 times the time shown; out to everything "
     "stored: the live view)"),
    ("plus", "level(1)", "level", "raise the minimum alert level"),
    ("minus", "level(-1)", "", "lower the minimum alert level"),
    ("f", "follow", "follow", "follow new alerts (also End)"),
    ("end", "follow", "", "follow new alerts"),
    ("h", "columns(-1)", "", "feed or conversations (the focused one): a column left"),
    ("l", "columns(1)", "", "feed or conversations (the focused one): a column right"),
    ("greater_than_sign", "page(1)", "", "feed: older page"),
    ("less_than_sign", "page(-1)", "", "feed: newer page"),
    ("a", "conversation_filter", "", "conversations: filter on the selected pair"),
    ("x", "other_address", "", "conversations: the selected alert's other address"),
    ("z", "toggle_zone", "", "times in UTC or local time"),
    ("e", "export('csv')", "export", "export the feed (or the focused conversations) to CSV"),
    ("E", "export('json')", "", "export the same to JSON lines"),
    ("c", "copy", "", "copy the selected row (OSC 52, and a file)"),
    ("colon", "sql", "sql", "read-only SQL on the store"),
    ("exclamation_mark", "problems", "", "problems: quarantined objects, denied prefixes, "
     "errors"),
    ("tab", "focus_next", "", "next pane"),
    ("p", "command_palette", "", "command palette"),
    ("question_mark", "help", "help", "this help (also F1)"),
    ("f1", "help", "", "this help"),
    ("q", "quit", "quit", "quit"),
]
_LABELS = {"slash": "/", "left_square_bracket": "[", "right_square_bracket": "]", "plus": "+",
           "minus": "-", "colon": ":", "question_mark": "?", "exclamation_mark": "!",
           "greater_than_sign": ">", "less_than_sign": "<", "left": "←", "right": "→",
           "shift+left": "shift+←", "shift+right": "shift+→", "escape": "Esc", "enter": "Enter",
           "end": "End", "tab": "Tab", "f1": "F1"}


def key_label(key: str) -> str:
    return _LABELS.get(key, key)
