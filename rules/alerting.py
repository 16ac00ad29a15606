"""The alert state machine of an alerting rule, as Prometheus' rule manager runs it.

Everything here is a function of the state and the time it is given: the
group evaluates the expression and hands the result in with ``now``; template
expansion is injected. Times are seconds since the epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rules.model import NAME_LABEL, Alert, AlertState, Labels

RESOLVED_RETENTION_S = 15 * 60  # resolved alerts are kept (and re-sent) this long
ALERTS_METRIC = "ALERTS"
ALERTS_FOR_STATE_METRIC = "ALERTS_FOR_STATE"

# (template text, the sample's labels, the sample's value) -> expanded text
Expand = Callable[[str, Labels, float], str]
# an alert's labels -> (time of the last evaluation before the restart, its active-since time), or None
ForStateLookup = Callable[[Labels], "tuple[float, float] | None"]


class AlertEvalError(Exception):
    """An evaluation result the rule cannot turn into alerts."""


@dataclass
class AlertingRule:
    """An alerting rule and the alerts it keeps between evaluations."""

    name: str
    expr: str
    hold_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    active: dict[Labels, Alert] = field(default_factory=dict)

    def evaluate(
        self, result: Sequence[tuple[Labels, float]], now: float, expand: Expand, limit: int = 0
    ) -> list[tuple[Labels, float]]:
        """Advance every alert to ``now`` given the expression's result; return ALERTS/ALERTS_FOR_STATE samples."""
        fresh: dict[Labels, Alert] = {}
        for sample_labels, value in result:
            alert_labels = {k: v for k, v in sample_labels if k != NAME_LABEL}
            for name, text in self.labels.items():
                alert_labels[name] = expand(text, sample_labels, value)
            alert_labels["alertname"] = self.name
            key = Labels(alert_labels)
            if key in fresh:
                raise AlertEvalError("vector contains metrics with the same labelset after applying alert labels")
            annotations = {name: expand(text, sample_labels, value) for name, text in self.annotations.items()}
            fresh[key] = Alert(key, annotations, value, AlertState.PENDING, active_at=now)

        for key, alert in fresh.items():
            known = self.active.get(key)
            if known is not None and known.state != AlertState.INACTIVE:
                known.value, known.annotations = alert.value, alert.annotations
            else:
                self.active[key] = alert

        samples: list[tuple[Labels, float]] = []
        for key, alert in list(self.active.items()):
            if key not in fresh:
                keep_firing = False
                if alert.state == AlertState.FIRING and self.keep_firing_for_s > 0:
                    if alert.keep_firing_since is None:
                        alert.keep_firing_since = now
                    keep_firing = now - alert.keep_firing_since < self.keep_firing_for_s
                if alert.state == AlertState.PENDING or (
                    alert.resolved_at is not None and now - alert.resolved_at > RESOLVED_RETENTION_S
                ):
                    del self.active[key]
                if alert.state != AlertState.INACTIVE and not keep_firing:
                    alert.state = AlertState.INACTIVE
                    alert.resolved_at = now
                if not keep_firing:
                    continue
            else:
                alert.keep_firing_since = None
            if alert.state == AlertState.PENDING and now - alert.active_at >= self.hold_s:
                alert.state = AlertState.FIRING
                alert.fired_at = now
            samples.append((self._series(ALERTS_METRIC, alert, alertstate=str(alert.state)), 1.0))
            samples.append((self._series(ALERTS_FOR_STATE_METRIC, alert), float(int(alert.active_at))))

        count = sum(1 for alert in self.active.values() if alert.state != AlertState.INACTIVE)
        if limit and count > limit:
            self.active.clear()
            raise AlertEvalError(f"exceeded limit of {limit} with {count} alerts")
        return samples

    def restore(self, now: float, lookup: ForStateLookup, grace_period_s: float) -> None:
        """Restore active-since times after a restart, as Prometheus' RestoreForState does.

        ``lookup`` finds what was persisted for an alert within the outage tolerance. Rules
        whose ``for`` is shorter than the grace period are not restored: they simply wait again.
        """
        if self.hold_s < grace_period_s:
            return
        for alert in self.active.values():
            saved = lookup(alert.labels)
            if saved is None:
                continue
            down_at, active_at = saved
            remaining = self.hold_s - (down_at - active_at)
            if remaining <= 0:
                pass  # it was firing when we went down; the next evaluation fires it again
            elif remaining < grace_period_s:
                active_at = now - self.hold_s + grace_period_s
            else:
                active_at += now - down_at
            alert.active_at = active_at

    def alerts_to_send(self, now: float, resend_delay_s: float, interval_s: float) -> list[Alert]:
        """Copies of the alerts due for sending; each gets ``valid_until`` (its endsAt while firing)."""
        due = []
        for alert in self.active.values():
            if alert.needs_sending(now, resend_delay_s):
                alert.last_sent_at = now
                # Survives two missed evaluations or sends before Alertmanager resolves it by itself.
                alert.valid_until = now + 4 * max(resend_delay_s, interval_s)
                due.append(copy.copy(alert))
        return due

    @property
    def state(self) -> AlertState:
        """The highest state of the rule's alerts."""
        return max((alert.state for alert in self.active.values()), default=AlertState.INACTIVE)

    def _series(self, metric: str, alert: Alert, **extra: str) -> Labels:
        # Prometheus starts from the rule's unexpanded labels, then lays the alert's over them.
        merged = dict(self.labels)
        merged.update(alert.labels)
        merged.update({NAME_LABEL: metric, "alertname": self.name, **extra})
        return Labels(merged)
