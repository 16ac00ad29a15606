"""The state database: WAL mode, per-namespace migrations applied once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.state import AGENT_MIGRATIONS, StateDB


def test_opens_in_wal_mode_and_creates_parent_dirs(tmp_path: Path) -> None:
    """A file database is created with its directory and uses write-ahead logging."""
    db = StateDB(str(tmp_path / "sub" / "state.db"))
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_migrations_apply_once_and_resume_where_they_stopped(tmp_path: Path) -> None:
    """Re-opening applies only migrations added since, and namespaces are independent."""
    path = str(tmp_path / "state.db")
    db = StateDB(path)
    db.migrate("agent", AGENT_MIGRATIONS)
    db.migrate("outbox", ["CREATE TABLE outbox (id INTEGER PRIMARY KEY)"])
    db.close()

    db = StateDB(path)
    assert db.version("agent") == len(AGENT_MIGRATIONS)
    db.migrate("outbox", ["CREATE TABLE outbox (id INTEGER PRIMARY KEY)", "ALTER TABLE outbox ADD COLUMN body TEXT"])
    assert db.version("outbox") == 2
    columns = [row[1] for row in db.conn.execute("PRAGMA table_info(outbox)")]
    assert columns == ["id", "body"]
    db.close()


def test_a_failing_migration_leaves_the_version_unchanged() -> None:
    """A broken migration rolls back, so the next start retries it."""
    db = StateDB(":memory:")
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        db.migrate("x", ["CREATE TABLE t (a)", "CREATE TABLE t (a)"])
    assert db.version("x") == 1
