"""The durable outbox: notifications are written to SQLite before any attempt and deleted once settled.

Delivery is at-least-once: a notification is removed only after its receiver
accepted or refused it, so a crash between sending and recording sends it again,
with the same idempotency key. Within one (receiver, group) only the oldest
notification is attempted, so a resolved message never overtakes its firing one.
Retries back off exponentially with full jitter (or wait out ``Retry-After``);
a notification older than ``max_age_s`` is dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random as random_module
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporters.delivery import Outcome, OutcomeKind, Receiver
from exporters.notification import AlertPayload, Notification


class EventLog(Protocol):
    """Structured logging as structlog's bound loggers do it: an event name and fields."""

    def warning(self, event: str, **fields: Any) -> Any: ...
    def error(self, event: str, **fields: Any) -> Any: ...


class StdlibEventLog:
    """An EventLog over the standard library's logging, for use without structlog."""

    def __init__(self, name: str = "healwatch.outbox") -> None:
        self._logger = logging.getLogger(name)

    def warning(self, event: str, **fields: Any) -> None:
        self._logger.warning("%s %s", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._logger.error("%s %s", event, fields)

MIGRATIONS = (
    """CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        notification TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX outbox_group_order ON outbox (receiver, group_key, seq)",
)

# The oldest notification of each (receiver, group): the only one that may be attempted.
_HEADS = "SELECT MIN(seq) FROM outbox GROUP BY receiver, group_key"

DEFAULT_MAX_AGE_S = 24 * 3600.0
DEFAULT_CONCURRENCY = 32
# A Retry-After of 0 (or a jitter draw near 0) must not turn the retry into a busy loop.
MIN_RETRY_DELAY_S = 0.1


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: retry n waits uniformly in [0, min(max_s, initial_s * 2**(n-1))).

    The outbox never retries sooner than ``MIN_RETRY_DELAY_S``.
    """

    initial_s: float = 1.0
    max_s: float = 300.0

    def ceiling_s(self, attempts: int) -> float:
        return min(self.max_s, self.initial_s * 2 ** max(attempts - 1, 0))


def encode(notification: Notification) -> str:
    return json.dumps(dataclasses.asdict(notification), separators=(",", ":"))


def decode(text: str) -> Notification:
    fields = json.loads(text)
    alerts = tuple(AlertPayload(**alert) for alert in fields.pop("alerts"))
    return Notification(alerts=alerts, **fields)


class OutboxMetrics:
    """The outbox's counters, in a registry the caller owns."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "healwatch_notifications", "Delivery attempts by outcome: ok, retry (will be tried again) or fail.",
            ["receiver", "outcome"], registry=registry,
        )
        self.dropped = Counter(
            "healwatch_notifications_dropped",
            "Notifications given up on: older than the outbox's max age, or unreadable.", ["receiver"],
            registry=registry,
        )
        self.latency = Histogram(
            "healwatch_notification_latency_seconds", "Duration of one delivery attempt.", ["receiver"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry,
        )
        self.pending = Gauge("healwatch_outbox_pending", "Notifications in the outbox not yet settled.", registry=registry)


@dataclass(frozen=True)
class Entry:
    seq: int
    receiver: str
    notification_json: str
    enqueued_at: float
    attempts: int


class Outbox:
    """Delivers notifications from the ``outbox`` table; call ``deliver_due`` whenever ``next_attempt_at`` comes."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        receivers: Mapping[str, Receiver],
        *,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random_module.random,
        backoff: Backoff = Backoff(),
        max_age_s: float = DEFAULT_MAX_AGE_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        metrics: OutboxMetrics | None = None,
        log: EventLog | None = None,
    ) -> None:
        self.conn = conn
        self.receivers = dict(receivers)
        self.clock = clock
        self.random = random
        self.backoff = backoff
        self.max_age_s = max_age_s
        self.concurrency = concurrency
        self.metrics = metrics or OutboxMetrics(CollectorRegistry())
        self.metrics.pending.set_function(self.pending)
        self.log = log or StdlibEventLog()

    def enqueue(self, notifications: Iterable[Notification]) -> int:
        """Write notifications, in order, in one transaction; an id already queued is not queued twice."""
        now = self.clock()
        rows = [(n.id, n.receiver, n.group_key, encode(n), now, now) for n in notifications]
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO outbox (id, receiver, group_key, notification, enqueued_at, next_attempt_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            return self.conn.total_changes - before

    def pending(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def next_attempt_at(self) -> float | None:
        """When the earliest group head is due, or None when the outbox is empty."""
        row = self.conn.execute(f"SELECT MIN(next_attempt_at) FROM outbox WHERE seq IN ({_HEADS})").fetchone()
        return row[0]

    def due(self, now: float, limit: int) -> list[Entry]:
        rows = self.conn.execute(
            f"SELECT seq, receiver, notification, enqueued_at, attempts FROM outbox "
            f"WHERE seq IN ({_HEADS}) AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?",
            (now, limit),
        ).fetchall()
        return [Entry(*row) for row in rows]

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Attempt every group head due now (up to ``concurrency`` at once); return how many were settled or retried."""
        now = self.clock()
        entries = self.due(now, self.concurrency)
        await asyncio.gather(*(self._attempt(client, entry, now) for entry in entries))
        return len(entries)

    async def _attempt(self, client: httpx.AsyncClient, entry: Entry, now: float) -> None:
        if now >= entry.enqueued_at + self.max_age_s:
            self._drop(entry, f"undelivered after {self.max_age_s:g}s")
            return
        try:
            notification = decode(entry.notification_json)
        except (ValueError, TypeError) as exc:
            self._drop(entry, f"unreadable notification: {exc}")
            return
        receiver = self.receivers.get(entry.receiver)
        started = time.perf_counter()
        if receiver is None:
            outcome = Outcome(OutcomeKind.RETRY, "no receiver of this name is configured")
        else:
            try:
                outcome = await receiver.send(client, notification, now)
            except Exception as exc:  # a receiver's bug must not stop the others; retry until max age
                self.log.error("receiver raised", receiver=entry.receiver, error=type(exc).__name__)
                outcome = Outcome(OutcomeKind.RETRY, f"{type(exc).__name__} in the receiver")
            self.metrics.latency.labels(entry.receiver).observe(time.perf_counter() - started)
        self.metrics.attempts.labels(entry.receiver, outcome.kind.value).inc()
        self._record(entry, notification, outcome)

    def _record(self, entry: Entry, notification: Notification, outcome: Outcome) -> None:
        if outcome.kind is OutcomeKind.OK:
            self._delete(entry)
            return
        if outcome.kind is OutcomeKind.FAIL:
            self.log.error("notification refused by its receiver; not retrying", receiver=entry.receiver,
                           group_key=notification.group_key, notification_id=notification.id, error=outcome.detail)
            self._delete(entry)
            return
        attempts = entry.attempts + 1
        now = self.clock()
        if outcome.retry_after_s is not None:
            delay = outcome.retry_after_s
        else:
            delay = self.random() * self.backoff.ceiling_s(attempts)
        delay = max(delay, MIN_RETRY_DELAY_S)
        # Never later than the max age, so a hopeless notification is dropped on time.
        next_attempt = min(now + delay, entry.enqueued_at + self.max_age_s)
        self.log.warning("notification not delivered; will retry", receiver=entry.receiver,
                         notification_id=notification.id, attempts=attempts,
                         retry_in_s=round(next_attempt - now, 3), error=outcome.detail)
        with self.conn:
            self.conn.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE seq = ?",
                (attempts, next_attempt, outcome.detail, entry.seq),
            )

    def _drop(self, entry: Entry, reason: str) -> None:
        last_error = self.conn.execute("SELECT last_error FROM outbox WHERE seq = ?", (entry.seq,)).fetchone()
        self.log.error("notification dropped", reason=reason, receiver=entry.receiver, attempts=entry.attempts,
                       last_error=last_error[0] if last_error else "")
        self.metrics.dropped.labels(entry.receiver).inc()
        self._delete(entry)

    def _delete(self, entry: Entry) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))
