"""The Wazuh-parity alerts (80401 ACCEPT, 80402 REJECT), derived from the flows when read.

Wazuh raises one alert per flow; vpcwatch keeps Wazuh's ids and levels but aggregates: one
alert per (source, destination, service port = the lower of the two ports, protocol, action,
10-minute window). These rows summarise flows the store already holds exactly once, so they
are never stored: they are computed from the flows of the range asked for, with the same
columns and the same deterministic id (``md5`` of the key) that a stored alert would have,
plus ``derived = true``. Grouping on the lower port matters: a server's reply goes from its
service port to a new ephemeral port each time, and grouping on ``dstport`` would give one
alert per reply, the flood Wazuh users have now.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.rules.sqlparts import as_bigint, single

WINDOW = 600  # seconds: the alerts' window


@dataclass(frozen=True)
class ParityRule:
    id: str
    action: str
    level: int
    wazuh_id: int


RULES = (ParityRule("vpc.flow.accept", "ACCEPT", 3, 80401),
         ParityRule("vpc.flow.reject", "REJECT", 4, 80402))
IDS = frozenset(rule.id for rule in RULES)
MAX_LEVEL = max(rule.level for rule in RULES)  # a minimum level above this hides them all

# The key columns, as the stored parity rules grouped them.
_KEYS = (("srcaddr", "srcaddr"), ("dstaddr", "dstaddr"),
         ("port", "least(srcport, dstport)"), ("protocol", "protocol"), ("action", "action"))


def rules_at(min_level: int) -> tuple[ParityRule, ...]:
    return tuple(rule for rule in RULES if rule.level >= min_level)


def window_floor(t: int) -> int:
    return t // WINDOW * WINDOW


def _case(attribute: str) -> str:
    arms = " ".join(f"WHEN '{r.action}' THEN {_sql_value(getattr(r, attribute))}" for r in RULES)
    return f"CASE _g4 {arms} END"


def _sql_value(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


# The first and last object as a JSON list of one or two (written out: three times faster
# than to_json of a list, a third of the time of 10 minutes of parity alerts)
_OBJECTS = ("coalesce(CASE WHEN _first_object = _last_object THEN '[' || to_json(_first_object) "
            "|| ']' ELSE '[' || to_json(_first_object) || ',' || to_json(_last_object) || ']' "
            "END, '[]')")
_KEY_COLUMNS = ", ".join(f"{expr} AS _g{i}" for i, (_, expr) in enumerate(_KEYS))


def _seen(since: int | None, until: int | None) -> str:
    tests = ([f'max("end") >= {int(since)}'] if since is not None else []) + (
        [f"min(start) < {int(until)}"] if until is not None else [])
    return f"HAVING {' AND '.join(tests)}" if tests else ""


def touched(flows: str) -> str:
    """The (key, window) of every parity alert the records of relation ``flows`` fall in."""
    keys = _KEY_COLUMNS
    return (f"(SELECT DISTINCT {keys}, start // {WINDOW} * {WINDOW} AS _b FROM {flows} "
            "WHERE action IN ('ACCEPT', 'REJECT') AND start IS NOT NULL)")


def select(flows: str, min_level: int = 0, touched: str | None = None,
           seen_since: int | None = None, seen_until: int | None = None) -> str:
    """Parity alert rows, in the alerts table's columns plus ``derived``, of the flows of
    relation ``flows`` (which must hold whole windows: a window's alert is only right with all
    of its flows). ``touched``: a relation of (_g0.._g4, _b) keys; only those alerts.
    ``seen_since``/``seen_until``: only alerts seen in that range (last record at or after
    the one, first before the other), chosen before their text is made."""
    actions = ", ".join(f"'{rule.action}'" for rule in rules_at(min_level)) or "NULL"
    keys = _KEY_COLUMNS
    not_null = " AND ".join(f"_g{i} IS NOT NULL" for i in range(len(_KEYS)))
    groups = ", ".join(f"_g{i}" for i in range(len(_KEYS)))
    join = ""
    if touched is not None:
        on = " AND ".join(f"f.{g} = t.{g}" for g in [*groups.split(", "), "_b"])
        join = f"SEMI JOIN {touched} AS t ON {on}"
    key_parts = ", ".join([_case("id")] + [f"coalesce(_g{i}::VARCHAR, '')"
                                           for i in range(len(_KEYS))] + ["_b::VARCHAR"])
    group_json = "json_object(" + ", ".join(f"'{name}', _g{i}" for i, (name, _)
                                             in enumerate(_KEYS)) + ")"
    title = ("'AWS VPC Flow: [' || _g4 || '] ' || _g0 || ' -> ' || _g1 || ' port ' "
             "|| _g2 || ' (' || _n || ' flows)'")
    return f"""
    WITH f AS (
        SELECT {keys}, start // {WINDOW} * {WINDOW} AS _b, start, "end", bytes, packets,
               coalesce(pkt_srcaddr, srcaddr) AS _vsrc, coalesce(pkt_dstaddr, dstaddr) AS _vdst,
               dstport, account_id, region, vpc_id, interface_id, object_key
        FROM {flows} WHERE action IN ({actions}) AND start IS NOT NULL
    ),
    g AS (
        SELECT {groups}, _b, count(*) AS _n, sum(bytes) AS _sb, sum(packets) AS _sp,
               min(start) AS _first, max("end") AS _last,
               {single('_vsrc', '_src')}, {single('_vdst', '_dst')},
               {single('dstport', '_port')}, {single('account_id', '_account')},
               {single('region', '_region')},
               {single('vpc_id', '_vpc')}, {single('interface_id', '_eni')},
               min(object_key) AS _first_object, max(object_key) AS _last_object,
               count(DISTINCT object_key) AS _object_count
        FROM f {join} WHERE {not_null} GROUP BY {groups}, _b {_seen(seen_since, seen_until)}
    )
    SELECT md5(concat_ws('|', {key_parts})) AS id, {_case("id")} AS rule_id,
           {_case("level")}::INTEGER AS level, {title} AS title, 'vpcflow' AS source,
           _b AS window_start, _first AS first_seen, _last AS last_seen, _n AS count,
           {as_bigint("_sb")} AS bytes, {as_bigint("_sp")} AS packets,
           {group_json}::VARCHAR AS group_key,
           _src AS srcaddr, _dst AS dstaddr, _port::INTEGER AS dstport,
           _g3::INTEGER AS protocol, '[]' AS mitre, {_case("wazuh_id")}::INTEGER AS wazuh_id,
           {_OBJECTS} AS objects, _object_count AS object_count,
           _account AS account_id, _region AS region, NULL::VARCHAR AS event_name,
           _vpc AS vpc_id, _eni AS interface_id, NULL::VARCHAR AS details,
           NULL::TIMESTAMP AS created, NULL::TIMESTAMP AS updated, 0 AS revision,
           true AS derived
    FROM g"""
