"""Untrusted text made safe to show: control and bidi characters become visible escapes.

Every string that comes from a log (object keys, CloudTrail fields, S3 error messages) can be
chosen by someone else. Shown raw, ESC and C1 controls drive the terminal (OSC 52 writes the
clipboard, title sequences, cursor moves) and bidi controls reorder what the reader sees.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, and the Unicode bidi formatting characters
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control and bidi character replaced by a visible escape."""
    return _UNSAFE.sub(_escape, text)


def truncate(text: str, width: int) -> str:
    """``visible(text)`` cut to ``width`` characters, with an ellipsis when cut."""
    shown = visible(text)
    return shown if len(shown) <= width else shown[: max(0, width - 1)] + "…"
