"""What the command line's modules share: exit statuses, the usage error, the rules a
configuration asks for, the paths a scan takes."""

from __future__ import annotations

import signal
from pathlib import Path

from core.config import Config
from core.rules import RuleEngine, load_engine
from core.safetext import visible

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool SIGPIPE ended


class UsageError(Exception):
    """Bad usage or configuration: exit 2."""


def engine_of(config: Config | None, strict: bool = True) -> RuleEngine:
    """The configured rules, or the default ruleset without a configuration; a rule file
    the configuration names that cannot be used at all (refused, unreadable, not TOML)
    stops vpcwatch, as a bad blocklist does (one bad rule in a file is said, and skipped);
    not ``strict``: it is among ``engine.errors`` (``rules check`` lists them)."""
    if config is None:
        return load_engine([])
    general = config.general
    engine = load_engine(list(general.rules), general.default_rules, list(general.blocklist))
    if strict and engine.unusable:  # (a rule file's overrides silently not applied otherwise)
        raise UsageError("; ".join(visible(problem) for problem in engine.unusable))
    return engine


def check_scan_paths(paths: list[Path]) -> None:
    """Files and folders to scan, or a UsageError naming those that are neither (a FIFO or a
    terminal would be waited on for ever)."""
    missing = [visible(str(p)) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    other = [visible(str(p)) for p in paths if not (p.is_file() or p.is_dir())]
    if other:
        raise UsageError(f"not a regular file or a folder: {', '.join(other)}")
