"""`vpcwatch rules check | list | test`: the rules a configuration loads, compiled against a
scratch store, listed, or run alone over local files."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from core.alerts import recent_alerts
from core.config import load_config
from core.rules import RuleEngine, load_engine, parity
from core.safetext import visible
from core.store import Store
from tui.cli_base import EXIT_FAILED, EXIT_OK, UsageError, check_scan_paths, engine_of
from tui.output import print_alerts, warn_rule_errors


def _checked_engine(args: argparse.Namespace, files: list[Path] | None = None,
                    strict: bool = True) -> RuleEngine:
    """The config's rules (or just ``files``), compiled against an empty scratch store
    (``strict``: as ``engine_of``)."""
    config = load_config(args.config) if getattr(args, "config", None) else None
    if files:
        engine = load_engine(files, False, list(config.general.blocklist) if config else [])
    else:
        engine = engine_of(config, strict)
    with tempfile.TemporaryDirectory(prefix="vpcwatch-rules-") as scratch:
        Store(Path(scratch), engine=engine).close()
    return engine


def cmd_rules_check(args: argparse.Namespace) -> int:
    engine = _checked_engine(args, list(args.files), strict=False)  # (it lists them all)
    for error in engine.errors:
        print(f"vpcwatch: {visible(error)}", file=sys.stderr)
    print(f"{len(engine.rules)} rules valid, {len(engine.errors)} rejected")
    return EXIT_FAILED if engine.errors else EXIT_OK


def cmd_rules_list(args: argparse.Namespace) -> int:
    engine = _checked_engine(args)
    warn_rule_errors(engine)
    for rule in sorted(engine.rules, key=lambda r: (r.source, -r.level, r.id)):
        window = f"{rule.window}s" if rule.window else "record"
        print(f"{rule.level:>2}  {rule.source:<10} {rule.id:<38} {window:>7}  {rule.title}")
    for derived in parity.RULES:  # not rules: derived from the flows when read
        print(f"{derived.level:>2}  {'vpcflow':<10} {derived.id:<38} {parity.WINDOW:>6}s  "
              f"Wazuh {derived.wazuh_id}: [{derived.action}] per source, destination, service "
              "port, protocol (derived from the flows when read)")
    return EXIT_OK


def cmd_rules_test(args: argparse.Namespace) -> int:
    from core.scan import scan

    engine = _checked_engine(args)
    rule = next((r for r in engine.rules if r.id == args.rule), None)
    if rule is None:
        raise UsageError(f"no loaded rule {args.rule!r}; see vpcwatch rules list")
    check_scan_paths(args.paths)
    with tempfile.TemporaryDirectory(prefix="vpcwatch-rule-test-") as scratch:
        store = Store(Path(scratch), engine=RuleEngine([rule], engine.blocklist))
        try:
            scan(list(args.paths), store, 2**31)
            table = recent_alerts(store, with_parity=False)
        finally:
            store.close()
    print_alerts(table)
    print(f"rule {rule.id}: {table.num_rows} alerts", file=sys.stderr)
    return EXIT_OK
