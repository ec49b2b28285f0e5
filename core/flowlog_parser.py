"""Flow-log objects (text with a header line, or Parquet) into typed Arrow tables.

Text objects are parsed by pyarrow's CSV reader, never by a Python loop per line. The fast
path reads typed columns directly; when a value does not convert (a repeated header, a word
in a number column) the object is read again as text and the rows that do not fit are
counted per reason and dropped, all with vectorised compute.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.decompress import CorruptObject
from core.fields import (
    DEFAULT_FORMAT,
    INT32_FIELDS,
    KNOWN_FIELDS,
    MAX_EPOCH_SECONDS,
    arrow_type,
    column_name,
    field_name,
    field_problem,
)

MAX_FIELDS = 128
MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a date can show
_COUNT = (0, 2**63 - 1)
# The values a record's fields can take (store column names); a row outside them is a bad line
_RANGES = {"srcport": (0, 65535), "dstport": (0, 65535), "protocol": (0, 255),
           "packets": _COUNT, "bytes": _COUNT, "start": (0, MAX_TIME), "end": (0, MAX_TIME)}
_INTEGER = r"^-?[0-9]{1,19}$"
_BLOCK_SIZE = 8 << 20
# A line longer than this is no record (all of AWS's fields take under 2 KiB): a bad line (one
# much longer than the CSV reader's block fails the whole read; for Parquet, a value that long)
MAX_LINE = 1 << 20
_TOO_LONG = f"a line longer than {MAX_LINE >> 20} MiB"
_NOT_SPACE = re.compile(rb"\S")


@dataclass
class ParsedFlows:
    """The rows of one object, and the lines that were not rows."""

    table: pa.Table
    bad_lines: int = 0
    bad_reasons: Counter[str] = field(default_factory=Counter)


def parse_text(data: bytes) -> ParsedFlows:
    """Parse a flow-log text object whose first line is its header."""
    header_end = data.find(b"\n")
    first_line = data if header_end < 0 else data[:header_end]
    if first_line.endswith(b"\r") and header_end >= 0:  # CRLF ends: one pass drops them all
        return parse_text(data.replace(b"\r\n", b"\n"))
    first_line = first_line.rstrip(b"\r")  # (one line, ended by a lone CR)
    fields = _header_fields(first_line)
    body: bytes | memoryview = data  # a view, not a copy, of the records
    if fields is None:
        fields = list(DEFAULT_FORMAT)  # no header: only the default format can be assumed
    elif header_end < 0:
        body = b""
    elif data.find(first_line.strip(), header_end) >= 0:
        body = _drop_repeated_headers(data[header_end + 1 :], first_line.strip())
    else:
        body = memoryview(data)[header_end + 1 :]
    if not _NOT_SPACE.search(body):
        return ParsedFlows(_empty_table(fields))
    parsed = _read(body, fields)
    if parsed.bad_lines and _irregular_whitespace(bytes(body)):
        # AWS separates fields by one space, but its own examples hold double spaces, which
        # the CSV reader sees as empty fields. Clean data never pays for this second pass.
        parsed = _read(_normalise_whitespace(bytes(body)), fields)
    parsed.table = _seconds(_rename(parsed.table))
    return _in_range(parsed)


def _read(body: bytes | memoryview, fields: list[str]) -> ParsedFlows:
    try:
        return _read_typed(body, fields)
    except pa.ArrowInvalid:
        pass
    try:
        return _read_checked(body, fields)
    except pa.ArrowInvalid:
        text, dropped = _record_lines(bytes(body))
        if not dropped:
            raise
    if _NOT_SPACE.search(text):
        parsed = _read_checked(text, fields)  # (a line that cannot be a record is a bad line)
    else:
        parsed = ParsedFlows(pa.table({name: pa.array([], arrow_type(name)) for name in fields}))
    parsed.bad_reasons.update(dropped)
    parsed.bad_lines += dropped.total()
    return parsed


def _record_lines(body: bytes) -> tuple[bytes, Counter[str]]:
    """The lines of ``body`` that may be records, and how many are not, by reason: text
    that is not UTF-8, and a line longer than ``MAX_LINE`` (the CSV reader fails on a line
    that spans more than two of its blocks: found by an adversarial test, one line of 20
    MiB quarantined its whole object as an internal error)."""
    kept, dropped = [], Counter[str]()
    for line in body.split(b"\n"):
        if len(line) > MAX_LINE:
            dropped[_TOO_LONG] += 1
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            dropped["not UTF-8 text"] += 1
            continue
        kept.append(line)
    return b"\n".join(kept), dropped


def parse_parquet(data: bytes, max_size: int = 2**30) -> ParsedFlows:
    table = _parquet_table(data, max_size)
    columns = {}
    for name in table.column_names:
        aws_name = field_name(name.lower())
        if (problem := field_problem(aws_name)) is not None:
            raise CorruptObject(f"Parquet column {name[:80]!r} {problem}")
        if column_name(aws_name) in columns:
            raise CorruptObject(f"Parquet column {name[:80]!r} names a field twice")
        try:
            columns[column_name(aws_name)] = table[name].cast(arrow_type(aws_name))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise CorruptObject(f"Parquet column {name!r} has the wrong type: {exc}") from None
    return _in_range(ParsedFlows(_seconds(pa.table(columns))))


PARQUET_BATCH_ROWS = 65_536


def _parquet_table(data: bytes, max_size: int) -> pa.Table:
    """The rows of a Parquet object, read a batch at a time and refused once they take more
    than ``max_size`` bytes (found by an adversarial test: an 87 KB file of repeated values
    expanded to 5,000,000 rows and 1.35 GB, past a max_object_size of 1 MiB: Parquet's
    decompression bomb, as gzip has its own)."""
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        batches, size = [], 0
        for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            size += batch.nbytes
            if size > max_size:
                raise CorruptObject(f"expands past {max_size} bytes (max_object_size)")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=file.schema_arrow)
    except (pa.ArrowException, OSError) as exc:
        raise CorruptObject(f"unreadable Parquet: {exc}") from None


def _header_fields(line: bytes) -> list[str] | None:
    """The field names of a header line, None when the line is data, CorruptObject if neither."""
    try:
        words = line.decode("ascii").split()
    except UnicodeDecodeError:
        raise CorruptObject("the first line is not a flow-log header (not ASCII)") from None
    if not words:
        raise CorruptObject("the first line is empty: no flow-log header")
    if words[0].isascii() and words[0].isdigit() and len(words) == len(DEFAULT_FORMAT):
        return None
    if len(words) > MAX_FIELDS:
        raise CorruptObject(f"the header has {len(words)} fields (at most {MAX_FIELDS})")
    for word in words:
        if (problem := field_problem(word)) is not None:
            raise CorruptObject(f"the header's field {word[:80]!r} {problem}")
    if len(set(words)) != len(words):
        raise CorruptObject("the header names a field twice")
    if not set(words) & set(KNOWN_FIELDS):  # (text whose first words look like names)
        raise CorruptObject("the first line names no flow-log field: not a flow-log header")
    return words


def _drop_repeated_headers(body: bytes, header: bytes) -> bytes:
    # Concatenated objects repeat the header; they are not records and not bad lines.
    return re.sub(rb"(?m)^[ \t]*" + re.escape(header) + rb"[ \t\r]*(?:\n|$)", b"", body)


def _irregular_whitespace(body: bytes) -> bool:
    return any(mark in body for mark in (b"  ", b"\t", b"\r", b"\n ", b" \n"))


def _normalise_whitespace(body: bytes) -> bytes:
    body = re.sub(rb"[ \t\r]+", b" ", body)
    return re.sub(rb"(?m)^ | $", b"", body)


MAX_BAD_ROWS = 1_000_000  # lines of the wrong field count in one object, then it is refused


class _BadRows:
    """Counts the lines whose field count does not match the header (pyarrow calls it, once
    a line: about 14 µs each). Past MAX_BAD_ROWS the read stops, and ``read_csv`` raises
    CorruptObject: a gzip of a billion such lines within max_object_size would otherwise
    hold a parser for hours (found by an adversarial test: 3,000,000 took 40 s)."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._count = 0

    def __call__(self, row: pacsv.InvalidRow) -> str:
        with self._lock:
            if self._count >= MAX_BAD_ROWS:
                return "error"
            self._count += 1
            self.reasons[f"expected {row.expected_columns} fields, got {row.actual_columns}"] += 1
        return "skip"

    def read_csv(self, body: bytes | memoryview, *options: object) -> pa.Table:
        """``pacsv.read_csv`` with these options; CorruptObject once past MAX_BAD_ROWS."""
        try:
            return pacsv.read_csv(pa.py_buffer(body), *options)  # type: ignore[arg-type]
        except pa.ArrowInvalid:
            if self._count >= MAX_BAD_ROWS:
                raise CorruptObject(f"more than {MAX_BAD_ROWS} lines of another number of "
                                    "fields than the header's: not a flow log") from None
            raise


def _csv_options(fields: list[str], bad_rows: _BadRows) -> tuple[pacsv.ReadOptions,
                                                                 pacsv.ParseOptions]:
    read = pacsv.ReadOptions(column_names=fields, block_size=_BLOCK_SIZE, use_threads=True)
    parse = pacsv.ParseOptions(
        delimiter=" ",
        quote_char=False,
        double_quote=False,
        escape_char=False,
        newlines_in_values=False,
        ignore_empty_lines=True,
        invalid_row_handler=bad_rows,
    )
    return read, parse


def _read_typed(body: bytes | memoryview, fields: list[str]) -> ParsedFlows:
    bad_rows = _BadRows()
    read, parse = _csv_options(fields, bad_rows)
    convert = pacsv.ConvertOptions(
        column_types={name: arrow_type(name) for name in fields},
        null_values=["-"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    table = bad_rows.read_csv(body, read, parse, convert)
    return ParsedFlows(table, sum(bad_rows.reasons.values()), bad_rows.reasons)


def _read_checked(body: bytes | memoryview, fields: list[str]) -> ParsedFlows:
    """Read every column as text, drop (and count) rows with a value that is not a number."""
    bad_rows = _BadRows()
    read, parse = _csv_options(fields, bad_rows)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in fields},
        null_values=["-"],
        strings_can_be_null=True,
    )
    table = bad_rows.read_csv(body, read, parse, convert)
    reasons = bad_rows.reasons
    keep = pa.array([True] * table.num_rows, pa.bool_())
    for name in fields:
        kind = arrow_type(name)
        if kind == pa.string():
            continue
        column = table[name]
        ok = pc.or_kleene(pc.is_null(column), _fits_int64(column))
        ok = pc.fill_null(ok, True)
        as_int = pc.cast(pc.if_else(ok, column, None), pa.int64())
        if name in INT32_FIELDS:
            ok = pc.and_(ok, pc.fill_null(pc.less_equal(pc.abs(as_int), 2**31 - 1), True))
        newly_bad = pc.sum(pc.and_(keep, pc.invert(ok))).as_py() or 0
        if newly_bad:
            reasons[f"{name} is not a {'32' if name in INT32_FIELDS else '64'}-bit integer"] += (
                newly_bad
            )
        keep = pc.and_(keep, ok)
    table = table.filter(keep)
    table = pa.table({name: table[name].cast(arrow_type(name)) for name in fields})
    return ParsedFlows(table, sum(reasons.values()), reasons)


def _fits_int64(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Is each text an integer that a 64-bit column holds? (19 digits may not fit: compared
    as text with the largest, digit for digit.)"""
    digits = pc.utf8_ltrim(column, characters="-")
    return pc.and_(pc.match_substring_regex(column, _INTEGER),
                   pc.or_(pc.less(pc.utf8_length(digits), 19),
                          pc.less_equal(digits, str(2**63 - 1))))


def _in_range(parsed: ParsedFlows) -> ParsedFlows:
    """Drop (and count) the rows with a value no flow record has: a negative count, a port
    or protocol out of its range, a time before 1970 or after the year 9999 (which no date
    can show, and which would keep its segment from ever leaving by retention), a text
    longer than ``MAX_LINE``."""
    table, keep = parsed.table, None
    for name, (low, high) in _RANGES.items():
        if name not in table.column_names:
            continue
        column = table[name]
        bounds = pc.min_max(column).as_py()
        if bounds["min"] is None or (bounds["min"] >= low and bounds["max"] <= high):
            continue  # (every row: one pass over the column, no filter)
        ok = pc.fill_null(pc.and_(pc.greater_equal(column, low), pc.less_equal(column, high)),
                          True)
        keep = _drop(parsed, keep, ok, f"{field_name(name)} is out of range ({low} to {high})")
    lengths = [pc.fill_null(pc.binary_length(table[name]), 0) for name in table.column_names
               if pa.types.is_string(table[name].type)]  # (read from the offsets: ~2 ms)
    if sum(pc.max(column).as_py() or 0 for column in lengths) > MAX_LINE:  # (any row may)
        total = functools.reduce(pc.add, lengths)
        keep = _drop(parsed, keep, pc.less_equal(total, MAX_LINE), _TOO_LONG)
    if keep is not None:
        parsed.table = table.filter(keep)
    return parsed


def _drop(parsed: ParsedFlows, keep: pa.ChunkedArray | None, ok: pa.ChunkedArray,
          reason: str) -> pa.ChunkedArray:
    """Count the rows that ``ok`` refuses and ``keep`` kept, as bad lines for ``reason``;
    the rows kept after it."""
    bad = ok if keep is None else pc.or_(pc.invert(keep), ok)
    newly = pc.sum(pc.invert(bad)).as_py() or 0
    parsed.bad_reasons[reason] += newly
    parsed.bad_lines += newly
    return ok if keep is None else pc.and_(keep, ok)


def _rename(table: pa.Table) -> pa.Table:
    return table.rename_columns([column_name(name) for name in table.column_names])


def _seconds(table: pa.Table) -> pa.Table:
    """Times above 2^31-1 are milliseconds: normalise them to seconds."""
    for name in ("start", "end"):
        if name not in table.column_names:
            continue
        index = table.column_names.index(name)
        column = table[name]
        is_ms = pc.greater(column, MAX_EPOCH_SECONDS)
        if pc.any(is_ms).as_py():
            column = pc.if_else(is_ms, pc.divide(column, 1000), column)
            table = table.set_column(index, name, column)
    return table


def _empty_table(fields: list[str]) -> pa.Table:
    return pa.table(
        {column_name(name): pa.array([], arrow_type(name)) for name in fields}
    )

