"""What the command line prints: alerts as JSON lines, a poll's summary, warnings. Text that
comes from logs goes through ``visible`` (control and bidi characters made visible)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from core.alerts import BATCH_ROWS, alert_documents
from core.events import PollSummary
from core.rules import RuleEngine
from core.safetext import visible


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
            sys.stdout.write(json.dumps(document, default=json_value) + "\n")
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


def json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)
