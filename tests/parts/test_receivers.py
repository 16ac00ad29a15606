"""Receivers against real HTTP servers on 127.0.0.1.

Slack is out of reach here, so a local server stands in for its incoming
webhook (checking every message against Slack's published Block Kit limits) and
for the two Web API methods the app mode uses; the generic webhook goes to a
receiver that checks the payload shape and the HMAC signature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from agent.state import StateDB
from exporters.delivery import Outcome, OutcomeKind, retry_after_s
from exporters.notification import AlertPayload, Notification
from exporters.receivers.slack import SlackReceiver, SlackSettings
from exporters.receivers.slack_app import MIGRATIONS as SLACK_APP_MIGRATIONS
from exporters.receivers.slack_app import SlackAppReceiver, SlackAppSettings
from exporters.receivers.webhook import (
    GO_ZERO_TIME,
    WebhookReceiver,
    WebhookSettings,
    rfc3339,
)
from exporters.redact import REDACTED, Redactor
from harness.receivers import Received, RecordingServer, run_with_receiver

pytestmark = pytest.mark.timeout(20)

NOW = 1_700_000_000.0
SLACK_HOOK_PATH = "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
BOT_TOKEN = "xoxb-1234-5678-abcdefghijkl"
HMAC_SECRET = "s3cret-hmac-key"


def alert(name: str = "HighLatency", *, resolved: bool = False, **labels: str) -> AlertPayload:
    all_labels = {"alertname": name, "severity": "critical", "service": "api", **labels}
    return AlertPayload(
        labels=all_labels,
        annotations={"summary": f"{name} on {labels.get('instance', 'api')}", "description": "p99 above 1s",
                     "runbook_url": "https://runbooks.example/latency"},
        starts_at=NOW - 300,
        ends_at=NOW - 10 if resolved else NOW + 240,
        generator_url="http://healwatch:9877/graph?g0.expr=up&g0.tab=1",
        fingerprint=hashlib.sha256(repr(sorted(all_labels.items())).encode()).hexdigest()[:16],
    )


def notification(*alerts: AlertPayload, receiver: str = "team", key: str = "1") -> Notification:
    return Notification(
        id=f"{receiver}-{key}", receiver=receiver, group_key='{}:{alertname="HighLatency", service="api"}',
        group_labels={"alertname": "HighLatency", "service": "api"}, alerts=alerts, created_at=NOW,
        external_url="http://healwatch:9877",
    )


# -- Slack's published limits, checked by the stand-in ------------------------------------------

def slack_problems(message: dict[str, Any]) -> list[str]:
    """What Slack would reject in an incoming-webhook message, by its Block Kit reference limits."""
    problems = []
    if not isinstance(message.get("text"), str) or len(message["text"]) > 40_000:
        problems.append("text missing or over 40,000 characters")
    blocks = message.get("blocks", [])
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks, more than 50")
    for index, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            text = block["text"]
            if text.get("type") != "plain_text" or not 0 < len(text["text"]) <= 150:
                problems.append(f"block {index}: header must be plain_text of 1..150 characters")
        elif kind == "section":
            text = block["text"]
            if text.get("type") not in ("mrkdwn", "plain_text") or not 0 < len(text["text"]) <= 3000:
                problems.append(f"block {index}: section text must be 1..3000 characters")
        elif kind == "context":
            elements = block["elements"]
            if not 0 < len(elements) <= 10 or any(len(e["text"]) > 3000 for e in elements):
                problems.append(f"block {index}: context must hold 1..10 elements of at most 3000 characters")
        else:
            problems.append(f"block {index}: unexpected type {kind!r}")
    return problems


def slack_webhook(received: Received) -> web.Response:
    if received.path != SLACK_HOOK_PATH:
        return web.Response(status=404, text="no_team")
    problems = slack_problems(received.json())
    return web.Response(status=400, text="invalid_blocks: " + "; ".join(problems)) if problems else web.Response(text="ok")


def slack_receiver(server: RecordingServer, **settings: Any) -> SlackReceiver:
    return SlackReceiver("ops-slack", SlackSettings(webhook_url=server.url + SLACK_HOOK_PATH, **settings))


def section_texts(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]


def test_slack_message_marks_status_counts_and_differing_labels() -> None:
    """A mixed group shows [FIRING:2], '2 firing, 1 resolved', per-alert instance labels, links, and the overrides."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = slack_receiver(server, channel="#ops", username="healwatch")
        group = notification(alert(instance="a"), alert(instance="b"), alert(instance="c", resolved=True))
        assert await receiver.send(client, group, NOW) == Outcome.ok(200)
        message = server.received[0].json()
        assert message["channel"] == "#ops" and message["username"] == "healwatch"
        assert message["blocks"][0]["text"]["text"] == "[FIRING:2] HighLatency api"
        texts = section_texts(message)
        assert texts[0].startswith("*2 firing, 1 resolved*") and "`severity=critical`" in texts[0]
        assert [t.split("\n")[0] for t in texts[1:]] == ["*FIRING* · *HighLatency* · severity critical"] * 2 + [
            "*RESOLVED* · *HighLatency* · severity critical"]
        assert "`instance=a`" in texts[1] and "service=" not in texts[1]
        assert "<http://healwatch:9877/graph?g0.expr=up&g0.tab=1|Source>" in texts[1]
        assert "<https://runbooks.example/latency|Runbook>" in texts[1]
        assert message["text"].startswith("[FIRING:2] HighLatency api\n2 firing, 1 resolved")

    run_with_receiver(scenario, slack_webhook)


def test_slack_resolved_group_is_marked_resolved() -> None:
    """A group whose alerts all resolved is titled [RESOLVED]."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        await slack_receiver(server).send(client, notification(alert(resolved=True)), NOW)
        assert server.received[0].json()["blocks"][0]["text"]["text"] == "[RESOLVED] HighLatency api"

    run_with_receiver(scenario, slack_webhook)


def test_slack_huge_group_stays_within_slack_limits() -> None:
    """300 alerts with 5,000-character annotations and a 400-character group label still pass Slack's limits."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        long_text = "x<&>" * 1250
        alerts = tuple(
            AlertPayload({"alertname": "Big", "instance": f"host-{i}", "zone": "z" * 400},
                         {"summary": long_text, "description": long_text}, NOW - 60, None, "", f"{i:016x}")
            for i in range(300)
        )
        group = dataclasses.replace(notification(*alerts), group_labels={"zone": "z" * 400})
        outcome = await slack_receiver(server).send(client, group, NOW)
        assert outcome.kind is OutcomeKind.OK, outcome.detail
        message = server.received[0].json()
        assert message["blocks"][0]["text"]["text"].endswith("…")
        assert "300 firing, 0 resolved" in section_texts(message)[0]
        assert message["blocks"][-1]["type"] == "context" and "more alerts not shown" in message["blocks"][-1]["elements"][0]["text"]
        assert "&lt;&amp;&gt;" in section_texts(message)[1]  # user text cannot inject Slack links or mentions

    run_with_receiver(scenario, slack_webhook)


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry_after"),
    [
        (200, "not ok", {}, OutcomeKind.FAIL, None),
        (404, "channel_not_found", {}, OutcomeKind.FAIL, None),
        (500, "rollup_error", {}, OutcomeKind.RETRY, None),
        (429, "rate limited", {"Retry-After": "7"}, OutcomeKind.RETRY, 7.0),
    ],
)
def test_slack_outcomes_follow_alertmanager(
    status: int, body: str, headers: dict[str, str], kind: OutcomeKind, retry_after: float | None
) -> None:
    """Slack's answers map to outcomes as Alertmanager judges them: 200 needs 'ok'; 5xx/429 retry; other 4xx fail."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        outcome = await slack_receiver(server).send(client, notification(alert()), NOW)
        assert (outcome.kind, outcome.retry_after_s) == (kind, retry_after)
        assert body in outcome.detail and SLACK_HOOK_PATH not in outcome.detail

    run_with_receiver(scenario, lambda received: web.Response(status=status, text=body, headers=headers))


def test_slack_connection_error_is_retried_without_the_url() -> None:
    """A refused connection is retryable, and the error names neither the hook's path nor its secret parts."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = slack_receiver(server)
        await server.stop()
        outcome = await receiver.send(client, notification(alert()), NOW)
        assert outcome.kind is OutcomeKind.RETRY
        assert "XXXXXXXX" not in outcome.detail and "ConnectError" in outcome.detail

    run_with_receiver(scenario)


# -- generic webhook --------------------------------------------------------------------------------

ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
PAYLOAD_KEYS = {"receiver", "status", "alerts", "groupLabels", "commonLabels", "commonAnnotations", "externalURL",
                "version", "groupKey", "truncatedAlerts"}


def checking_webhook(token: str) -> Callable[[Received], web.Response]:
    """A webhook endpoint that accepts only a signed, authenticated, well-shaped version-4 payload."""

    def handle(received: Received) -> web.Response:
        expected = "sha256=" + hmac.new(HMAC_SECRET.encode(), received.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(received.headers.get("X-Healwatch-Signature", ""), expected):
            return web.Response(status=401, text="bad signature")
        if received.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=403, text=f"bad token {received.headers.get('Authorization')}")
        payload = received.json()
        if set(payload) != PAYLOAD_KEYS or any(set(a) != ALERT_KEYS for a in payload["alerts"]):
            return web.Response(status=422, text="bad shape")
        return web.Response(status=200)

    return handle


def test_webhook_posts_signed_alertmanager_payload(tmp_path: Path) -> None:
    """The payload has Alertmanager's version-4 shape, an HMAC over the exact body, the file's token and the key."""
    token_file = tmp_path / "token"
    token_file.write_text("file-token-123\n")

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = WebhookReceiver("pager", WebhookSettings(
            url=server.url + "/hook", bearer_token_file=str(token_file), hmac_secret=HMAC_SECRET,
            headers={"X-Team": "ops"}))
        group = notification(alert(instance="a"), alert(instance="b", resolved=True), receiver="pager")
        assert await receiver.send(client, group, NOW) == Outcome.ok(200)
        received = server.received[0]
        assert received.headers["Idempotency-Key"] == "pager-1" and received.headers["X-Team"] == "ops"
        payload = received.json()
        assert payload["version"] == "4" and payload["status"] == "firing" and payload["receiver"] == "pager"
        assert payload["groupKey"] == '{}:{alertname="HighLatency", service="api"}'
        assert payload["commonLabels"] == {"alertname": "HighLatency", "severity": "critical", "service": "api"}
        firing, resolved = payload["alerts"]
        assert (firing["status"], firing["endsAt"]) == ("firing", GO_ZERO_TIME)
        assert (resolved["status"], resolved["endsAt"]) == ("resolved", rfc3339(NOW - 10))
        assert firing["startsAt"] == "2023-11-14T22:08:20Z" and payload["truncatedAlerts"] == 0

    run_with_receiver(scenario, checking_webhook("file-token-123"))


def test_webhook_max_alerts_truncates_like_alertmanager() -> None:
    """With max_alerts 2, five alerts send the first two and truncatedAlerts 3; common labels describe the two."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = WebhookReceiver("pager", WebhookSettings(url=server.url + "/hook", max_alerts=2))
        alerts = [alert(instance="same", zone=f"z{i}") for i in range(5)]
        await receiver.send(client, notification(*alerts), NOW)
        payload = server.received[0].json()
        assert len(payload["alerts"]) == 2 and payload["truncatedAlerts"] == 3
        assert payload["commonLabels"]["instance"] == "same" and "zone" not in payload["commonLabels"]

    run_with_receiver(scenario)


def test_webhook_refusal_fails_at_once_with_truncated_redacted_body() -> None:
    """A 400 fails without retry; the error quotes the first KiB of the body with the token and HMAC key redacted."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = WebhookReceiver("pager", WebhookSettings(url=server.url + "/hook?key=url-secret-1",
                                                            bearer_token="tok-abcdef", hmac_secret=HMAC_SECRET))
        outcome = await receiver.send(client, notification(alert()), NOW)
        assert outcome.kind is OutcomeKind.FAIL and outcome.status == 400
        assert outcome.detail.startswith(f"HTTP 400: rejected {REDACTED} {REDACTED}")
        assert "tok-abcdef" not in outcome.detail and HMAC_SECRET not in outcome.detail
        assert outcome.detail.endswith("(3012 more bytes)") and len(outcome.detail) < 1100

    run_with_receiver(scenario, lambda r: web.Response(status=400, text=f"rejected tok-abcdef {HMAC_SECRET} " + "y" * 4000))


# -- Slack app mode: chat.postMessage once, then chat.update --------------------------------------

class SlackWebApi:
    """A local stand-in of chat.postMessage and chat.update, answering as Slack's Web API does."""

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: str | None = None

    def __call__(self, received: Received) -> web.Response:
        method = received.path.rsplit("/", 1)[-1]
        body = received.json()
        self.calls.append((method, body))
        if received.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.fail_with:
            return web.json_response({"ok": False, "error": self.fail_with})
        problems = slack_problems(body) if "blocks" in body else []
        if problems:
            return web.json_response({"ok": False, "error": "invalid_blocks", "problems": problems})
        if method == "chat.postMessage":
            ts = f"1700000000.{len(self.calls):06d}"
            self.messages[ts] = body
            return web.json_response({"ok": True, "channel": "C0OPS", "ts": ts})
        if method == "chat.update":
            if body.get("channel") != "C0OPS" or body.get("ts") not in self.messages:
                return web.json_response({"ok": False, "error": "message_not_found"})
            self.messages[body["ts"]] = body
            return web.json_response({"ok": True, "channel": "C0OPS", "ts": body["ts"]})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)


def healing(service: str = "api", summary: str = "restart step failed: exit status 1") -> Notification:
    notice = AlertPayload.of({"alertname": "HealwatchHealing", "service": service, "incident_id": "inc-7",
                              "severity": "warning"}, starts_at=NOW, annotations={"summary": summary})
    return Notification(id="heal-1", receiver="team", group_key="healing:inc-7",
                        group_labels={"service": service, "incident_id": "inc-7"}, alerts=(notice,), created_at=NOW)


def test_slack_healing_notice_is_one_short_message() -> None:
    """A healer's notice is one section naming severity, service and incident, within Slack's limits."""

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        assert (await slack_receiver(server).send(client, healing(), NOW)).kind is OutcomeKind.OK
        message = server.received[0].json()
        assert message["text"] == "[WARNING] api: restart step failed: exit status 1 (incident inc-7)"
        assert section_texts(message) == ["*WARNING* · *api* · incident `inc-7`\nrestart step failed: exit status 1"]

    run_with_receiver(scenario, slack_webhook)


def test_slack_app_keeps_one_living_message_per_group(tmp_path: Path) -> None:
    """Post once, update as alerts join and resolve (also after a restart), thread healing notices, then post anew."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("slack_app", SLACK_APP_MIGRATIONS)
    api = SlackWebApi()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        settings = SlackAppSettings(bot_token=BOT_TOKEN, channel="#ops", api_url=server.url + "/api/")
        receiver = SlackAppReceiver("ops-app", settings, db.conn)
        assert (await receiver.send(client, notification(alert(instance="a")), NOW)).kind is OutcomeKind.OK
        await receiver.send(client, notification(alert(instance="a"), alert(instance="b")), NOW)
        await receiver.send(client, healing(), NOW)
        restarted = SlackAppReceiver("ops-app", settings, db.conn)
        await restarted.send(client, notification(alert(instance="a", resolved=True), alert(instance="b", resolved=True)), NOW)
        await restarted.send(client, healing(summary="recovered"), NOW)
        await restarted.send(client, notification(alert(instance="c")), NOW)
        assert [m for m, _ in api.calls] == ["chat.postMessage", "chat.update", "chat.postMessage", "chat.update",
                                              "chat.postMessage", "chat.postMessage"]
        first_ts = "1700000000.000001"
        assert api.calls[1][1]["ts"] == api.calls[3][1]["ts"] == first_ts
        assert api.messages[first_ts]["blocks"][0]["text"]["text"] == "[RESOLVED] HighLatency api"
        assert api.calls[2][1]["thread_ts"] == first_ts and api.calls[2][1]["channel"] == "C0OPS"
        assert "thread_ts" not in api.calls[4][1] and api.calls[4][1]["channel"] == "#ops"
        assert "thread_ts" not in api.calls[5][1] and api.calls[5][1]["blocks"][0]["text"]["text"] == "[FIRING:1] HighLatency api"

    run_with_receiver(scenario, api)
    db.close()


@pytest.mark.parametrize(
    ("error", "kind"), [("invalid_auth", OutcomeKind.FAIL), ("channel_not_found", OutcomeKind.FAIL),
                        ("ratelimited", OutcomeKind.RETRY), ("internal_error", OutcomeKind.RETRY)],
)
def test_slack_app_classifies_web_api_errors(tmp_path: Path, error: str, kind: OutcomeKind) -> None:
    """HTTP 200 with ok:false is not success: transient Web API errors retry, the rest fail with the error name."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("slack_app", SLACK_APP_MIGRATIONS)
    api = SlackWebApi()
    api.fail_with = error

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        settings = SlackAppSettings(bot_token=BOT_TOKEN, channel="#ops", api_url=server.url)
        outcome = await SlackAppReceiver("ops-app", settings, db.conn).send(client, notification(alert()), NOW)
        assert (outcome.kind, outcome.detail) == (kind, error)

    run_with_receiver(scenario, api)
    db.close()


def test_slack_app_posts_anew_when_the_message_is_gone(tmp_path: Path) -> None:
    """If chat.update answers message_not_found (deleted in Slack), the group gets a new message."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("slack_app", SLACK_APP_MIGRATIONS)
    api = SlackWebApi()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        receiver = SlackAppReceiver("ops-app", SlackAppSettings(BOT_TOKEN, "#ops", api_url=server.url), db.conn)
        await receiver.send(client, notification(alert(instance="a")), NOW)
        api.messages.clear()
        outcome = await receiver.send(client, notification(alert(instance="a"), alert(instance="b")), NOW)
        assert outcome.kind is OutcomeKind.OK
        assert [m for m, _ in api.calls] == ["chat.postMessage", "chat.update", "chat.postMessage"]

    run_with_receiver(scenario, api)
    db.close()


INJECTIONS = ("<!channel>", "<@U123>", "<https://evil|click>")


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """Every string of a Slack message that Slack parses as mrkdwn: the fallback text, sections and contexts."""
    texts = [message["text"], *section_texts(message)]
    return texts + [e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]]


def injected() -> tuple[Notification, Notification]:
    """A group and a healing notice whose scraped label values and summaries carry Slack control sequences."""
    hostile = " ".join(INJECTIONS)
    group = dataclasses.replace(
        notification(dataclasses.replace(alert(), annotations={"summary": f"disk full {hostile}",
                                                                  "runbook_url": "https://runbooks/<!here>"})),
        group_labels={"alertname": "HighLatency", "service": hostile})
    return group, healing(service=f"api {hostile}", summary=f"restarted {hostile}")


def test_slack_escapes_scraped_text_in_every_mrkdwn_field(tmp_path: Path) -> None:
    """Mentions and links from label values never reach Slack unescaped: not in the fallback text (what phones
    show), the blocks, or healing notices, through the webhook or the app."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("slack_app", SLACK_APP_MIGRATIONS)
    api = SlackWebApi()

    async def scenario(server: RecordingServer, client: httpx.AsyncClient) -> None:
        app = SlackAppReceiver("ops-app", SlackAppSettings(BOT_TOKEN, "#ops", api_url=server.url), db.conn)
        for sent in injected():
            assert (await app.send(client, sent, NOW)).kind is OutcomeKind.OK
        hook = await RecordingServer(slack_webhook).start()
        try:
            for sent in injected():
                assert (await slack_receiver(hook).send(client, sent, NOW)).kind is OutcomeKind.OK
            messages = [body for _, body in api.calls] + [r.json() for r in hook.received]
        finally:
            await hook.stop()
        assert len(messages) == 4
        leaks = [(text, i) for m in messages for text in mrkdwn_texts(m) for i in (*INJECTIONS, "<!", "<@")
                 if i in text]
        assert leaks == []
        assert all("&lt;!channel&gt;" in m["text"] for m in messages)

    run_with_receiver(scenario, api)
    db.close()


# -- redaction and Retry-After --------------------------------------------------------------------

def test_redactor_hides_registered_secrets_and_known_shapes() -> None:
    """Registered values (raw, URL-quoted, JSON-escaped) and Slack hooks, Slack tokens, bearer and URL passwords go."""
    redact = Redactor(["pa ss/wo\"rd"])
    text = redact(
        'raw pa ss/wo"rd quoted pa%20ss%2Fwo%22rd json pa ss/wo\\"rd '
        "https://hooks.slack.com/services/T1/B2/abc xoxb-12-34-zz Authorization: Bearer eyJhbGci "
        "http://user:hunter2@am:9093/"
    )
    for secret in ('pa ss/wo"rd', "pa%20ss", "T1/B2/abc", "xoxb-12", "eyJhbGci", "hunter2"):
        assert secret not in text
    assert text.count(REDACTED) == 7 and "http://user:" in text


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is delta seconds or an HTTP date (relative to now); garbage is ignored."""
    assert retry_after_s({"retry-after": "120"}, NOW) == 120.0
    assert retry_after_s({"retry-after": "Tue, 14 Nov 2023 22:14:20 GMT"}, NOW) == 60.0
    assert retry_after_s({"retry-after": "soon"}, NOW) is None
    assert retry_after_s({}, NOW) is None
