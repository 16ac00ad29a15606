"""The durable outbox: notifications are written to SQLite before any attempt and deleted once settled.

Delivery is at-least-once: a notification is removed only after its receiver
accepted or refused it, so a crash between sending and recording sends it again,
with the same idempotency key. Within one (receiver, group) only the oldest
notification is attempted, so a resolved message never overtakes its firing one.
Each attempt runs as its own task with a wall-clock deadline (the receiver's
timeout), so a slow receiver or group never holds up another. Retries back off
exponentially with full jitter (or wait out ``Retry-After``); once a receiver
answers again, its backlog is due at once. A notification older than
``max_age_s`` is dropped, counted and logged. An outcome the database refuses to
record (locked, full) is kept in memory and written before anything else is
attempted, so the entry is neither sent again nor overtaken meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
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
    # A Retry-After answer: the backlog drain that follows a success never retries sooner than this.
    "ALTER TABLE outbox ADD COLUMN not_before REAL NOT NULL DEFAULT 0",
)

# The oldest notification of each (receiver, group): the only one that may be attempted.
_HEADS = "SELECT MIN(seq) FROM outbox GROUP BY receiver, group_key"

DEFAULT_MAX_AGE_S = 24 * 3600.0
# Attempts in flight at once per receiver.
DEFAULT_CONCURRENCY = 8
# A receiver's own deadline (the same timeout, e.g. per Alertmanager URL) answers before the outbox's.
DEADLINE_GRACE_S = 0.5
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
        return min(self.max_s, self.initial_s * 2.0 ** max(attempts - 1, 0))


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


_Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Entry:
    seq: int
    receiver: str
    notification_json: str
    enqueued_at: float
    attempts: int


class Outbox:
    """Delivers notifications from the ``outbox`` table; call ``start_due`` whenever ``next_attempt_at`` comes
    and whenever an attempt it started ends."""

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
        self._in_flight: dict[int, tuple[str, asyncio.Task[None]]] = {}
        # Outcomes not yet recorded because the database refused: seq -> (statement, parameters).
        self._unrecorded: dict[int, list[_Statement]] = {}

    def enqueue(
        self, notifications: Iterable[Notification], also: Callable[[sqlite3.Connection], None] | None = None
    ) -> int:
        """Write notifications, in order, in one transaction with ``also``'s writes; an id already queued is not
        queued twice. Raises ``sqlite3.Error`` (nothing written) when the database refuses."""
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
            added = self.conn.total_changes - before
            if also is not None:
                also(self.conn)
            return added

    def pending(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def next_attempt_at(self) -> float | None:
        """When the earliest group head not in flight is due, or None when there is none."""
        busy = self._busy()
        row = self.conn.execute(
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE seq IN ({_HEADS}) "
            f"AND seq NOT IN ({', '.join('?' * len(busy))})", busy,
        ).fetchone()
        earliest: float | None = row[0]
        return earliest

    def due(self, now: float) -> list[Entry]:
        """Group heads due at ``now`` and not in flight, oldest schedule first."""
        busy = self._busy()
        rows = self.conn.execute(
            f"SELECT seq, receiver, notification, enqueued_at, attempts FROM outbox "
            f"WHERE seq IN ({_HEADS}) AND next_attempt_at <= ? AND seq NOT IN ({', '.join('?' * len(busy))}) "
            f"ORDER BY next_attempt_at, seq",
            (now, *busy),
        ).fetchall()
        return [Entry(*row) for row in rows]

    def start_due(self, client: httpx.AsyncClient) -> list[asyncio.Task[None]]:
        """Start an attempt for every group head due now, up to ``concurrency`` in flight per receiver.

        Outcomes the database refused earlier are recorded first; raises ``sqlite3.Error``
        (and starts nothing) while it still refuses.
        """
        self._record_pending()
        now = self.clock()
        in_flight: dict[str, int] = {}
        for receiver, _ in self._in_flight.values():
            in_flight[receiver] = in_flight.get(receiver, 0) + 1
        started = []
        for entry in self.due(now):
            if in_flight.get(entry.receiver, 0) >= self.concurrency:
                continue
            in_flight[entry.receiver] = in_flight.get(entry.receiver, 0) + 1
            task = asyncio.create_task(self._attempt(client, entry, now), name=f"deliver-{entry.seq}")
            self._in_flight[entry.seq] = (entry.receiver, task)
            task.add_done_callback(functools.partial(self._forget, entry.seq))
            started.append(task)
        return started

    def _forget(self, seq: int, _: asyncio.Task[None]) -> None:
        self._in_flight.pop(seq, None)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Attempt every group head due now and wait for those attempts; return how many were made."""
        tasks = self.start_due(client)
        await asyncio.gather(*tasks)
        return len(tasks)

    async def cancel(self) -> None:
        """Abandon the attempts in flight; their notifications stay in the outbox."""
        tasks = [task for _, task in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _busy(self) -> list[int]:
        return [*self._in_flight, *self._unrecorded]

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
            deadline_s = receiver.timeout_s + DEADLINE_GRACE_S
            try:
                # httpx's read timeout restarts on every byte; a trickling answer must still end.
                async with asyncio.timeout(deadline_s):
                    outcome = await receiver.send(client, notification, now)
            except TimeoutError:
                outcome = Outcome(OutcomeKind.RETRY, f"no complete answer within {receiver.timeout_s:g}s")
            except Exception as exc:  # a receiver's bug must not stop the others; retry until max age
                self.log.error("receiver raised", receiver=entry.receiver, error=type(exc).__name__)
                outcome = Outcome(OutcomeKind.RETRY, f"{type(exc).__name__} in the receiver")
            self.metrics.latency.labels(entry.receiver).observe(time.perf_counter() - started)
        self.metrics.attempts.labels(entry.receiver, outcome.kind.value).inc()
        self._record(entry, notification, outcome)

    def _record(self, entry: Entry, notification: Notification, outcome: Outcome) -> None:
        if outcome.kind is not OutcomeKind.RETRY:
            if outcome.kind is OutcomeKind.FAIL:
                self.log.error("notification refused by its receiver; not retrying", receiver=entry.receiver,
                               group_key=notification.group_key, notification_id=notification.id,
                               error=outcome.detail)
            # The receiver answers again: what waits for it in backoff is due now (in group order),
            # not at the end of a backoff that may be minutes long.
            now = self.clock()
            self._write(entry, ("UPDATE outbox SET next_attempt_at = MAX(not_before, ?) "
                                "WHERE receiver = ? AND attempts > 0 AND next_attempt_at > ?", (now, entry.receiver, now)),
                        _delete_statement(entry))
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
        not_before = next_attempt if outcome.retry_after_s is not None else 0.0
        self.log.warning("notification not delivered; will retry", receiver=entry.receiver,
                         notification_id=notification.id, attempts=attempts,
                         retry_in_s=round(next_attempt - now, 3), error=outcome.detail)
        self._write(entry, ("UPDATE outbox SET attempts = ?, next_attempt_at = ?, not_before = ?, last_error = ? "
                            "WHERE seq = ?", (attempts, next_attempt, not_before, outcome.detail, entry.seq)))

    def _drop(self, entry: Entry, reason: str) -> None:
        last_error = self.conn.execute("SELECT last_error FROM outbox WHERE seq = ?", (entry.seq,)).fetchone()
        self.log.error("notification dropped", reason=reason, receiver=entry.receiver, attempts=entry.attempts,
                       last_error=last_error[0] if last_error else "")
        self.metrics.dropped.labels(entry.receiver).inc()
        self._write(entry, _delete_statement(entry))

    def _write(self, entry: Entry, *statements: _Statement) -> None:
        """Record an outcome of ``entry``; if the database refuses, keep it for ``start_due`` to write first."""
        self._unrecorded[entry.seq] = list(statements)
        try:
            self._record_pending()
        except sqlite3.Error as exc:
            self.log.error("delivery outcome not recorded; will record it before the next attempt",
                           receiver=entry.receiver, error=str(exc))

    def _record_pending(self) -> None:
        """Write every unrecorded outcome in one transaction, in the order they came; raises ``sqlite3.Error``."""
        if not self._unrecorded:
            return
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for statements in self._unrecorded.values():
                for statement, parameters in statements:
                    self.conn.execute(statement, parameters)
        self._unrecorded.clear()


def _delete_statement(entry: Entry) -> _Statement:
    return "DELETE FROM outbox WHERE seq = ?", (entry.seq,)
