"""Detection rules: TOML tables read into ``Rule`` values, each checked on its own.

A rule that cannot load (bad TOML value, unknown field, SQL that does not compile) is
reported with its file, id and reason, and the other rules still load.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from core.names import parse_duration
from core.permissions import read_text_file, shared_write_problem
from core.rules.parity import IDS as PARITY_IDS

SOURCES = ("vpcflow", "cloudtrail")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_KEY_EXPRESSION = re.compile(r"^(?P<expr>.+?)\s+as\s+(?P<name>[a-z_][a-z0-9_]*)$",
                             re.IGNORECASE | re.DOTALL)
ALLOWED_KEYS = ("id", "level", "title", "source", "where", "group_by", "window", "having",
                "suppress", "baseline", "baseline_windows", "compare", "mitre", "wazuh_id",
                "description", "enabled", "fields")


class RuleError(Exception):
    """One rule that cannot load: the message names the file, the rule and the reason."""


@dataclass(frozen=True)
class Rule:
    id: str
    level: int
    title: str
    source: str
    where: str = "true"
    group_by: tuple[str, ...] = ()
    window: int | None = None  # seconds; None: one alert per record (CloudTrail only)
    having: str = "true"
    suppress: int | None = None  # seconds; alerts of one key within it are merged
    baseline: str | None = None  # an aggregate per window, compared with its recent average
    baseline_windows: int = 60
    compare: str = "true"  # over value, baseline, history (baseline rules)
    mitre: tuple[str, ...] = ()
    wazuh_id: int = 0
    description: str = ""
    fields: tuple[tuple[str, str], ...] = ()  # (name, SQL over one event): per-event rules
    file: str = ""

    @property
    def windowed(self) -> bool:
        return self.window is not None

    @property
    def bucket(self) -> int:
        """The span alerts of one key are merged over: ``suppress``, else ``window``."""
        return self.suppress or self.window or 1

    def group_keys(self) -> list[tuple[str, str]]:
        """(name, SQL expression) of each group_by entry: a column, or ``EXPR AS name``."""
        keys = []
        for entry in self.group_by:
            match = _KEY_EXPRESSION.match(entry)
            keys.append((match["name"], match["expr"]) if match else (entry, f'"{entry}"'))
        return keys

    def title_fields(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.title) if name]


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (of those errors, the files that could not be used at all: refused, unreadable, not
    # TOML, no [[rule]] tables; a configuration naming one is refused)
    unusable: list[str] = field(default_factory=list)


def default_rules_path() -> Path:
    return Path(str(resources.files("core.rules").joinpath("default.toml")))


def read_rule_files(paths: list[Path]) -> RuleSet:
    """Every enabled rule of ``paths``; a rule defined twice keeps its last definition."""
    result = RuleSet()
    by_id: dict[str, Rule] = {}
    for path in paths:
        document = _rule_document(path, result)
        if document is None:
            continue
        tables = document.get("rule", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            result.unusable.append(f"{path}: rules are [[rule]] tables")
            continue
        other = sorted(set(document) - {"rule"})
        if other:  # ([[rules]] read as no rule at all, silently)
            result.errors.append(f"{path}: unknown table {other[0]!r}; rules are [[rule]] tables")
        ids = [table["id"] for table in tables if isinstance(table.get("id"), str)]
        for twice in sorted({i for i in ids if ids.count(i) > 1}):
            result.errors.append(f"{path}: rule {twice!r} is defined more than once in this "
                                 "file; the last definition is used")
        for index, table in enumerate(tables):
            try:
                rule = parse_rule(table, str(path), index)
            except RuleError as exc:
                result.errors.append(str(exc))
                continue
            if rule is not None:
                by_id[rule.id] = rule
            else:
                by_id.pop(str(table.get("id")), None)  # enabled = false switches a rule off
    result.rules = list(by_id.values())
    result.errors[:0] = result.unusable
    return result


def _rule_document(path: Path, result: RuleSet) -> dict[str, object] | None:
    """The TOML of rule file ``path``, or None with the reason in ``result.unusable``."""
    try:
        problem = shared_write_problem(path)
        if problem:  # a rule is SQL vpcwatch runs: another user must not write it
            result.unusable.append(f"{path}: refused, {problem}")
            return None
        return tomllib.loads(read_text_file(path))
    except OSError as exc:
        result.unusable.append(f"{path}: cannot read: {exc.strerror}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        result.unusable.append(f"{path}: not valid TOML: {exc}")
    return None


def parse_rule(table: dict[str, Any], file: str, index: int) -> Rule | None:
    """A Rule from one [[rule]] table; None when it says ``enabled = false``."""
    name = f"rule {table.get('id')!r}" if isinstance(table.get("id"), str) else f"rule #{index}"

    def fail(reason: str) -> RuleError:
        return RuleError(f"{file}: {name}: {reason}")

    unknown = sorted(set(table) - set(ALLOWED_KEYS))
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; allowed: {', '.join(ALLOWED_KEYS)}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):  # ("false" or 0 left the rule on)
        raise fail("enabled must be true or false")
    if not enabled:
        return None
    rule_id = table.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise fail("id must be 1-64 characters: a-z, 0-9, '.', '_', '-'")
    if rule_id in PARITY_IDS:
        raise fail("this id is reserved for the Wazuh-parity alerts, which are derived from "
                   "the flows when read (see docs/rules.md)")
    level = table.get("level")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 15:
        raise fail("level must be an integer from 0 to 15")
    source = table.get("source")
    if source not in SOURCES:
        raise fail(f"source must be one of {', '.join(SOURCES)}")
    text = {key: table.get(key) for key in ("title", "where", "having", "baseline", "compare",
                                            "description")}
    for key, value in text.items():
        if value is not None and not isinstance(value, str):
            raise fail(f"{key} must be a string")
    if not text["title"]:
        raise fail("title is required")
    group_by = table.get("group_by", [])
    if not isinstance(group_by, list) or not all(
        isinstance(g, str) and (_IDENTIFIER.match(g) or _KEY_EXPRESSION.match(g))
        for g in group_by
    ):
        raise fail("group_by must be a list of column names or 'EXPRESSION AS name'")
    window = _seconds(table, "window", fail)
    suppress = _seconds(table, "suppress", fail)
    if window is None and source == "vpcflow":
        raise fail("vpcflow rules need a window (one alert per flow record would flood)")
    if window is None and group_by:
        raise fail("group_by needs a window")
    if suppress and window and suppress % window:
        raise fail("suppress must be a multiple of window")
    if suppress and not window:
        raise fail("suppress needs a window")
    baseline_windows = table.get("baseline_windows", 60)
    if isinstance(baseline_windows, bool) or not isinstance(baseline_windows, int) or not (
        1 <= baseline_windows <= 1440
    ):
        raise fail("baseline_windows must be an integer from 1 to 1440")
    if text["baseline"] and not window:
        raise fail("baseline needs a window")
    for key in ("compare", "baseline_windows"):  # (ignored: the rule fired on every window)
        if key in table and not text["baseline"]:
            raise fail(f"{key} needs a baseline")
    for key in ("where", "having", "baseline", "compare"):
        _one_expression(text[key], key, fail)
    mitre = table.get("mitre", [])
    if not isinstance(mitre, list) or not all(isinstance(m, str) for m in mitre):
        raise fail("mitre must be a list of technique ids")
    fields = _fields(table.get("fields", {}), window, fail)
    for key in group_by:
        match = _KEY_EXPRESSION.match(key)
        _one_expression(match["expr"] if match else key, "group_by", fail)
    wazuh_id = table.get("wazuh_id", 0)
    if isinstance(wazuh_id, bool) or not isinstance(wazuh_id, int) or not (
            0 <= wazuh_id <= 2**31 - 1):  # (the alerts' column: past it, every commit failed)
        raise fail("wazuh_id must be an integer from 0 to 2147483647")
    try:
        rule = Rule(
            id=rule_id, level=level, title=text["title"] or "", source=source,
            where=text["where"] or "true", group_by=tuple(group_by), window=window,
            having=text["having"] or "true", suppress=suppress, baseline=text["baseline"],
            baseline_windows=baseline_windows, compare=text["compare"] or "true",
            mitre=tuple(mitre), wazuh_id=wazuh_id, description=text["description"] or "",
            fields=fields, file=file,
        )
        rule.title_fields()
    except ValueError as exc:
        raise fail(f"title is not a valid template: {exc}") from None
    return rule


def _fields(value: Any, window: int | None, fail: Callable[[str], RuleError]
            ) -> tuple[tuple[str, str], ...]:
    """``fields``: a table of name = "SQL over the event", shown in the alert's ``details``
    and usable in its title."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _IDENTIFIER.match(k) and isinstance(v, str) and v.strip()
        for k, v in value.items()
    ):
        raise fail("fields must be a table of name = \"SQL expression\"")
    if value and window is not None:
        raise fail("fields need a per-event rule (no window)")
    for sql in value.values():
        _one_expression(sql, "fields", fail)
    return tuple(value.items())


def _one_expression(sql: str | None, key: str, fail: Callable[[str], RuleError]) -> None:
    """A rule's SQL is pasted into the queries that run it: it must be one expression, not
    one that ends its statement and starts another (found by an adversarial test: a ';' in
    a rule ran a COPY on the store's connection when the rule was checked, and a rule
    reported as not loaded had already deleted alerts). DuckDB's parser splits the text:
    nothing runs."""
    if sql is None:
        return
    try:
        statements = duckdb.extract_statements(f"SELECT ({sql})")
    except duckdb.Error as exc:
        raise fail(f"{key} is not SQL: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise fail(f"{key} must be one SQL expression (it ends a statement with ';')")


def _seconds(table: dict[str, Any], key: str, fail: Any) -> int | None:
    if key not in table:
        return None
    try:
        seconds = int(parse_duration(table[key]))
    except ValueError:
        raise fail(f"{key} {table[key]!r} is not a duration such as 5m or 1h") from None
    if not 1 <= seconds <= 7 * 86400:
        raise fail(f"{key} must be between 1s and 7d")
    return seconds
