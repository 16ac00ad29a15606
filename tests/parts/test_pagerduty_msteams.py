"""PagerDuty and Microsoft Teams receivers through the durable outbox, against real HTTP servers on 127.0.0.1.

Neither PagerDuty nor Teams is reachable here, so harness/receivers.py stands in for both: the PagerDuty one
checks every event against the Events API v2 schema and limits PagerDuty publishes (400 otherwise) and keeps
the alerts the events opened; the Teams one checks the Adaptive Card message shape and the 28 KB limit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.state import StateDB
from exporters.delivery import OutcomeKind, Receiver
from exporters.notification import AlertPayload, Notification
from exporters.outbox import MIGRATIONS, Outbox, OutboxMetrics
from exporters.receivers import HEALING_GROUP_PREFIX
from exporters.receivers.msteams import MAX_MESSAGE_BYTES, MSTeamsReceiver, MSTeamsSettings, message
from exporters.receivers.pagerduty import PagerDutyReceiver, PagerDutySettings, change_event, dedup_key, event
from exporters.redact import REDACTED
from harness.receivers import (
    PagerDutyStandIn,
    Received,
    RecordingServer,
    pagerduty_problems,
    run_with_receiver,
    teams_problems,
    teams_stand_in,
)

pytestmark = pytest.mark.timeout(25)

T0 = 1_700_000_000.0
ROUTING_KEY = "e93facc04764012d7bfb002500d5d1a6"  # 32 characters, as PagerDuty's integration keys
GROUP = '{}:{alertname="Down"}'


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def alert(instance: str, *, resolved: bool = False, description: str = "it stopped answering") -> AlertPayload:
    labels = {"alertname": "Down", "instance": instance, "severity": "critical"}
    return AlertPayload(labels, {"summary": f"{instance} is down", "description": description}, T0 - 300,
                        T0 - 10 if resolved else None, "http://healwatch:9877/graph?g0.expr=up",
                        hashlib.sha256(instance.encode()).hexdigest()[:16])


def notification(seq: int, *alerts: AlertPayload, group_key: str = GROUP) -> Notification:
    return Notification(id=f"n-{seq}", receiver="r", group_key=group_key, group_labels={"alertname": "Down"},
                        alerts=alerts, created_at=T0, external_url="http://healwatch:9877")


def healing_notice(seq: int) -> Notification:
    notice = AlertPayload({"alertname": "HealwatchHealing", "service": "api", "incident_id": "inc-7",
                           "severity": "warning"}, {"summary": "api restarted after its check failed"},
                          T0, None, "", "0" * 16)
    return Notification(id=f"n-{seq}", receiver="r", group_key=HEALING_GROUP_PREFIX + "inc-7",
                        group_labels={"service": "api", "incident_id": "inc-7"}, alerts=(notice,), created_at=T0)


def pagerduty(url: str, **options: object) -> PagerDutyReceiver:
    settings = PagerDutySettings(**{"routing_key": ROUTING_KEY, "url": url + "/v2/enqueue", "source": "host1",
                                    "timeout_s": 5.0, **options})  # type: ignore[arg-type]
    return PagerDutyReceiver("r", settings)


def outbox_for(tmp_path: Path, receiver: Receiver, clock: Clock) -> Outbox:
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("outbox", MIGRATIONS)
    return Outbox(db.conn, {"r": receiver}, clock=clock, random=lambda: 1.0, metrics=OutboxMetrics(CollectorRegistry()),
                  log=structlog.get_logger())


async def down_then_up(outbox: Outbox, server: RecordingServer, client: httpx.AsyncClient, clock: Clock,
                       notifications: list[Notification]) -> None:
    """Enqueue while the server is down, retry twice, start it, deliver all (bounded)."""
    await server.stop()
    outbox.enqueue(notifications)
    for _ in range(2):
        await outbox.deliver_due(client)
        next_at = outbox.next_attempt_at()
        assert next_at is not None
        clock.now = next_at
    assert not server.attempts
    await server.start()
    for _ in range(50):
        if outbox.pending() == 0:
            return
        await outbox.deliver_due(client)
        clock.now = outbox.next_attempt_at() or clock.now
    raise AssertionError("the outbox did not drain")


# -- PagerDuty ----------------------------------------------------------------------------------------------

def test_pagerduty_down_then_up_triggers_resolves_and_changes_once_in_order(tmp_path: Path) -> None:
    """Firing, a repeat, resolved and a healer's notice, queued while PagerDuty is down, arrive once each, in order:
    one alert opened and resolved by the group's dedup key, the notice as a change event."""
    clock, pd = Clock(), PagerDutyStandIn()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox = outbox_for(tmp_path, pagerduty(server.url), clock)
        await down_then_up(outbox, server, client, clock, [
            notification(1, alert("a")), notification(2, alert("a"), alert("b")),
            notification(3, alert("a", resolved=True), alert("b", resolved=True)), healing_notice(4)])
        # The outbox keeps each group's order; the notice is a group of its own.
        events = [r.json() for r in server.received if r.path == "/v2/enqueue"]
        assert len(server.attempts) == 4 and len(events) == 3
        assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
        assert {e["dedup_key"] for e in events} == {hashlib.sha256(GROUP.encode()).hexdigest()}
        assert events[1]["payload"]["summary"] == "[FIRING:2] Down"
        assert events[1]["payload"]["custom_details"]["num_firing"] == 2
        assert pd.opened == 1 and pd.open == set()
        assert pd.changes[0]["payload"]["summary"] == "api restarted after its check failed"
        assert pd.changes[0]["payload"]["custom_details"]["incident_id"] == "inc-7"

    run_with_receiver(scenario, pd)


def test_pagerduty_lost_answer_and_restart_never_open_a_second_alert(tmp_path: Path) -> None:
    """PagerDuty takes the trigger but the 503 reaches us (the outbox retries), then a restarted agent's receiver
    repeats the group: the same dedup key each time, so one alert stays open. A 429 waits its Retry-After."""
    clock, pd = Clock(), PagerDutyStandIn()
    answers = [web.Response(status=429, headers={"Retry-After": "30"}), web.Response(status=503)]

    def handler(received: Received) -> web.Response:
        accepted = pd(received)
        return answers.pop() if answers else accepted

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outbox = outbox_for(tmp_path, pagerduty(server.url), clock)
        outbox.enqueue([notification(1, alert("a"))])
        await outbox.deliver_due(client)  # 503, though PagerDuty opened the alert
        clock.now = T0 + 1
        await outbox.deliver_due(client)  # 429
        assert outbox.next_attempt_at() == T0 + 31
        clock.now = T0 + 31
        await outbox.deliver_due(client)
        restarted = outbox_for(tmp_path, pagerduty(server.url), clock)
        restarted.enqueue([notification(2, alert("a"), alert("b"))])
        await restarted.deliver_due(client)
        assert len(server.attempts) == 4 and restarted.pending() == 0
        assert pd.opened == 1 and pd.open == {dedup_key(GROUP)}

    run_with_receiver(scenario, handler)


def test_pagerduty_refusal_is_final_and_the_routing_key_is_redacted(tmp_path: Path) -> None:
    """A 400 (here the stand-in echoes the event, routing key and all) fails at once with the key redacted."""

    def echo(received: Received) -> web.Response:
        return web.Response(status=400, text=received.body.decode())

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outcome = await pagerduty(server.url).send(client, notification(1, alert("a")), T0)
        assert outcome.kind is OutcomeKind.FAIL and outcome.status == 400
        assert ROUTING_KEY not in outcome.detail and REDACTED in outcome.detail

    run_with_receiver(scenario, echo)


def test_pagerduty_routing_key_file_is_read_at_send_and_redacted(tmp_path: Path) -> None:
    """A missing key file is retried; once written, its key is sent, and a refusal echoing it is redacted."""
    key_file = tmp_path / "routing_key"

    def echo(received: Received) -> web.Response:
        return web.Response(status=400, text=received.body.decode())

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = pagerduty(server.url, routing_key=None, routing_key_file=str(key_file))
        missing = await receiver.send(client, notification(1, alert("a")), T0)
        assert missing.kind is OutcomeKind.RETRY and "routing_key_file" in missing.detail
        key_file.write_text(ROUTING_KEY + "\n")
        refused = await receiver.send(client, notification(1, alert("a")), T0)
        assert server.attempts[0].json()["routing_key"] == ROUTING_KEY
        assert ROUTING_KEY not in refused.detail and REDACTED in refused.detail

    run_with_receiver(scenario, echo)


def test_pagerduty_events_stay_within_the_published_limits() -> None:
    """A 3000-character group label is cut to a 1024-character summary; 2000 long alerts drop custom_details to
    stay under 512 KB; both pass the stand-in's schema check, which refuses what breaks them (and change events
    to a ruleset's key, which PagerDuty documents as refused)."""
    settings = PagerDutySettings(routing_key=ROUTING_KEY, source="host1")
    long_group = notification(1, alert("a"))
    long_group = Notification(**{**long_group.__dict__, "group_labels": {"alertname": "x" * 3000}})
    trigger = event(long_group, settings, ROUTING_KEY)
    assert len(trigger["payload"]["summary"]) == 1024 and pagerduty_problems(trigger) == []
    huge = event(notification(2, *(alert(f"i{n}", description="d" * 300) for n in range(2000))), settings, ROUTING_KEY)
    assert len(json.dumps(huge)) < 512 * 1024 and "error" in huge["payload"]["custom_details"]
    assert pagerduty_problems(huge) == []
    broken = {**trigger, "payload": {**trigger["payload"], "severity": "fatal", "summary": "s" * 1025}}
    assert pagerduty_problems(broken) == ["payload.summary is longer than 1024 characters",
                                          "payload.severity must be one of critical, error, warning, info"]
    ruleset_key = "R" + ROUTING_KEY[1:]
    assert pagerduty_problems(change_event(healing_notice(3), settings, ruleset_key), change=True) == [
        "change events cannot be sent to a ruleset's routing key (one starting with R)"]


# -- Microsoft Teams ----------------------------------------------------------------------------------------

def test_teams_down_then_up_delivers_every_card_once_in_order(tmp_path: Path) -> None:
    """Firing, resolved and a healer's notice, queued while the webhook is down, arrive once each, in order, as
    cards the stand-in accepts (red title while firing, green once resolved)."""
    clock = Clock()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = MSTeamsReceiver("r", MSTeamsSettings(webhook_url=server.url + "/workflows/abc?sig=s3cr3t"))
        outbox = outbox_for(tmp_path, receiver, clock)
        await down_then_up(outbox, server, client, clock, [
            notification(1, alert("a")), notification(2, alert("a", resolved=True)), healing_notice(3)])
        cards = [r.json()["attachments"][0]["content"]["body"] for r in server.received]
        titles = [(c[0]["text"], c[0]["color"]) for c in cards]
        # The outbox keeps each group's order; the notice is a group of its own.
        assert [t for t in titles if "Down" in t[0]] == [("[FIRING:1] Down", "Attention"), ("[RESOLVED] Down", "Good")]
        assert ("api restarted after its check failed", "Attention") in titles
        assert "a is down" in cards[0][1]["text"] and "[Source](http://healwatch:9877/graph?g0.expr=up)" in cards[0][1]["text"]
        assert len(server.attempts) == 3

    run_with_receiver(scenario, teams_stand_in)


def test_teams_message_stays_under_28_kb_and_says_what_it_left_out(tmp_path: Path) -> None:
    """300 alerts with long descriptions: the card keeps whole alerts up to 28 KB and counts the rest; Teams'
    stand-in accepts it, and refuses a card without a body."""
    many = notification(1, *(alert(f"i{n}", description="slow " * 40) for n in range(300)))
    body = json.dumps(message(many, MSTeamsSettings(webhook_url="http://x")), separators=(",", ":")).encode()
    text = json.loads(body)["attachments"][0]["content"]["body"][1]["text"]
    shown = text.count("**FIRING**")
    assert len(body) <= MAX_MESSAGE_BYTES and 0 < shown < 300
    assert text.endswith(f"… and {300 - shown} more alerts not shown")
    assert teams_problems(json.loads(body)) == []
    bodiless = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                    "content": {"type": "AdaptiveCard", "version": "1.2"}}]}
    assert teams_problems(bodiless) == ["attachments[0].content.body must be a non-empty list"]


def test_teams_refusal_redacts_the_webhook_url() -> None:
    """A URL that answers 404 fails at once; the error names no part of the secret URL."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        url = server.url + "/workflows/abc?sig=s3cr3t"
        outcome = await MSTeamsReceiver("r", MSTeamsSettings(webhook_url=url)).send(client, notification(1, alert("a")), T0)
        assert outcome.kind is OutcomeKind.FAIL and "s3cr3t" not in outcome.detail

    run_with_receiver(scenario, lambda received: web.Response(status=404, text=f"no flow at {received.path}?sig=s3cr3t"))
