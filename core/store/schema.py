"""The DuckDB file's tables, its schema version, and the upgrade of older stores."""

from __future__ import annotations

import functools
import logging

import duckdb
import pyarrow as pa

from core.fields import KNOWN_FIELDS, ORIGIN_COLUMNS, column_name, sql_type
from core.rules import ALERTS_SCHEMA, CONTEXT, parity
from core.store.transaction import transaction

log = logging.getLogger(__name__)
# 1: the first; 2: parity alerts derived when read, not stored; alerts carry their context;
# 3: traffic summaries (``summaries``: a store opened for writing summarises its segments)
SCHEMA_VERSION = 3

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS segments (
name VARCHAR, records BIGINT, min_start BIGINT, max_end BIGINT, created TIMESTAMP
);
CREATE TABLE IF NOT EXISTS cloudtrail (
event_id VARCHAR, event_time TIMESTAMP, event_source VARCHAR, event_name VARCHAR,
aws_region VARCHAR, source_ip VARCHAR, user_agent VARCHAR, user_arn VARCHAR,
user_type VARCHAR, account_id VARCHAR, error_code VARCHAR, error_message VARCHAR,
record VARCHAR, bucket VARCHAR, object_key VARCHAR
);
CREATE TABLE IF NOT EXISTS objects (
bucket VARCHAR, key VARCHAR, etag VARCHAR, size BIGINT, kind VARCHAR,
account_id VARCHAR, region VARCHAR, key_day DATE, status VARCHAR, attempts INTEGER,
last_error VARCHAR, records BIGINT, bad_lines BIGINT, bad_reasons VARCHAR,
discarded BIGINT, first_seen TIMESTAMP, updated TIMESTAMP
);
CREATE TABLE IF NOT EXISTS traffic_minutes (
segment VARCHAR, minute BIGINT, account_id VARCHAR, vpc_id VARCHAR, interface_id VARCHAR,
action VARCHAR, flows BIGINT, packets BIGINT, bytes BIGINT
);
CREATE TABLE IF NOT EXISTS prefixes (
bucket VARCHAR, prefix VARCHAR, status VARCHAR, error VARCHAR, updated TIMESTAMP
);
"""

# The flows view always has every known column, whatever the segments hold.
EMPTY_FLOWS = "SELECT " + ", ".join(
    [f'NULL::{sql_type(f)} AS "{column_name(f)}"' for f in KNOWN_FIELDS]
    + [f"NULL::VARCHAR AS {name}" for name in ORIGIN_COLUMNS]
) + " WHERE false"
NOW = "(now() AT TIME ZONE 'UTC')"


@functools.cache
def _flow_columns() -> pa.Schema:
    return duckdb.connect().sql(EMPTY_FLOWS).to_arrow_table().schema


def with_every_column(flows: pa.Table, words: frozenset[str] | None = None) -> pa.Table:
    """``flows`` with a column of NULLs for each known field it lacks: what the rules' SQL
    may name, without a view (binding one costs every query that reads it). The columns of
    one type share one array of NULLs (a 500,000-row commit's 46 took 50 ms apart).
    ``words``: only the fields named there (lower case), for SQL that names no other: each
    column costs every query that reads the table when it is planned (a 10-record commit's
    rule queries, 2.1 against 1.3 ms each with 44 columns of NULLs or none)."""
    nulls: dict[pa.DataType, pa.Array] = {}
    for field in _flow_columns():
        if field.name not in flows.column_names and (words is None or field.name in words):
            if field.type not in nulls:
                nulls[field.type] = pa.nulls(flows.num_rows, field.type)
            flows = flows.append_column(field, nulls[field.type])
    return flows


class SchemaError(Exception):
    """The store was written by another version of vpcwatch than this one can use."""


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Create what is missing and bring an older store up to SCHEMA_VERSION."""
    with transaction(con):
        found = version(con) if _has_meta(con) else None
        con.execute(TABLES)
        con.execute(ALERTS_SCHEMA)
        if found is None:
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            return
        check_readable(found)
        if found < 2:
            _upgrade_to_2(con)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                    [str(SCHEMA_VERSION)])


def check_readable(found: int, read_only: bool = False) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaError(f"written by a newer vpcwatch (schema {found}; this one reads "
                          f"{SCHEMA_VERSION} and older)")
    if read_only and found < SCHEMA_VERSION:
        raise SchemaError(f"written by an older vpcwatch (schema {found}): open it once for "
                          "writing to upgrade it (vpcwatch collect, scan or the app)")


def _upgrade_to_2(con: duckdb.DuckDBPyConnection) -> None:
    """Parity alerts leave the table (they are derived from the flows now); detections stay
    and gain their context columns (NULL for alerts raised before)."""
    for column in (*CONTEXT, "details"):
        con.execute(f"ALTER TABLE alerts ADD COLUMN IF NOT EXISTS {column} VARCHAR")
    removed = con.execute("DELETE FROM alerts WHERE list_contains(?, rule_id)",
                          [sorted(parity.IDS)]).fetchall()[0][0]
    log.info("store upgraded to schema 2: %d parity alert rows removed (now derived "
             "from the flows when read)", removed)


def _has_meta(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'meta' "
                            "AND NOT temporary").fetchall()[0][0])


def version(con: duckdb.DuckDBPyConnection) -> int:
    """The store's schema version (a store without one predates the versions: 1)."""
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return int(rows[0][0]) if rows else 1
