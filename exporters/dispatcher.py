"""Aggregation groups and their timers: which notifications are due when, as a pure function of time.

This is Alertmanager's dispatcher and notification pipeline without goroutines
(``dispatch/dispatch.go``, ``dispatch/group.go``, ``notify/notify.go``):

- every alert goes to the groups of the routes it matches, keyed by route and group labels;
- a group flushes first ``group_wait`` after it was created (at once if its alert
  started longer than that ago), then every ``group_interval``;
- at a flush, inhibited and silenced alerts are left out, a route outside its
  ``active_time_intervals`` or inside one of its ``mute_time_intervals`` sends nothing
  and logs nothing (its resolved alerts are dropped, as Alertmanager's TimeActiveStage
  and TimeMuteStage stop the pipeline before the notification log), and the notification log
  (last firing/resolved sets per receiver and group) decides whether anything is
  sent: new firing alerts, newly resolved ones (with ``send_resolved``), all resolved,
  or ``repeat_interval`` elapsed (effectively rounded up to the group interval beat);
- resolved alerts leave the group after a flush, and an empty group is dropped.

The notification log can live in SQLite (``NFLOG_MIGRATIONS``), as Alertmanager
keeps its own on disk, so a restarted agent does not notify again what it had sent.
Its changes are written by ``write_changes`` in the caller's transaction, the one
that puts the notifications in the outbox, so the log never says "sent" about a
notification the outbox does not hold.

Beyond Alertmanager, a route's ``resolve_wait`` flushes a group whose alerts have
all resolved that long after the last one ended, instead of at the next beat.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from exporters.inhibit import Inhibition, Inhibitor
from exporters.notification import AlertPayload, Notification, notification_id
from exporters.routing import Route
from exporters.silences import Silences
from exporters.timeintervals import Intervener
from rules.golang.fmt import quote as go_quote

NFLOG_RETENTION_S = 120 * 3600.0  # Alertmanager's default --data.retention
_EPSILON_S = 1e-6  # float sums of intervals must not miss a beat they land on


def group_key(route: Route, group_labels: dict[str, str]) -> str:
    """Alertmanager's groupKey: ``{route key}:{group labels as Go's LabelSet.String}``."""
    labels = ", ".join(f"{name}={go_quote(group_labels[name])}" for name in sorted(group_labels))
    return f"{route.key()}:{{{labels}}}"


@dataclass(frozen=True)
class AlertView:
    """An alert of a group as the API shows it: muted alerts stay visible with what mutes them."""

    alert: AlertPayload
    status: str
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]

    @property
    def state(self) -> str:
        """Alertmanager's alert state: ``suppressed`` when silenced or inhibited, else ``active``."""
        return "suppressed" if self.silenced_by or self.inhibited_by else "active"


@dataclass(frozen=True)
class GroupView:
    """One aggregation group for the API."""

    receiver: str
    group_key: str
    route_id: str
    labels: dict[str, str]
    alerts: tuple[AlertView, ...]
    next_flush_at: float
    muted_by: tuple[str, ...] = ()  # the time intervals that keep the group's route from sending now


NFLOG_MIGRATIONS = (
    """CREATE TABLE notification_log (
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        firing TEXT NOT NULL,
        resolved TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (receiver, group_key)
    )""",
)


@dataclass(frozen=True)
class LogEntry:
    """What a receiver was last told about a group: fingerprints of its firing and resolved alerts, and when."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at: float


class NotificationLog:
    """Alertmanager's notification log; loaded from a connection and saved with ``write_changes``, it survives
    restarts, so nothing is re-sent after one."""

    def __init__(self, conn: sqlite3.Connection | None = None) -> None:
        self._entries: dict[tuple[str, str], LogEntry] = {}
        # Keys changed since the last write_changes; None when the log is not persisted.
        self._changed: set[tuple[str, str]] | None = None if conn is None else set()
        if conn is not None:
            for receiver, key, firing, resolved, at in conn.execute(
                "SELECT receiver, group_key, firing, resolved, at FROM notification_log"
            ):
                self._entries[receiver, key] = LogEntry(frozenset(json.loads(firing)), frozenset(json.loads(resolved)), at)

    def get(self, receiver: str, group_key: str) -> LogEntry | None:
        return self._entries.get((receiver, group_key))

    def record(self, receiver: str, group_key: str, entry: LogEntry) -> None:
        self._entries[receiver, group_key] = entry
        if self._changed is not None:
            self._changed.add((receiver, group_key))

    def collect_garbage(self, now: float) -> None:
        """Forget entries without firing alerts (they decide exactly as no entry does) and those past retention."""
        old = [k for k, e in self._entries.items() if not e.firing or e.at + NFLOG_RETENTION_S < now]
        for key in old:
            del self._entries[key]
        if self._changed is not None:
            self._changed.update(old)

    def changed(self) -> bool:
        return bool(self._changed)

    def write_changes(self, conn: sqlite3.Connection) -> None:
        """Write the entries changed since ``mark_written``, in the caller's open transaction."""
        for key in sorted(self._changed or ()):
            entry = self._entries.get(key)
            if entry is None:
                conn.execute("DELETE FROM notification_log WHERE receiver = ? AND group_key = ?", key)
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO notification_log (receiver, group_key, firing, resolved, at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (*key, json.dumps(sorted(entry.firing)), json.dumps(sorted(entry.resolved)), entry.at),
                )

    def mark_written(self) -> None:
        """Call once the transaction that holds ``write_changes``' writes has committed."""
        if self._changed is not None:
            self._changed.clear()


@dataclass(eq=False)
class _Group:
    route: Route
    labels: dict[str, str]
    key: str
    next_flush_at: float
    alerts: dict[str, AlertPayload] = field(default_factory=dict)
    has_flushed: bool = False

    def due_at(self) -> float:
        resolve_wait = self.route.options.resolve_wait_s
        if resolve_wait is None or not self.has_flushed or not self.alerts:
            return self.next_flush_at
        ends = [a.ends_at for a in self.alerts.values()]
        if any(end is None for end in ends):
            return self.next_flush_at
        return min(self.next_flush_at, max(e for e in ends if e is not None) + resolve_wait)


class Dispatcher:
    """Routes alerts into aggregation groups and says which notifications are due at a given time."""

    def __init__(
        self,
        route: Route,
        inhibitor: Inhibitor,
        silences: Silences,
        *,
        send_resolved: Callable[[str], bool],
        external_url: str = "",
        notification_log: NotificationLog | None = None,
        intervener: Intervener | None = None,
    ) -> None:
        self.route = route
        self.intervener = intervener or Intervener({})
        self.inhibitor = inhibitor
        self.silences = silences
        self._send_resolved = send_resolved
        self._external_url = external_url
        self._alerts: dict[str, AlertPayload] = {}
        self._groups: dict[tuple[int, tuple[tuple[str, str], ...]], _Group] = {}
        self._log = notification_log or NotificationLog()
        self._sequence: dict[tuple[str, str], int] = {}
        self._last_now = 0.0

    def ingest(self, alerts: Iterable[AlertPayload], now: float) -> None:
        """Add or update alerts (matched by fingerprint) in the groups of every route they match."""
        self._last_now = max(self._last_now, now)
        for alert in alerts:
            alert = _merge(self._alerts.get(alert.fingerprint), alert, now)
            self._alerts[alert.fingerprint] = alert
            for route in self.route.match(alert.labels):
                self._insert(route, alert, now)

    def due(self, now: float) -> list[Notification]:
        """Flush every group whose time has come; return the notifications to send, oldest group first."""
        self._last_now = max(self._last_now, now)
        ready = sorted(
            (g for g in self._groups.values() if g.due_at() <= now + _EPSILON_S),
            key=lambda g: (g.due_at(), g.key, g.route.options.receiver),
        )
        if not ready:
            return []
        inhibition = self.inhibitor.at(self._alerts.values(), now)
        notifications = [n for group in ready if (n := self._flush(group, inhibition, now)) is not None]
        self._collect_garbage(now)
        return notifications

    def next_due(self) -> float | None:
        """When ``due`` has something to do next, or None while there are no groups."""
        return min((g.due_at() for g in self._groups.values()), default=None)

    def state(self, now: float | None = None) -> list[GroupView]:
        """Every group with its alerts and their silenced/inhibited marks at ``now`` (default: the latest time seen)."""
        at = self._last_now if now is None else now
        inhibition = self.inhibitor.at(self._alerts.values(), at)
        views = [
            GroupView(
                receiver=group.route.options.receiver,
                group_key=group.key,
                route_id=group.route.id(),
                labels=dict(group.labels),
                alerts=tuple(self._view(a, inhibition, at) for a in sort_alerts(group.alerts.values())),
                next_flush_at=group.due_at(),
                muted_by=self.time_muted(group.route, at),
            )
            for group in self._groups.values()
        ]
        return sorted(views, key=lambda v: (v.group_key, v.receiver))

    def time_muted(self, route: Route, now: float) -> tuple[str, ...]:
        """The time intervals that keep ``route`` from sending at ``now``: all its active ones when it is
        outside them, else its mute intervals holding now; empty when it may send."""
        options = route.options
        if not self.intervener.active(options.active_time_intervals, now):
            return options.active_time_intervals
        return self.intervener.containing(options.mute_time_intervals, now)

    def _insert(self, route: Route, alert: AlertPayload, now: float) -> None:
        labels = route.group_labels(alert.labels)
        index = (id(route), tuple(sorted(labels.items())))
        group = self._groups.get(index)
        if group is None:
            options = route.options
            group = _Group(route, labels, group_key(route, labels), now + options.group_wait_s)
            self._groups[index] = group
        group.alerts[alert.fingerprint] = alert
        # An alert that started longer than group_wait ago need not wait again (e.g. after a restart).
        if not group.has_flushed and alert.starts_at + route.options.group_wait_s < now:
            group.next_flush_at = min(group.next_flush_at, now)

    def _flush(self, group: _Group, inhibition: Inhibition, now: float) -> Notification | None:
        options = group.route.options
        group.next_flush_at = now + options.group_interval_s
        group.has_flushed = True
        alerts = sort_alerts(group.alerts.values())
        resolved_now = [a for a in alerts if a.status(now) == "resolved"]
        unmuted = [
            a for a in alerts
            if not inhibition.inhibited_by(a.labels) and not self.silences.mutes(a.labels, now)
        ]
        if self.time_muted(group.route, now):
            unmuted = []
        notification = self._notify(group, unmuted, now) if unmuted else None
        # Resolved alerts were dealt with by this flush, whether or not anything was sent.
        for alert in resolved_now:
            del group.alerts[alert.fingerprint]
        return notification

    def _notify(self, group: _Group, alerts: list[AlertPayload], now: float) -> Notification | None:
        receiver = group.route.options.receiver
        send_resolved = self._send_resolved(receiver)
        firing = frozenset(a.fingerprint for a in alerts if a.status(now) == "firing")
        resolved = frozenset(a.fingerprint for a in alerts if a.status(now) == "resolved")
        entry = self._log.get(receiver, group.key)
        if not _needs_update(entry, firing, resolved, send_resolved, group.route.options.effective_repeat_s, now):
            return None
        self._log.record(receiver, group.key, LogEntry(firing, resolved, now))
        sent = alerts if send_resolved else [a for a in alerts if a.fingerprint in firing]
        if not sent:
            # All resolved and the receiver does not want to hear it: logged, not sent.
            return None
        sequence = self._sequence.get((receiver, group.key), 0) + 1
        self._sequence[receiver, group.key] = sequence
        return Notification(
            id=notification_id(receiver, group.key, sequence, now),
            receiver=receiver,
            group_key=group.key,
            group_labels=dict(group.labels),
            alerts=tuple(sent),
            created_at=now,
            external_url=self._external_url,
        )

    def _view(self, alert: AlertPayload, inhibition: Inhibition, now: float) -> AlertView:
        return AlertView(
            alert=alert,
            status=alert.status(now),
            silenced_by=self.silences.mutes(alert.labels, now),
            inhibited_by=inhibition.inhibited_by(alert.labels),
        )

    def _collect_garbage(self, now: float) -> None:
        for index in [i for i, g in self._groups.items() if not g.alerts]:
            del self._groups[index]
        grouped = {fp for g in self._groups.values() for fp in g.alerts}
        for fp in [fp for fp in self._alerts if fp not in grouped]:
            del self._alerts[fp]
        live = {(g.route.options.receiver, g.key) for g in self._groups.values()}
        self._sequence = {k: n for k, n in self._sequence.items() if k in live}
        self._log.collect_garbage(now)


def _needs_update(
    entry: LogEntry | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    send_resolved: bool,
    repeat_s: float,
    now: float,
) -> bool:
    """Alertmanager's DedupStage.needsUpdate."""
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        # Receivers that never heard of alerts that fired and resolved in between are not told.
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return now - entry.at >= repeat_s - _EPSILON_S


def _merge(old: AlertPayload | None, new: AlertPayload, now: float) -> AlertPayload:
    """A re-sent alert keeps the start of the activity it continues, as Alertmanager's store merges them."""
    if old is None or (old.ends_at is not None and old.ends_at <= now and new.starts_at > old.ends_at):
        return new
    if old.starts_at < new.starts_at:
        return AlertPayload(new.labels, new.annotations, old.starts_at, new.ends_at, new.generator_url, new.fingerprint)
    return new


def sort_alerts(alerts: Iterable[AlertPayload]) -> list[AlertPayload]:
    """Alerts in Alertmanager's notification order: by ``job``, then ``instance``, then label set."""
    return sorted(alerts, key=functools.cmp_to_key(_compare_alerts))


def _compare_alerts(a: AlertPayload, b: AlertPayload) -> int:
    for name in ("job", "instance"):
        a_value, b_value = a.labels.get(name), b.labels.get(name)
        if a_value is None and b_value is None:
            continue
        if a_value is None:
            return 1
        if b_value is None:
            return -1
        if a_value != b_value:
            return -1 if a_value < b_value else 1
    return _compare_label_sets(a.labels, b.labels)


def _compare_label_sets(a: dict[str, str], b: dict[str, str]) -> int:
    """Go's ``LabelSet.Before``: fewer labels first, then the first differing name or value."""
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    for name in sorted(set(a) | set(b)):
        if name not in a:
            return -1
        if name not in b:
            return 1
        if a[name] != b[name]:
            return -1 if a[name] < b[name] else 1
    return 0
