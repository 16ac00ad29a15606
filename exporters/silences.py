"""Silences: matchers that mute alerts for a time, kept in the state database.

Validation and states follow Alertmanager (``silence/silence.go``): at least one
matcher, and at least one that does not match the empty string (so no silence
mutes every alert); the end not before the start; pending before ``starts_at``,
expired from ``ends_at`` on, active in between. Expiring a pending silence ends
it without it ever having been active.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from exporters.matchers import matches_all, parse_matcher
from rules.matchers import Matcher, MatchOp

PENDING, ACTIVE, EXPIRED = "pending", "active", "expired"
RETENTION_S = 120 * 3600.0  # Alertmanager's default --data.retention for expired silences

MIGRATIONS = (
    """CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL
    )""",
)


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts all ``matchers`` accept from ``starts_at`` until ``ends_at`` (seconds since the epoch)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a silence needs an id")
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if all(_matches_empty(m) for m in self.matchers):
            raise ValueError(
                f"silence {_describe(self.matchers)} matches everything: "
                "at least one matcher must not match the empty string"
            )
        if self.ends_at < self.starts_at:
            raise ValueError("a silence's end time must not be before its start time")

    def state(self, now: float) -> str:
        """``pending``, ``active`` or ``expired`` at ``now``."""
        if now < self.starts_at:
            return PENDING
        return EXPIRED if now >= self.ends_at else ACTIVE

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher accepts ``labels``, whatever the time."""
        return matches_all(self.matchers, labels)


def new_silence(
    matchers: Iterable[str | Matcher],
    starts_at: float,
    ends_at: float,
    created_by: str = "",
    comment: str = "",
    silence_id: str | None = None,
) -> Silence:
    """A silence from matcher strings (``'instance="db1"'``) or matchers, with a fresh id unless given one."""
    parsed = tuple(m if isinstance(m, Matcher) else parse_matcher(m) for m in matchers)
    return Silence(silence_id or str(uuid.uuid4()), parsed, starts_at, ends_at, created_by, comment)


class Silences:
    """The silences of the agent; with a connection, every change is written through to SQLite."""

    def __init__(self, silences: Iterable[Silence] = (), conn: sqlite3.Connection | None = None) -> None:
        self._conn = conn
        self._by_id = {s.id: s for s in silences}

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> Silences:
        """The silences stored in ``conn`` (migrated with ``MIGRATIONS``), writing changes back to it."""
        return cls(load_silences(conn), conn)

    def add(self, silence: Silence, now: float) -> Silence:
        """Store a new silence (or replace one with the same id); it must not have ended already."""
        if silence.ends_at <= now:
            raise ValueError("a silence's end time must be in the future")
        self._by_id[silence.id] = silence
        if self._conn is not None:
            save_silence(self._conn, silence)
        return silence

    def expire(self, silence_id: str, now: float) -> Silence:
        """End a silence at ``now``; a pending one ends without having started."""
        silence = self.get(silence_id)
        state = silence.state(now)
        if state == EXPIRED:
            raise ValueError(f"silence {silence_id} has already expired")
        starts_at = now if state == PENDING else silence.starts_at
        expired = replace(silence, starts_at=starts_at, ends_at=now)
        self._by_id[silence_id] = expired
        if self._conn is not None:
            save_silence(self._conn, expired)
        return expired

    def get(self, silence_id: str) -> Silence:
        try:
            return self._by_id[silence_id]
        except KeyError:
            raise ValueError(f"no silence with id {silence_id!r}") from None

    def list(self, now: float, state: str | None = None) -> list[Silence]:
        """Silences, optionally only those in ``state`` at ``now``: active first, then pending, then expired."""
        order = {ACTIVE: 0, PENDING: 1, EXPIRED: 2}
        chosen = [s for s in self._by_id.values() if state is None or s.state(now) == state]
        return sorted(chosen, key=lambda s: (order[s.state(now)], s.starts_at, s.id))

    def mutes(self, labels: Mapping[str, str], now: float) -> tuple[str, ...]:
        """Ids of the active silences that mute an alert with ``labels``."""
        return tuple(
            s.id for s in self._by_id.values() if s.state(now) == ACTIVE and s.matches(labels)
        )

    def collect_garbage(self, now: float, retention_s: float = RETENTION_S) -> int:
        """Forget silences that expired more than ``retention_s`` ago; return how many."""
        old = [s.id for s in self._by_id.values() if s.ends_at + retention_s < now]
        for silence_id in old:
            del self._by_id[silence_id]
        if self._conn is not None:
            delete_silences_ended_before(self._conn, now - retention_s)
        return len(old)


def save_silence(conn: sqlite3.Connection, silence: Silence) -> None:
    """Insert or replace one silence."""
    with conn:
        conn.execute(
            "INSERT OR REPLACE INTO silences (id, matchers, starts_at, ends_at, created_by, comment) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                silence.id,
                json.dumps([str(m) for m in silence.matchers]),
                silence.starts_at,
                silence.ends_at,
                silence.created_by,
                silence.comment,
            ),
        )


def load_silences(conn: sqlite3.Connection) -> list[Silence]:
    """Every stored silence."""
    rows = conn.execute(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment FROM silences ORDER BY starts_at, id"
    ).fetchall()
    return [
        Silence(row[0], tuple(parse_matcher(m) for m in json.loads(row[1])), row[2], row[3], row[4], row[5])
        for row in rows
    ]


def delete_silences_ended_before(conn: sqlite3.Connection, cutoff: float) -> None:
    """Delete silences whose end lies before ``cutoff``."""
    with conn:
        conn.execute("DELETE FROM silences WHERE ends_at < ?", (cutoff,))


def _matches_empty(matcher: Matcher) -> bool:
    # As Alertmanager's matchesEmpty: negative matchers never count, however much they match.
    if matcher.op in (MatchOp.EQ, MatchOp.RE):
        return matcher.matches("")
    return False


def _describe(matchers: Iterable[Matcher]) -> str:
    return "{" + ", ".join(str(m) for m in matchers) + "}"
