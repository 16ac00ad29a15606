"""The rule engine's table in the state database: alert active-since times for restoring ``for``.

Prometheus restores pending and firing alerts after a restart from its
``ALERTS_FOR_STATE`` series; healwatch keeps the same facts in SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from rules.model import Alert, AlertState, Labels

MIGRATIONS = (
    """CREATE TABLE alert_for_state (
        rule_group TEXT NOT NULL,
        labels TEXT NOT NULL,
        active_at REAL NOT NULL,
        last_eval REAL NOT NULL,
        PRIMARY KEY (rule_group, labels)
    )""",
)


def _key(labels: Labels) -> str:
    return json.dumps(list(labels), separators=(",", ":"))


def save_for_state(conn: sqlite3.Connection, rule_group: str, alerts: Iterable[Alert], now: float) -> None:
    """Replace the group's rows with its currently pending and firing alerts, evaluated at ``now``."""
    rows = [
        (rule_group, _key(alert.labels), alert.active_at, now)
        for alert in alerts
        if alert.state != AlertState.INACTIVE
    ]
    with conn:
        conn.execute("BEGIN")
        conn.execute("DELETE FROM alert_for_state WHERE rule_group = ?", (rule_group,))
        conn.executemany("INSERT INTO alert_for_state VALUES (?, ?, ?, ?)", rows)


def load_for_state(
    conn: sqlite3.Connection, rule_group: str, not_before: float
) -> dict[Labels, tuple[float, float]]:
    """Saved alerts of a group evaluated after ``not_before``: labels -> (last evaluation, active-since)."""
    rows = conn.execute(
        "SELECT labels, last_eval, active_at FROM alert_for_state WHERE rule_group = ? AND last_eval > ?",
        (rule_group, not_before),
    )
    return {Labels(tuple(pair) for pair in json.loads(labels)): (last, active) for labels, last, active in rows}
