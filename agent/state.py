"""The state database: one SQLite file in WAL mode, tables migrated per package."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

# The agent's own tables; other packages pass theirs to `migrate` under their own namespace.
AGENT_MIGRATIONS = (
    """CREATE TABLE agent_starts (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        version TEXT NOT NULL,
        config_path TEXT
    )""",
)


class StateDB:
    """The agent's single SQLite connection, opened once and used from the event loop thread."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=2000")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (namespace TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )

    def migrate(self, namespace: str, migrations: Sequence[str]) -> int:
        """Apply the migrations of ``namespace`` not applied yet, each in its own transaction."""
        row = self.conn.execute(
            "SELECT version FROM schema_versions WHERE namespace = ?", (namespace,)
        ).fetchone()
        version = row[0] if row else 0
        for number, statement in enumerate(migrations[version:], start=version + 1):
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_versions (namespace, version) VALUES (?, ?) "
                    "ON CONFLICT(namespace) DO UPDATE SET version = excluded.version",
                    (namespace, number),
                )
        return len(migrations)

    def version(self, namespace: str) -> int:
        row = self.conn.execute(
            "SELECT version FROM schema_versions WHERE namespace = ?", (namespace,)
        ).fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        self.conn.close()
