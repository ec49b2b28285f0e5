"""Reading one downloaded object: decompress, parse by kind, apply the bucket's discard filter."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from core.cloudtrail_parser import parse_cloudtrail
from core.decompress import CorruptObject, maybe_gunzip
from core.fields import column_name
from core.flowlog_parser import parse_parquet, parse_text
from core.layouts import Kind, delivery_time
from core.objects import ObjectRef, ObjectResult, Status

NOT_A_LOG = "not a flow-log or CloudTrail file"


def not_a_log(ref: ObjectRef) -> ObjectResult:
    """The result for an object whose name is none of a log's: skipped, never read."""
    return ObjectResult(ref, Status.SKIPPED, attempts=0, error=NOT_A_LOG)


def read_object(
    ref: ObjectRef,
    data: bytes,
    max_size: int,
    discard_field: str | None = None,
    discard_regex: re.Pattern[str] | None = None,
) -> ObjectResult:
    """Turn an object's bytes into rows. Raises CorruptObject when the content is unreadable."""
    if ref.kind is Kind.PARQUET:
        if len(data) > max_size:
            raise CorruptObject(f"larger than {max_size} bytes (max_object_size): not read")
        parsed = parse_parquet(data, max_size)
        result = ObjectResult(ref, Status.DONE, flows=parsed.table)
    elif ref.kind is Kind.TEXT:
        parsed = parse_text(maybe_gunzip(data, ref.key, max_size))
        result = ObjectResult(ref, Status.DONE, flows=parsed.table,
                              bad_lines=parsed.bad_lines, bad_reasons=parsed.bad_reasons)
    elif ref.kind is Kind.CLOUDTRAIL:
        events = parse_cloudtrail(maybe_gunzip(data, ref.key, max_size))
        result = ObjectResult(ref, Status.DONE, events=events.table,
                              bad_lines=events.bad_lines, bad_reasons=events.bad_reasons)
    else:
        return not_a_log(ref)
    if result.flows is not None:
        result.flows = _with_key_context(result.flows, ref)
    if discard_field and discard_regex:
        _discard(result, column_name(discard_field), discard_regex)
    return result


def _with_key_context(table: pa.Table, ref: ObjectRef) -> pa.Table:
    """What the object's key says and a custom format may leave out: the region, and for a
    format without ``start``/``end`` the delivery time (the key's 5-minute timestamp), so
    its records still have a place in windows and on the chart."""
    if "region" not in table.column_names and ref.region:
        # (plain text, as the parsers give the region field of formats that have it)
        table = table.append_column("region", pa.repeat(pa.scalar(ref.region), table.num_rows))
    delivered = delivery_time(ref.key)
    if delivered is not None:
        for name in ("start", "end"):
            if name not in table.column_names:
                table = table.append_column(name, pa.repeat(delivered, table.num_rows)
                                            .cast(pa.int64()))
    return table


def _discard(result: ObjectResult, column: str, pattern: re.Pattern[str]) -> None:
    """Drop the rows whose ``column`` matches ``pattern`` (Wazuh's discard_regex)."""
    for attribute in ("flows", "events"):
        table: pa.Table | None = getattr(result, attribute)
        if table is None or column not in table.column_names:
            continue
        text = table[column].cast(pa.string())
        drop = pc.fill_null(pc.match_substring_regex(text, pattern.pattern), False)
        kept = table.filter(pc.invert(drop))
        result.discarded += table.num_rows - kept.num_rows
        setattr(result, attribute, kept)
