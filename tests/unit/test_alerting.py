"""The alert state machine against Prometheus' rule-manager semantics, on a stepped clock."""

from __future__ import annotations

import pytest

from rules.alerting import RESOLVED_RETENTION_S, AlertEvalError, AlertingRule
from rules.model import AlertState, Labels

T0 = 1_700_000_000.0
CPU = Labels.of("cpu_busy", {"instance": "a"})


def plain(text: str, labels: Labels, value: float) -> str:
    """A stand-in expander that only knows {{ $value }} and {{ $labels.instance }}, enough to see it called."""
    return text.replace("{{ $value }}", f"{value:g}").replace("{{ $labels.instance }}", labels.get("instance"))


def test_an_alert_pends_for_its_hold_then_fires() -> None:
    """Pending until `for` has passed since it became active, then firing, with ALERTS series for both."""
    rule = AlertingRule("HighCPU", "cpu_busy > 0.8", hold_s=60, labels={"severity": "page"})
    samples = rule.evaluate([(CPU, 0.9)], T0, plain)
    assert samples == [
        (Labels({"__name__": "ALERTS", "alertname": "HighCPU", "alertstate": "pending", "instance": "a",
                 "severity": "page"}), 1.0),
        (Labels({"__name__": "ALERTS_FOR_STATE", "alertname": "HighCPU", "instance": "a", "severity": "page"}),
         float(int(T0))),
    ]
    rule.evaluate([(CPU, 0.9)], T0 + 59, plain)
    assert rule.state == AlertState.PENDING
    rule.evaluate([(CPU, 0.95)], T0 + 60, plain)
    (alert,) = rule.active.values()
    assert (alert.state, alert.fired_at, alert.active_at, alert.value) == (AlertState.FIRING, T0 + 60, T0, 0.95)


def test_a_pending_alert_that_clears_is_dropped_unsent() -> None:
    """A condition that stops before `for` leaves nothing behind and nothing to send."""
    rule = AlertingRule("HighCPU", "x", hold_s=60)
    rule.evaluate([(CPU, 1)], T0, plain)
    assert rule.alerts_to_send(T0, 60, 15) == []
    assert rule.evaluate([], T0 + 15, plain) == []
    assert rule.active == {}


def test_a_resolved_alert_is_sent_once_and_kept_for_fifteen_minutes() -> None:
    """Resolution is sent at once, then the inactive alert is retained 15 minutes and dropped."""
    rule = AlertingRule("Down", "up == 0")
    rule.evaluate([(CPU, 0)], T0, plain)
    (sent,) = rule.alerts_to_send(T0, 60, 15)
    assert sent.state == AlertState.FIRING and sent.valid_until == T0 + 240
    assert rule.evaluate([], T0 + 15, plain) == []
    (resolved,) = rule.alerts_to_send(T0 + 15, 60, 15)
    assert (resolved.state, resolved.resolved_at) == (AlertState.INACTIVE, T0 + 15)
    assert rule.alerts_to_send(T0 + 30, 60, 15) == []
    rule.evaluate([], T0 + 15 + RESOLVED_RETENTION_S, plain)
    assert len(rule.active) == 1
    rule.evaluate([], T0 + 15 + RESOLVED_RETENTION_S + 1, plain)
    assert rule.active == {}


def test_firing_alerts_are_resent_after_the_resend_delay() -> None:
    """While firing, an alert is re-sent once the resend delay has passed, with endsAt pushed ahead."""
    rule = AlertingRule("Down", "up == 0")
    rule.evaluate([(CPU, 0)], T0, plain)
    assert len(rule.alerts_to_send(T0, 60, 15)) == 1
    for step in (15, 30, 45, 60):
        rule.evaluate([(CPU, 0)], T0 + step, plain)
        assert rule.alerts_to_send(T0 + step, 60, 15) == []
    rule.evaluate([(CPU, 0)], T0 + 75, plain)
    (again,) = rule.alerts_to_send(T0 + 75, 60, 15)
    assert again.valid_until == T0 + 75 + 240


def test_keep_firing_for_counts_from_the_first_false_evaluation_and_resets() -> None:
    """keep_firing_for holds a firing alert after the condition clears, and restarts when it recurs."""
    rule = AlertingRule("Flaky", "x", keep_firing_for_s=30)
    rule.evaluate([(CPU, 1)], T0, plain)
    rule.evaluate([], T0 + 10, plain)
    rule.evaluate([], T0 + 30, plain)
    assert rule.state == AlertState.FIRING
    rule.evaluate([(CPU, 1)], T0 + 35, plain)
    rule.evaluate([], T0 + 50, plain)
    rule.evaluate([], T0 + 75, plain)
    assert rule.state == AlertState.FIRING  # 25 s since the new first false evaluation
    rule.evaluate([], T0 + 80, plain)
    assert rule.state == AlertState.INACTIVE
    (alert,) = rule.active.values()
    assert alert.resolved_at == T0 + 80


def test_labels_and_annotations_are_expanded_per_sample() -> None:
    """Rule labels and annotations go through the expander with each sample's labels and value."""
    rule = AlertingRule("HighCPU", "x", labels={"where": "{{ $labels.instance }}"},
                        annotations={"summary": "CPU at {{ $value }}"})
    rule.evaluate([(CPU, 0.5)], T0, plain)
    (alert,) = rule.active.values()
    assert alert.labels == Labels({"alertname": "HighCPU", "instance": "a", "where": "a"})
    assert alert.annotations == {"summary": "CPU at 0.5"}


def test_labels_colliding_after_templating_are_an_evaluation_error() -> None:
    """Two samples that map to the same alert labels fail the evaluation, as in Prometheus."""
    rule = AlertingRule("X", "x", labels={"instance": "same"})
    with pytest.raises(AlertEvalError, match="same labelset after applying alert labels"):
        rule.evaluate([(CPU, 1), (Labels.of("cpu_busy", {"instance": "b"}), 1)], T0, plain)


def test_the_alert_limit_clears_the_rule() -> None:
    """More active alerts than the group limit is an error and resets the rule's alerts."""
    rule = AlertingRule("X", "x")
    with pytest.raises(AlertEvalError, match="exceeded limit of 1 with 2 alerts"):
        rule.evaluate([(CPU, 1), (Labels.of("cpu_busy", {"instance": "b"}), 1)], T0, plain, limit=1)
    assert rule.active == {}


@pytest.mark.parametrize(
    ("active_at", "down_at", "expected_active_at"),
    [
        # Already firing before the outage: active-since kept, so it fires again at once.
        (T0 - 3600, T0 - 60, T0 - 3600),
        # 25 of 30 minutes pending, 5 remaining < 10 m grace: remaining becomes the grace period.
        (T0 - 1800 - 60, T0 - 300 - 60, T0 - 1800 + 600),
        # 5 of 30 minutes pending: the outage is added to active-since (the remaining 25 minutes still wait).
        (T0 - 600, T0 - 300, T0 - 300),
    ],
)
def test_restore_after_restart_follows_prometheus(active_at: float, down_at: float, expected_active_at: float) -> None:
    """RestoreForState: firing stays firing, nearly-due waits the grace period, else the downtime is added."""
    rule = AlertingRule("Long", "x", hold_s=1800)
    rule.evaluate([(CPU, 1)], T0, plain)
    (alert,) = rule.active.values()
    rule.restore(T0, lambda labels: (down_at, active_at) if labels == alert.labels else None, grace_period_s=600)
    assert alert.active_at == expected_active_at


def test_rules_shorter_than_the_grace_period_are_not_restored() -> None:
    """A `for` below the grace period simply waits again after a restart."""
    rule = AlertingRule("Short", "x", hold_s=300)
    rule.evaluate([(CPU, 1)], T0, plain)
    rule.restore(T0, lambda labels: (T0 - 10, T0 - 1000), grace_period_s=600)
    (alert,) = rule.active.values()
    assert alert.active_at == T0
