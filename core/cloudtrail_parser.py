"""CloudTrail log objects (``{"Records": [...]}``) into an Arrow table of events.

Every string in a record was chosen by whoever made the API call: it is stored as-is and
must be treated as untrusted text by whatever shows it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from core.decompress import CorruptObject

EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", pa.timestamp("s")),  # UTC
        ("event_source", pa.string()),
        ("event_name", pa.string()),
        ("aws_region", pa.string()),
        ("source_ip", pa.string()),
        ("user_agent", pa.string()),
        ("user_arn", pa.string()),
        ("user_type", pa.string()),
        ("account_id", pa.string()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("record", pa.string()),
    ]
)


class ParsedEvents:
    def __init__(self, table: pa.Table, bad_reasons: Counter[str]):
        self.table = table
        self.bad_reasons = bad_reasons
        self.bad_lines = sum(bad_reasons.values())


def parse_cloudtrail(data: bytes) -> ParsedEvents:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptObject(f"not a CloudTrail JSON document: {exc}") from None
    except RecursionError:
        raise CorruptObject("not a CloudTrail JSON document: nested too deeply") from None
    records = document.get("Records") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise CorruptObject('not a CloudTrail log: no "Records" list')
    rows: list[dict[str, Any]] = []
    bad: Counter[str] = Counter()
    seen: set[str] = set()
    for record in records:
        row, reason = _event_row(record)
        if reason:
            bad[reason] += 1
        elif row["event_id"] not in seen:  # the same event may be delivered twice
            seen.add(row["event_id"])
            rows.append(row)
    return ParsedEvents(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), bad)


def _event_row(record: object) -> tuple[dict[str, Any], str | None]:
    if not isinstance(record, dict):
        return {}, "record is not a JSON object"
    try:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
    except UnicodeEncodeError:  # (JSON's \ud800 escapes decode to lone surrogates)
        return {}, "record holds text that is not Unicode (a lone surrogate)"
    except RecursionError:
        return {}, "record is nested too deeply"
    event_id = record.get("eventID")
    if not isinstance(event_id, str) or not event_id:
        event_id = record_hash(record)
    try:
        when = datetime.fromisoformat(str(record.get("eventTime")).replace("Z", "+00:00"))
        when = when.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # (year 1 at +01:00 is before the year 1 in UTC)
        return {}, "record has no valid eventTime"
    identity = record.get("userIdentity")
    identity = identity if isinstance(identity, dict) else {}
    return {
        "event_id": event_id,
        "event_time": when,
        "event_source": _text(record.get("eventSource")),
        "event_name": _text(record.get("eventName")),
        "aws_region": _text(record.get("awsRegion")),
        "source_ip": _text(record.get("sourceIPAddress")),
        "user_agent": _text(record.get("userAgent")),
        "user_arn": _text(identity.get("arn")),
        "user_type": _text(identity.get("type")),
        "account_id": _text(record.get("recipientAccountId") or identity.get("accountId")),
        "error_code": _text(record.get("errorCode")),
        "error_message": _text(record.get("errorMessage")),
        "record": text,
    }, None


# the CloudTrail field each column holds (Wazuh's ``discard_regex field=`` names these)
COLUMN_OF_FIELD = {
    "eventID": "event_id", "eventTime": "event_time", "eventSource": "event_source",
    "eventName": "event_name", "awsRegion": "aws_region", "sourceIPAddress": "source_ip",
    "userAgent": "user_agent", "userIdentity.arn": "user_arn", "userIdentity.type": "user_type",
    "recipientAccountId": "account_id", "errorCode": "error_code",
    "errorMessage": "error_message",
}


def record_hash(record: dict[str, Any]) -> str:
    """The id of a record without ``eventID`` (format 1.0, as in AWS's own examples): a hash
    of its canonical JSON, so a second delivery of it is recognised as the same event."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)
