"""What the command line's modules share: exit statuses, the usage error, the rules a
configuration asks for."""

from __future__ import annotations

import signal

from core.config import Config
from core.rules import RuleEngine, load_engine

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool SIGPIPE ended


class UsageError(Exception):
    """Bad usage or configuration: exit 2."""


def engine_of(config: Config | None) -> RuleEngine:
    """The configured rules, or the default ruleset without a configuration."""
    if config is None:
        return load_engine([])
    general = config.general
    return load_engine(list(general.rules), general.default_rules, list(general.blocklist))
