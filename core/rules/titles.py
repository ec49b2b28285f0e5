"""A rule's title template as SQL: its fields are the alert's figures, the rule's group
keys, a per-event rule's ``fields`` or (per-event rules only) any field of the record."""

from __future__ import annotations

import string

from core.rules.model import Rule
from core.rules.sqlparts import as_bigint, literal, quote

# Names a title template may use, besides the rule's group_by columns.
TITLE_FIELDS = {"srcaddr": "_src", "dstaddr": "_dst", "dstport": "_port", "protocol": "_proto",
                "count": "_n", "bytes": "_sb", "packets": "_sp", "window_start": "_b",
                "first_seen": "_first", "last_seen": "_last"}


def title_sql(rule: Rule, field_prefix: str = "_f_") -> str:
    """SQL for the rule's title; a per-event rule's ``fields`` are columns named
    ``field_prefix`` + name."""
    parts = []
    for text, name, spec, _ in string.Formatter().parse(rule.title):
        if text:
            parts.append(literal(text))
        if name is None:
            continue
        if spec not in ("", "size"):
            raise ValueError(f"title field {{{name}:{spec}}}: the only format is :size "
                             "(a byte count as 1.6 GiB)")
        groups = {key: f"_g{i}" for i, (key, _) in enumerate(rule.group_keys())}
        fields = {key: f"{field_prefix}{key}" for key, _ in rule.fields}
        column = groups.get(name) or fields.get(name) or TITLE_FIELDS.get(name)
        if column is None and not rule.windowed:
            column = quote(name)  # a per-record rule may show any field of its record
        if column is None:
            raise ValueError(f"title field {{{name}}} is not a group_by column or one of "
                             f"{', '.join(sorted(TITLE_FIELDS))}")
        shown = f"format_bytes({as_bigint(column)})" if spec == "size" else f"{column}::VARCHAR"
        parts.append(f"coalesce({shown}, '-')")
    return " || ".join(parts) or "''"
