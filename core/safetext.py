"""Untrusted text made safe to show: control and bidi characters become visible escapes.

Every string that comes from a log (object keys, CloudTrail fields, S3 error messages) can be
chosen by someone else. Shown raw, ESC and C1 controls drive the terminal (OSC 52 writes the
clipboard, title sequences, cursor moves) and bidi controls reorder what the reader sees.
"""

from __future__ import annotations

import re
import unicodedata

# Controls (C0, DEL, C1), format characters (bidi controls, zero-width spaces and joiners,
# the byte-order mark, tag characters: what makes a look-alike ARN or address), line and
# paragraph separators, surrogates (undecodable bytes) and unassigned code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})
# Characters that show as nothing though their category is an ordinary one: the default-
# ignorable letters and marks (Hangul fillers, the combining grapheme joiner, Khmer's
# inherent vowels, Mongolian and other variation selectors) and the blank braille pattern
# (found by an adversarial test and a review: U+3164 and the variation selectors passed)
_BLANK = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u2800\u3164"
                    "\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]")
_NOT_PRINTABLE_ASCII = re.compile("[^\x20-\x7e]")  # the candidates: checked one by one


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES and not _BLANK.match(char):
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every control, format (bidi, zero-width), separator and blank character
    replaced by a visible escape."""
    return _NOT_PRINTABLE_ASCII.sub(_escape, text)


def truncate(text: str, width: int) -> str:
    """``visible(text)`` cut to ``width`` characters, with an ellipsis when cut."""
    shown = visible(text)
    return shown if len(shown) <= width else shown[: max(0, width - 1)] + "…"
