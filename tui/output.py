"""What the command line prints: alerts as JSON lines, a poll's summary, warnings. Text that
comes from logs goes through ``visible`` (control and bidi characters made visible)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator

import pyarrow as pa

from core.alerts import BATCH_ROWS, alert_documents
from core.events import PollSummary
from core.rules import RuleEngine
from core.safetext import visible
from tui.cli_base import UsageError
from tui.json_lines import json_line


def warn_rule_errors(engine: RuleEngine) -> None:
    """Rules that did not load are named once at start-up; the others run."""
    for error in engine.errors:
        print(f"vpcwatch: rule not loaded: {visible(error)}", file=sys.stderr)


def print_alerts(alerts: pa.Table | Iterable[pa.RecordBatch] | None) -> None:
    """One JSON line per alert, flushed a batch at a time. (A line per write: one write of a
    whole batch that a reader leaving cut short raised no error, so nothing said the output
    was incomplete.)"""
    if alerts is None:
        return
    for batch in alerts.to_batches(BATCH_ROWS) if isinstance(alerts, pa.Table) else alerts:
        for document in alert_documents(batch):
            sys.stdout.write(json_line(document) + "\n")
        sys.stdout.flush()


def report(summary: PollSummary, as_json: bool) -> None:
    for error in summary.errors:
        print(f"vpcwatch: error: {visible(error)}", file=sys.stderr)
    for prefix in summary.blocked_prefixes:
        print(f"vpcwatch: blocked (access denied): {visible(prefix)}", file=sys.stderr)
    if as_json:
        print(json.dumps(summary.as_json()), flush=True)
        return
    objects = ", ".join(f"{count} {status}" for status, count in summary.objects.items())
    print(f"objects: {objects}; records: {summary.records}; bad lines: {summary.bad_lines}; "
          f"events: {summary.events}; alerts: {summary.alerts}; bytes: {summary.bytes}; "
          f"{summary.seconds:.1f} s")


def print_rows(batches: Iterator[pa.RecordBatch], fmt: str) -> None:
    """A query's rows as CSV or JSON lines, a batch at a time (as Python objects too)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    shown = sys.stdout.isatty()  # to a person: log text must not drive the terminal
    columns: list[str] | None = None
    for batch in batches:
        if columns is None:
            columns = batch.schema.names
            if fmt == "json":
                _one_name_each(columns)
            if fmt == "csv":  # (a column's name is the query's text, of anyone's making)
                writer.writerow([visible(c) for c in columns] if shown else columns)
        # (by column, not to_pylist: a self-join gives two columns of one name)
        rows = zip(*(c.to_pylist() for c in batch.columns), strict=True)
        if fmt == "json":  # JSON escapes every control and non-ASCII character
            for row in rows:  # (a write per line: see print_alerts)
                sys.stdout.write(json_line(dict(zip(columns, row, strict=True))) + "\n")
        elif shown:
            writer.writerows([visible(v) if isinstance(v, str) else v for v in row]
                             for row in rows)
        else:
            writer.writerows(rows)


def _one_name_each(columns: list[str]) -> None:
    """A JSON object holds one value per name: a query naming a column twice (a self-join's
    ``srcaddr``, say) printed only the last one's values."""
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        names = ", ".join(visible(name) for name in twice)
        raise UsageError(f"--format json: the query names {names} more than once; give each "
                         "column its own name (AS ...), or use --format csv")
