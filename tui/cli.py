"""The ``vpcwatch`` command line: the headless contract scripts, servers and tests rely on.

Exit codes: 0 done, 2 bad configuration or usage, 1 anything else. Expected failures print
one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from core.alerts import alert_batches, alert_documents
from core.config import (
    ConfigError,
    default_config_path,
    default_state_dir,
    load_config,
)
from core.decompress import CorruptObject
from core.events import AlertsChanged
from core.names import parse_duration
from core.priority import yield_to_collector
from core.process_limits import data_growth_bounded
from core.rules import BlocklistError, parity
from core.safetext import visible
from core.sandbox import (
    SANDBOX_GROWTH,
    TIMEOUT,
    QueryStopped,
    ReadOnlyError,
    Sandbox,
    check_read_only,
    tables_named,
)
from core.store import Store, StoreError, open_store
from core.store.opening import published_state
from core.store.segments import read_failure
from core.store.statedir import StateDirBusy, StateDirError, name_process
from core.wazuh_import import WazuhImportError, import_wazuh
from tui.cli_base import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    check_scan_paths,
    engine_of,
)
from tui.collect_cli import collect, retry_quarantined
from tui.logs import log_to_file, log_to_stderr
from tui.output import print_alerts, print_rows, report, warn_rule_errors
from tui.rules_cli import cmd_rules_check, cmd_rules_list, cmd_rules_test


def _seconds(text: str) -> float:
    """A positive number of seconds, at most a day (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 86400:  # (NaN compares false)
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to "
                                         "86400 (a day)")
    return value


def _count(text: str) -> int:
    """A number of rows, 0 or more (argparse type)."""
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rows (0 or more)")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    # every file vpcwatch makes is its user's alone (the store, segments, logs), whatever the
    # umask (022 made them readable by all, protected only by the state directory's mode)
    umask = os.umask(0o077)
    try:
        return _main(argv)
    finally:
        os.umask(umask)
        name_process(None)


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.app_config or args.app_no_mouse:
        if args.command not in (None, "tui"):
            parser.error("--config and --no-mouse before a command are the app's: put them "
                         f"after `{args.command}`")
        args.config = args.config or args.app_config
        args.no_mouse = args.no_mouse or args.app_no_mouse
    name_process(f"vpcwatch {args.command or 'tui'}")  # (who holds the state directory)
    log_to_stderr(args.verbose)
    if sys.stdout is None and not (args.command == "collect" and not args.once):
        # (Python leaves no sys.stdout when the shell closed it, `>&-`, and print() then
        # writes nothing: `alerts` printed nothing and exited 0; found by an adversarial test)
        print("vpcwatch: standard output is closed: nothing could be printed", file=sys.stderr)
        return EXIT_FAILED
    try:
        return int(args.run(args))
    except (UsageError, ConfigError, WazuhImportError, BlocklistError) as exc:
        print(f"vpcwatch: {visible(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader left (`| head -1`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the final flush)
        return EXIT_BROKEN_PIPE
    except (StateDirError, StoreError, CorruptObject, OSError) as exc:
        print(f"vpcwatch: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except duckdb.Error as exc:  # the store failed under us (disk full, damaged file)
        print(f"vpcwatch: store error: {visible(str(exc).splitlines()[0])}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line; -vv shows the traceback
        logging.getLogger("vpcwatch").debug("internal error", exc_info=True)
        print(f"vpcwatch: internal error: {visible(repr(exc))} (run with -vv for details)",
              file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpcwatch", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    parser.add_argument("--version", action="version",
                        version=f"vpcwatch {importlib.metadata.version('vpcwatch')}")
    parser.set_defaults(run=cmd_tui, config=None, no_mouse=False)
    # `vpcwatch --config FILE`: the app's options without `tui` (their own names: a command's
    # defaults would overwrite them, and before any other command they are refused)
    parser.add_argument("--config", dest="app_config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-mouse", dest="app_no_mouse", action="store_true",
                        help=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands (default: tui)", metavar="COMMAND",
                                     dest="command")

    tui = commands.add_parser("tui", help="the terminal app (what plain `vpcwatch` runs)")
    _app_options(tui)
    tui.set_defaults(run=cmd_tui)

    collect = commands.add_parser("collect", help="poll the configured buckets into the store")
    collect.add_argument("--config", required=True, type=Path, help="the TOML configuration")
    collect.add_argument("--once", action="store_true", help="one full poll, then exit")
    collect.add_argument("--json", action="store_true", help="end with a JSON summary line")
    _retry_option(collect)
    collect.set_defaults(run=cmd_collect)

    query = commands.add_parser("query", help="read-only SQL against the store")
    _store_options(query)
    query.add_argument("--format", choices=("csv", "json"), default="csv",
                       help="csv with a header (default), or one JSON object per line")
    query.add_argument("--timeout", type=_seconds, default=TIMEOUT, metavar="SECONDS",
                       help=f"stop the query after this long (default {TIMEOUT:g})")
    query.add_argument("sql", help='one query, for example: "SELECT count(*) FROM flows"; '
                       "it reads the store's tables and nothing else (see README)")
    query.set_defaults(run=cmd_query)

    scan = commands.add_parser("scan", help="read local log files and folders into the store")
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    _store_options(scan)
    scan.add_argument("--json", action="store_true",
                      help="print the alerts raised, then a JSON summary line")
    _retry_option(scan)
    scan.set_defaults(run=cmd_scan)

    alerts = commands.add_parser("alerts", help="alerts, newest first (with the parity alerts "
                                 "derived from the flows at --min-level 4 or lower)")
    _store_options(alerts)
    alerts.add_argument("--since", default=None, help="only alerts seen within this long (1h, 2d)")
    alerts.add_argument("--min-level", type=int, default=0, choices=range(16), metavar="N",
                        help="only alerts of this level or above (0-15)")
    alerts.add_argument("--limit", type=_count, default=None, help="at most this many")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.set_defaults(run=cmd_alerts)

    watch = commands.add_parser("watch", help="poll forever and show alerts as they commit")
    watch.add_argument("--config", required=True, type=Path, help="the TOML configuration")
    watch.add_argument("--headless", action="store_true",
                       help="print each new or updated alert as one JSON line on stdout")
    watch.add_argument("--min-level", type=int, default=None, choices=range(16), metavar="N",
                       help="headless: only alerts of this level or above; 4 or lower also "
                            "prints the parity alerts each commit touched (default: every "
                            "detection, no parity alerts)")
    _no_mouse(watch)
    watch.set_defaults(run=cmd_watch)

    rules = commands.add_parser("rules", help="check, list or try detection rules")
    rule_commands = rules.add_subparsers(title="rules commands", metavar="ACTION",
                                         required=True)  # (without: the app started)
    check = rule_commands.add_parser("check", help="validate rule files (default: the config's)")
    check.add_argument("files", nargs="*", type=Path, metavar="FILE")
    check.add_argument("--config", type=Path, help="check the rules this configuration loads")
    check.set_defaults(run=cmd_rules_check)
    listing = rule_commands.add_parser("list", help="the rules that are loaded")
    listing.add_argument("--config", type=Path, help="the configuration (default rules only)")
    listing.set_defaults(run=cmd_rules_list)
    trial = rule_commands.add_parser("test", help="run one rule on local files, print its alerts")
    trial.add_argument("rule", metavar="RULE")
    trial.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    trial.add_argument("--config", type=Path, help="where to find the rule (default rules only)")
    trial.set_defaults(run=cmd_rules_test)

    wazuh = commands.add_parser("import-wazuh", help="print TOML for an ossec.conf's aws-s3 blocks")
    wazuh.add_argument("ossec_conf", type=Path, metavar="OSSEC_CONF")
    wazuh.set_defaults(run=cmd_import_wazuh)

    demo = commands.add_parser("demo", help="collect from an embedded S3 with generated traffic")
    demo.add_argument("--polls", type=int, default=0, help="stop after N polls (0: run until ^C)")
    demo.add_argument("--state-dir", type=Path, help="where the demo store goes (default: temp)")
    demo.add_argument("--headless", action="store_true",
                      help="print what each poll found instead of running the app")
    _no_mouse(demo)
    demo.set_defaults(run=cmd_demo)
    return parser


def _app_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=f"default: {default_config_path()}")
    _no_mouse(parser)


def _no_mouse(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-mouse", action="store_true", help="the app ignores the mouse")


def _store_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", type=Path, help="use the state_dir of this configuration")
    group.add_argument("--state-dir", type=Path, help=f"default: {default_state_dir()}")


def _state_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "config", None):
        return load_config(args.config).general.state_dir
    return args.state_dir or default_state_dir()


# -- commands -------------------------------------------------------------------------------


def _retry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry-quarantined", action="store_true",
                        help="read the quarantined objects again (once their cause is mended: "
                        "a setting, a newer vpcwatch)")


def cmd_collect(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return collect(config, once=args.once, as_json=args.json, retry=args.retry_quarantined)


def cmd_query(args: argparse.Namespace) -> int:
    try:  # (before the store's tables are copied for it)
        check_read_only(args.sql)
    except ReadOnlyError as exc:
        raise UsageError(f"query failed: {exc}") from None
    with open_store(_state_dir(args), read_only=True, tables=tables_named(args.sql)) as store:
        _yield_if_attached(store)
        sandbox = Sandbox(store)
        try:
            with data_growth_bounded(SANDBOX_GROWTH), \
                    contextlib.closing(sandbox.batches(args.sql, args.timeout)) as batches:
                print_rows(batches, args.format)
        except duckdb.IOException as exc:  # (not the query's fault: a file, the disk)
            raise StoreError(f"query failed: {read_failure(str(exc))}") from None
        except (ReadOnlyError, QueryStopped, duckdb.Error) as exc:
            raise UsageError(f"query failed: {read_failure(str(exc))}") from None
        finally:
            sandbox.close()
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    from core.scan import scan

    check_scan_paths(args.paths)
    config = load_config(args.config) if args.config else None
    max_size = config.general.max_object_size if config else 2**30
    engine = engine_of(config)
    alerts: list[pa.Table | None] = []
    with open_store(_state_dir(args), engine=engine) as store:
        warn_rule_errors(engine)
        retry_quarantined(store, args.retry_quarantined)
        summary = scan(list(args.paths), store, max_size,
                       lambda stats: alerts.append(stats.alerts))
    if args.json:
        for table in alerts:
            print_alerts(table)
    report(summary, args.json)
    return EXIT_FAILED if summary.incomplete else EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = int(time.time() - parse_duration(args.since))
        except ValueError:
            message = f"--since {args.since!r}: expected a duration such as 1h or 2d"
            raise UsageError(message) from None
    with open_store(_state_dir(args), read_only=True, tables=["alerts"]) as store:
        _yield_if_attached(store)
        batches = alert_batches(store, since, args.min_level, args.limit)
        if args.json:
            print_alerts(batches)
            return EXIT_OK
        for batch in batches:
            for alert in alert_documents(batch):
                where = " ".join(str(alert[k]) for k in ("srcaddr", "dstaddr") if alert.get(k))
                print(f"{alert['last_seen']}  {alert['level']:>2}  {alert['rule_id']:<34} "
                      f"{visible(alert['title'])}  [{alert['count']}]  {visible(where)}")
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import run_app

    path = args.config or default_config_path()
    if not path.exists():
        raise UsageError(f"no configuration at {path}: pass --config FILE (see "
                         "config.example.toml), or try `vpcwatch demo`")
    config = load_config(path)
    engine = engine_of(config)
    state_dir = config.general.state_dir
    try:
        with open_store(state_dir, engine=engine) as store:
            warn_rule_errors(engine)
            with log_to_file(state_dir / "vpcwatch.log"):
                return run_app(store, config, mouse=not args.no_mouse)
    except StateDirBusy as busy:  # a collector runs: attach to it (docs/attach.md)
        held = busy
    with open_store(state_dir, read_only=True, engine=engine, tables=()) as store, \
            log_to_file(state_dir / "vpcwatch.log"):
        if store.attached_to is None:  # the collector just stopped (its lock is free):
            raise held  # the app would collect into a store it cannot write
        yield_to_collector(spare=[threading.main_thread()])  # (the UI: see core/priority.py)
        return run_app(store, config, mouse=not args.no_mouse)


def cmd_watch(args: argparse.Namespace) -> int:
    if not args.headless:
        return cmd_tui(args)
    config = load_config(args.config)
    min_level = args.min_level or 0

    def publish(event: object) -> None:
        if not isinstance(event, AlertsChanged):
            return
        for table in (event.alerts, event.derived):
            if table is not None:
                print_alerts(table.filter(pc.greater_equal(table["level"], min_level)))

    wanted = args.min_level is not None and min_level <= parity.MAX_LEVEL
    parity_level = min_level if wanted else None
    try:
        return collect(config, once=False, as_json=False, publish=publish,
                        parity_level=parity_level)
    except StateDirBusy as busy:  # a collector runs: follow it (docs/attach.md)
        state_dir, owner = config.general.state_dir, busy.owner
        published_state(state_dir, owner)  # (a collector starting: its first publication)
    from tui.watch_attached import follow

    yield_to_collector()
    return follow(state_dir, owner, min_level, parity_level)


def _yield_if_attached(store: Store) -> None:
    """A viewer of a running collector's store never slows it (core/priority.py)."""
    if store.attached_to is not None:
        yield_to_collector()


def cmd_import_wazuh(args: argparse.Namespace) -> int:
    sys.stdout.write(import_wazuh(args.ossec_conf))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from tui.demo import run_demo

    return run_demo(polls=args.polls, state_dir=args.state_dir, headless=args.headless,
                    mouse=not args.no_mouse)


if __name__ == "__main__":
    sys.exit(main())
