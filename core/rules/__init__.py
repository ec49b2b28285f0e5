"""Detection rules written in SQL, the default ruleset, and their evaluation."""

from __future__ import annotations

from pathlib import Path

from core.rules import parity
from core.rules.engine import RuleEngine
from core.rules.functions import BlocklistError
from core.rules.model import Rule, RuleError, RuleSet, default_rules_path, read_rule_files
from core.rules.sqlparts import ALERT_FIELDS, ALERTS_SCHEMA, CONTEXT

__all__ = ["ALERTS_SCHEMA", "ALERT_FIELDS", "CONTEXT", "BlocklistError", "Rule", "RuleEngine",
           "RuleError", "RuleSet", "default_rules_path", "load_engine", "parity", "read_rule_files"]


def load_engine(files: list[Path], default_rules: bool = True,
                blocklist: list[Path] | None = None) -> RuleEngine:
    """The engine for the default ruleset (unless switched off) and ``files``, in that order
    (a rule id defined again replaces the earlier one). ``engine.errors`` names the rules
    that did not load; rules are compiled against the store when it opens, which adds the
    ones whose SQL does not compile."""
    paths = ([default_rules_path()] if default_rules else []) + list(files)
    ruleset = read_rule_files(paths)
    engine = RuleEngine(ruleset.rules, blocklist)
    engine.errors[:0] = ruleset.errors
    engine.unusable = ruleset.unusable
    return engine
