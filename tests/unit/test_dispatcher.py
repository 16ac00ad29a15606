"""Aggregation groups and their timers, stepped through a synthetic clock (no sleeps)."""

from __future__ import annotations

from pathlib import Path

from agent.state import StateDB
from exporters.dispatcher import NFLOG_MIGRATIONS, Dispatcher, NotificationLog, sort_alerts
from exporters.inhibit import Inhibitor, InhibitRule
from exporters.matchers import parse_matcher
from exporters.notification import AlertPayload, Notification, fingerprint, payload_from_alert
from exporters.routing import RouteSpec, build_route
from exporters.silences import Silences, new_silence
from rules.model import Alert, AlertState, Labels

T0 = 1_700_000_000.0  # a realistic epoch; every time below is T0 plus seconds


def alert(name: str, starts_at: float = 0.0, ends_at: float | None = None, **labels: str) -> AlertPayload:
    return AlertPayload.of({"alertname": name, **labels}, T0 + starts_at, None if ends_at is None else T0 + ends_at)


def dispatcher(
    send_resolved: bool = True,
    silences: Silences | None = None,
    inhibitor: Inhibitor | None = None,
    **root: object,
) -> Dispatcher:
    spec = RouteSpec(**{"receiver": "ops", "group_by": ("alertname",), **root})  # type: ignore[arg-type]
    return Dispatcher(
        build_route(spec), inhibitor or Inhibitor(), silences or Silences(), send_resolved=lambda _: send_resolved
    )


def due(d: Dispatcher, at: float) -> list[Notification]:
    return d.due(T0 + at)


def names(notification: Notification) -> list[str]:
    return [a.labels.get("instance", a.labels["alertname"]) for a in notification.alerts]


def test_hundred_alerts_of_one_group_become_one_notification_after_group_wait() -> None:
    """100 alerts ingested in one evaluation are sent together, once, when group_wait (30s) has passed."""
    d = dispatcher()
    d.ingest([alert("DiskFull", instance=f"host{i:03}") for i in range(100)], T0)
    assert d.next_due() == T0 + 30
    assert due(d, 29.9) == []
    [sent] = due(d, 30)
    assert len(sent.alerts) == 100
    assert sent.status() == "firing"
    assert sent.group_key == '{}:{alertname="DiskFull"}'
    assert sent.group_labels == {"alertname": "DiskFull"}
    assert sent.common_labels() == {"alertname": "DiskFull"}
    assert due(d, 31) == []
    assert d.next_due() == T0 + 330


def test_new_alert_joining_waits_for_group_interval() -> None:
    """An alert joining a notified group is sent with the group at the next group_interval beat, not earlier."""
    d = dispatcher()
    d.ingest([alert("DiskFull", instance="a")], T0)
    due(d, 30)
    d.ingest([alert("DiskFull", 40, instance="b")], T0 + 40)
    assert due(d, 70) == []
    assert due(d, 329) == []
    [sent] = due(d, 330)
    assert names(sent) == ["a", "b"]


def test_unchanged_group_repeats_after_repeat_interval_rounded_up_to_the_beat() -> None:
    """With group_interval 5m and repeat_interval 55m+, the repeat comes on the beat at 60m, and not before."""
    d = dispatcher(group_interval_s=300.0, repeat_interval_s=3300.0 + 1)
    d.ingest([alert("DiskFull", instance="a")], T0)
    assert len(due(d, 30)) == 1
    for beat in range(330, 3630, 300):
        assert due(d, beat) == [], beat
    [repeat] = due(d, 3630)
    assert names(repeat) == ["a"]
    assert due(d, 3930) == []


def test_resolved_is_sent_once_and_the_group_is_dropped() -> None:
    """A resolved alert is notified once at the next beat; re-sends of it (as Prometheus does) send nothing."""
    d = dispatcher()
    firing = alert("DiskFull", instance="a")
    d.ingest([firing], T0)
    [first] = due(d, 30)
    d.ingest([alert("DiskFull", 0, 100, instance="a")], T0 + 100)
    [resolved] = due(d, 330)
    assert resolved.status() == "resolved"
    assert resolved.alerts[0].status(resolved.created_at) == "resolved"
    assert resolved.id != first.id
    assert d.state() == [] and d.next_due() is None
    for minute in range(6, 16):
        d.ingest([alert("DiskFull", 0, 100, instance="a")], T0 + minute * 60)
        assert due(d, minute * 60 + 30) == []


def test_partial_resolution_is_sent_with_the_firing_alerts() -> None:
    """When one of two alerts resolves, the receiver gets both, one marked resolved; the next beat sends nothing."""
    d = dispatcher()
    d.ingest([alert("DiskFull", instance="a"), alert("DiskFull", instance="b")], T0)
    due(d, 30)
    d.ingest([alert("DiskFull", 0, 200, instance="b")], T0 + 200)
    [sent] = due(d, 330)
    assert [(n, a.status(sent.created_at)) for n, a in zip(names(sent), sent.alerts)] == [
        ("a", "firing"), ("b", "resolved")
    ]
    assert sent.status() == "firing"
    assert due(d, 630) == []


def test_send_resolved_false_sends_no_resolved_message_and_refires_as_new() -> None:
    """Without send_resolved the resolution is only logged; the alert firing again is a first notification again."""
    d = dispatcher(send_resolved=False)
    d.ingest([alert("DiskFull", instance="a"), alert("DiskFull", instance="b")], T0)
    due(d, 30)
    d.ingest([alert("DiskFull", 0, 200, instance="b")], T0 + 200)
    assert due(d, 330) == []
    d.ingest([alert("DiskFull", 0, 400, instance="a")], T0 + 400)
    assert due(d, 630) == []
    assert d.state() == []
    d.ingest([alert("DiskFull", 700, instance="a")], T0 + 700)
    assert due(d, 729) == []
    [again] = due(d, 730)
    assert names(again) == ["a"] and again.status() == "firing"


def test_resolve_wait_sends_the_all_resolved_notification_early() -> None:
    """With resolve_wait 10s a group whose alerts all resolved is told 10s after the last ended, not at the beat."""
    d = dispatcher(resolve_wait_s=10.0)
    d.ingest([alert("DiskFull", instance="a"), alert("DiskFull", instance="b")], T0)
    due(d, 30)
    d.ingest([alert("DiskFull", 0, 100, instance="a")], T0 + 100)
    assert d.next_due() == T0 + 330  # one still firing: the beat as usual
    d.ingest([alert("DiskFull", 0, 120, instance="b")], T0 + 121)
    assert d.next_due() == T0 + 130
    assert due(d, 129) == []
    [sent] = due(d, 130)
    assert sent.status() == "resolved" and names(sent) == ["a", "b"]
    assert d.next_due() is None


def test_alert_older_than_group_wait_flushes_at_once() -> None:
    """An alert that started longer than group_wait ago (e.g. after a restart) is not held back again."""
    d = dispatcher()
    d.ingest([alert("DiskFull", -600, instance="a")], T0)
    assert d.next_due() == T0
    assert len(due(d, 0)) == 1


def test_continue_notifies_every_matching_receiver() -> None:
    """A critical alert reaches the pager route and, through continue, the team route, each with its own groupKey."""
    route = build_route(RouteSpec(
        receiver="ops",
        group_by=("alertname",),
        routes=(
            RouteSpec(receiver="pager", matchers=(parse_matcher('severity="critical"'),), continue_=True),
            RouteSpec(receiver="team-db", matchers=(parse_matcher('service=~"db.*"'),), group_by=("...",)),
        ),
    ))
    d = Dispatcher(route, Inhibitor(), Silences(), send_resolved=lambda _: True)
    d.ingest([alert("Down", severity="critical", service="db1")], T0)
    sent = sorted(due(d, 30), key=lambda n: n.receiver)
    assert [(n.receiver, n.group_key) for n in sent] == [
        ("pager", '{}/{severity="critical"}:{alertname="Down"}'),
        ("team-db", '{}/{service=~"db.*"}:{alertname="Down", service="db1", severity="critical"}'),
    ]


def test_silenced_alerts_are_not_sent_but_stay_visible() -> None:
    """A silenced alert is left out of notifications (a fully silenced group sends none) and state() names the silence."""
    silences = Silences()
    silence = silences.add(new_silence(['instance="a"'], T0, T0 + 3600, "ops", "maintenance"), T0)
    d = dispatcher(silences=silences, group_by=("alertname", "instance"))
    d.ingest([alert("DiskFull", instance="a"), alert("DiskFull", instance="b")], T0)
    [sent] = due(d, 30)
    assert names(sent) == ["b"]
    views = {v.labels["instance"]: v for v in d.state()}
    assert views["a"].alerts[0].silenced_by == (silence.id,)
    assert views["a"].alerts[0].state == "suppressed"
    assert views["b"].alerts[0].state == "active"
    silences.expire(silence.id, T0 + 100)
    [unsilenced] = due(d, 330)
    assert names(unsilenced) == ["a"]


def test_inhibited_alerts_are_not_sent_but_stay_visible() -> None:
    """HostDown on an instance mutes that instance's warnings; state() names the inhibiting alert's fingerprint."""
    rule = InhibitRule((parse_matcher('alertname="HostDown"'),), (parse_matcher('severity="warning"'),), ("instance",))
    d = dispatcher(inhibitor=Inhibitor([rule]))
    host_down = alert("HostDown", instance="a", severity="critical")
    d.ingest([host_down, alert("DiskFull", instance="a", severity="warning"),
              alert("DiskFull", instance="b", severity="warning")], T0)
    sent = {n.group_labels["alertname"]: names(n) for n in due(d, 30)}
    assert sent == {"HostDown": ["a"], "DiskFull": ["b"]}
    disk = next(v for v in d.state() if v.labels == {"alertname": "DiskFull"})
    assert [(a.alert.labels["instance"], a.inhibited_by) for a in disk.alerts] == [
        ("a", (host_down.fingerprint,)), ("b", ())
    ]
    d.ingest([alert("HostDown", 0, 60, instance="a", severity="critical")], T0 + 60)
    notified = {n.group_labels["alertname"]: n for n in due(d, 330)}
    assert names(notified["DiskFull"]) == ["a", "b"]
    assert notified["HostDown"].status() == "resolved"


def test_notification_alert_order_is_alertmanagers() -> None:
    """Alerts are ordered by job, then instance (alerts having them first), then by label set."""
    alerts = [
        alert("X", zone="b"), alert("X", instance="b"), alert("X", job="b"),
        alert("X", instance="a"), alert("X", job="a", instance="z"), alert("X", job="a", instance="y"),
    ]
    ordered = [(a.labels.get("job"), a.labels.get("instance"), a.labels.get("zone")) for a in sort_alerts(alerts)]
    assert ordered == [
        ("a", "y", None), ("a", "z", None), ("b", None, None), (None, "a", None), (None, "b", None), (None, None, "b")
    ]


def test_fingerprint_is_alertmanagers_fnv1a() -> None:
    """The empty label set hashes to FNV-1a's offset basis, and label order does not matter."""
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1", "b": "2"}) != fingerprint({"a": "12"})


def test_payload_from_alert_is_what_prometheus_sends() -> None:
    """startsAt is the firing time, endsAt the resolved or valid-until time, generatorURL links the expression."""
    rule_alert = Alert(Labels({"alertname": "Up", "job": "api"}), {"summary": "s"}, 0.0, AlertState.FIRING,
                       active_at=T0, fired_at=T0 + 60, valid_until=T0 + 240)
    payload = payload_from_alert(rule_alert, "http://hw:9877", 'up{job="api"} == 0')
    assert (payload.starts_at, payload.ends_at) == (T0 + 60, T0 + 240)
    assert payload.generator_url == "http://hw:9877/graph?g0.expr=up%7Bjob%3D%22api%22%7D+%3D%3D+0&g0.tab=1"
    assert payload.labels == {"alertname": "Up", "job": "api"}
    assert payload.fingerprint == fingerprint(payload.labels)
    rule_alert.resolved_at = T0 + 120
    assert payload_from_alert(rule_alert, "", "x").ends_at == T0 + 120


def test_persisted_notification_log_prevents_renotifying_after_a_restart(tmp_path: Path) -> None:
    """A restarted dispatcher with its SQLite notification log stays quiet about unchanged groups; without it, it repeats."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("nflog", NFLOG_MIGRATIONS)
    route = build_route(RouteSpec(receiver="ops", group_by=("alertname",)))

    def start(log: NotificationLog | None) -> Dispatcher:
        return Dispatcher(route, Inhibitor(), Silences(), send_resolved=lambda _: True, notification_log=log)

    log = NotificationLog(db.conn)
    before = start(log)
    before.ingest([alert("DiskFull", instance="a")], T0)
    assert len(due(before, 30)) == 1
    assert NotificationLog(db.conn).get("ops", before.state()[0].group_key) is None  # the caller writes it
    log.write_changes(db.conn)
    log.mark_written()

    restarted = start(NotificationLog(db.conn))
    restarted.ingest([alert("DiskFull", instance="a")], T0 + 100)
    assert restarted.next_due() == T0 + 100  # an old alert flushes at once, and the log says it was sent
    assert due(restarted, 100) == []
    restarted.ingest([alert("DiskFull", 0, 200, instance="a")], T0 + 200)
    [resolved] = due(restarted, 400)
    assert resolved.status() == "resolved"

    forgetful = start(None)
    forgetful.ingest([alert("DiskFull", instance="a")], T0 + 100)
    assert len(due(forgetful, 100)) == 1
    db.close()
