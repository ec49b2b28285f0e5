"""The alert feed of the app's read side (mixed into :class:`core.explorer.Explorer`):
pages of stored alerts and, at a minimum level of 4 or lower, of the Wazuh-parity alerts
derived from the flows in scope (``core.parity_feed``); their count; a CloudTrail alert's
events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from core.parity_feed import ParityFeed
from core.rules import parity
from core.scope import Scope
from core.timeline import TimeRange
from core.traffic_index import TrafficIndex

FEED_COLUMNS = ("id", "rule_id", "level", "title", "source", "first_seen", "last_seen", "count",
                "bytes", "packets", "srcaddr", "dstaddr", "dstport", "protocol", "group_key",
                "mitre", "wazuh_id", "object_count", "objects", "revision", "account_id",
                "region", "vpc_id", "interface_id", "details")


class AlertFeedQueries:
    con: duckdb.DuckDBPyConnection
    _alerts_con: duckdb.DuckDBPyConnection  # (stored_feed's, on another thread)
    _parity: ParityFeed
    index: TrafficIndex
    span: Callable[[], TimeRange | None]
    retry: Callable[[Callable[[], Any]], Any]
    rows: Callable[..., list[tuple[Any, ...]]]
    _arrow: Callable[..., pa.Table]

    def feed(self, scope: Scope, offset: int = 0, limit: int = 200) -> pa.Table:
        """Alerts in scope, newest first (by last record time), rows offset..offset+limit:
        the stored ones and, at a minimum level of 4 or lower, the parity alerts derived
        from the flows in scope (as far back as this page needs, see core.parity_feed)."""
        where, params = self._alert_where(scope)
        order = "ORDER BY last_seen DESC, level DESC, id"
        columns = ", ".join(FEED_COLUMNS)
        if self._parity_table(scope, offset + limit):
            return self._arrow(
                f"SELECT {columns} FROM alerts WHERE {where} UNION ALL "
                f"SELECT {columns} FROM parity_alerts WHERE {where} {order} LIMIT ? OFFSET ?",
                [*params, *params, limit, offset])
        return self._arrow(_stored_page(where), [*params, limit, offset])

    def stored_feed(self, scope: Scope, limit: int) -> tuple[pa.Table, int]:
        """The first page of the feed of stored alerts alone (a scope whose feed does not
        read the flows) and their count, on a cursor of its own: for the thread that shows
        new alerts while the reader thread is busy."""
        where, params = self._alert_where(scope)
        rows = self._alerts_con.sql(_stored_page(where),
                                    params=[*params, limit, 0]).to_arrow_table()
        if rows.num_rows < limit:
            return rows, rows.num_rows
        count = self._alerts_con.execute(f"SELECT count(*) FROM alerts WHERE {where}",
                                         params).fetchall()
        return rows, int(count[0][0])

    def feed_count(self, scope: Scope) -> int:
        """Alerts in scope; with parity alerts not yet derived for the whole range, a lower
        bound (see feed_count_is_partial)."""
        where, params = self._alert_where(scope)
        sql = f"SELECT count(*) FROM alerts WHERE {where}"
        if self._parity_table(scope, 0):
            sql = (f"SELECT ({sql}) + (SELECT count(*) FROM parity_alerts WHERE {where})")
            params = [*params, *params]
        return int(self.rows(sql, params)[0][0])

    def feed_reads_flows(self, scope: Scope) -> bool:
        """Whether the feed of ``scope`` holds alerts derived from the flows (parity)."""
        return scope.min_level <= parity.MAX_LEVEL

    def feed_count_is_partial(self, scope: Scope) -> bool:
        """Whether feed_count(scope) is a lower bound: parity alerts of the range's older
        part are not derived yet (no page asked for them)."""
        derived = self._parity.derived
        return (scope.min_level <= parity.MAX_LEVEL and derived is not None
                and derived.key == self._parity_key(scope) and not derived.complete)

    def _parity_key(self, scope: Scope) -> tuple[Any, ...]:
        return (scope.range, self.index.version)

    def _parity_table(self, scope: Scope, need: int) -> bool:
        """Whether the feed takes in parity alerts; if so, ``parity_alerts`` holds those of
        the scope's range, newest first, at least ``need`` of them in scope when there are."""
        if scope.min_level > parity.MAX_LEVEL:
            return False
        where, params = self._alert_where(scope)

        def in_scope() -> int:
            return int(self.con.execute(f"SELECT count(*) FROM parity_alerts WHERE {where}",
                                        params).fetchall()[0][0])

        # (a retry refreshes the index: the key is read again inside it)
        self.retry(lambda: self._parity.ensure(self._parity_key(scope),
                                                scope.range or self.span(), need, in_scope))
        return True

    def _alert_where(self, scope: Scope) -> tuple[str, list[Any]]:
        sql, params = scope.filter.alerts_sql()
        where = f"level >= ? AND {sql}"
        params = [scope.min_level, *params]
        if scope.range:
            where += " AND last_seen >= ? AND first_seen < ?"
            params += [scope.range.start, scope.range.end]
        return where, params

    def events_of(self, alert: dict[str, Any]) -> pa.Table:
        """The CloudTrail events behind a CloudTrail alert (its key names the event)."""
        key = json.loads(alert.get("group_key") or "{}")
        return self._arrow(
            "SELECT event_time, event_name, error_code, error_message, user_arn, user_type, "
            "source_ip, user_agent, account_id, aws_region, event_id, object_key "
            "FROM cloudtrail WHERE event_id = ? ORDER BY event_time", [key.get("event_id")])


def _stored_page(where: str) -> str:
    """A page of stored alerts (parameters: the filter's, then LIMIT and OFFSET), newest
    first: the page's rows from the few columns the filter and the order need, then their
    twenty columns (reading those for every row in scope cost twice as much)."""
    order = "ORDER BY last_seen DESC, level DESC, id"
    return (f"WITH page AS (SELECT rowid AS r FROM alerts WHERE {where} {order} "
            f"LIMIT ? OFFSET ?) SELECT {', '.join(FEED_COLUMNS)} FROM alerts "
            f"WHERE rowid IN (SELECT r FROM page) {order}")
