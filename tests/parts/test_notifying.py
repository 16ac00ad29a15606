"""The notification runtime: alerts published on the event channel reach real local receivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.samples import Sample

from agent.config import parse_config
from agent.notifying import NOTIFY_MIGRATIONS, Notifying, alert_exprs
from agent.state import StateDB
from exporters.silences import new_silence
from healers.runner import Notice
from rules.errors import SourceError
from rules.model import Alert, AlertState, Labels
from rules.rulefile import GroupSpec, RuleSpec
from harness.receivers import RecordingServer

pytestmark = pytest.mark.timeout(20)

CONFIG = """
notify:
  receivers:
    - name: hook
      webhook: {{url: "{hook}/hook?token=url-secret", hmac_secret: hmac-secret-value}}
    - name: fleet
      alertmanager: {{urls: ["{am}"]}}
  route:
    receiver: hook
    group_by: [alertname]
    group_wait: 0s
    group_interval: 1m
"""


def firing(now: float, **labels: str) -> Alert:
    return Alert(Labels({"alertname": "Down", **labels}), {"summary": "it is down"}, 1.0, AlertState.FIRING,
                 active_at=now - 60, fired_at=now - 30, valid_until=now + 240)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (bounded) for the runtime's own loop to reach a state; it runs on this event loop."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def notify_db(tmp_path: Path) -> StateDB:
    """A state database in ``tmp_path`` holding the notification tables."""
    db = StateDB(str(tmp_path / "state.db"))
    for namespace, migrations in NOTIFY_MIGRATIONS.items():
        db.migrate(namespace, migrations)
    return db


def samples(notifying: Notifying) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: list[Sample] = [s for family in notifying.families() for s in family.samples]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in found}


def test_published_alerts_reach_webhook_and_alertmanager(tmp_path: Path) -> None:
    """A batch handed to on_alerts becomes one grouped webhook (generatorURL from the rule's expr) and one push."""

    async def main() -> None:
        hook, am = await RecordingServer().start(), await RecordingServer().start()
        config = parse_config(CONFIG.format(hook=hook.url, am=am.url), "agent.yaml")
        db = notify_db(tmp_path)
        specs = [GroupSpec("g", "f.yaml", (RuleSpec("alert", "Down", 'up{job="api"} == 0'),))]
        notifying = Notifying(config, db.conn, exprs=lambda: alert_exprs(specs))
        await notifying.start()
        try:
            now = time.time()
            notifying.on_alerts([firing(now, instance="a"), firing(now, instance="b")])
            (webhook,) = await hook.wait_for(1)
            (push,) = await am.wait_for(1)
            payload = webhook.json()
            assert [a["labels"]["instance"] for a in payload["alerts"]] == ["a", "b"]
            assert payload["alerts"][0]["generatorURL"].endswith("/graph?g0.expr=up%7Bjob%3D%22api%22%7D+%3D%3D+0&g0.tab=1")
            assert push.path == "/api/v2/alerts" and len(push.json()) == 2
            await until(lambda: notifying.outbox.pending() == 0)
            values = samples(notifying)
            assert values[("healwatch_notifications_total", (("outcome", "ok"), ("receiver", "hook")))] == 1
            assert values[("healwatch_outbox_pending", ())] == 0
            assert not any("url-secret" in str(family) or "hmac-secret" in str(family) for family in notifying.families())
        finally:
            await notifying.stop()
            await hook.stop()
            await am.stop()
            db.close()

    asyncio.run(main())


def test_external_labels_join_pushed_and_routed_alerts(tmp_path: Path) -> None:
    """Each external label an alert lacks reaches Alertmanager and the routed webhook; the alert's own one wins."""

    async def main() -> None:
        hook, am = await RecordingServer().start(), await RecordingServer().start()
        config = parse_config(CONFIG.format(hook=hook.url, am=am.url)
                              + "evaluation: {external_labels: {cluster: eu1, instance: fleet}}\n", "agent.yaml")
        db = notify_db(tmp_path)
        notifying = Notifying(config, db.conn, exprs=dict)
        await notifying.start()
        try:
            notifying.on_alerts([firing(time.time(), instance="a")])
            (webhook,) = await hook.wait_for(1)
            (push,) = await am.wait_for(1)
            expected = {"alertname": "Down", "cluster": "eu1", "instance": "a"}
            assert webhook.json()["alerts"][0]["labels"] == expected
            assert push.json()[0]["labels"] == expected
        finally:
            await notifying.stop()
            await hook.stop()
            await am.stop()
            db.close()

    asyncio.run(main())


def test_silenced_alerts_are_not_sent_but_counted(tmp_path: Path) -> None:
    """An alert under an active silence is held back and shows in healwatch_alerts_silenced."""

    async def main() -> None:
        hook, am = await RecordingServer().start(), await RecordingServer().start()
        config = parse_config(CONFIG.format(hook=hook.url, am=am.url), "agent.yaml")
        db = notify_db(tmp_path)
        notifying = Notifying(config, db.conn)
        now = time.time()
        notifying.silences.add(new_silence(['instance="a"'], now - 1, now + 3600, "ops", "maint"),
                               now)
        await notifying.start()
        try:
            notifying.on_alerts([firing(now, instance="a"), firing(now, instance="b")])
            (webhook,) = await hook.wait_for(1)
            assert [a["labels"]["instance"] for a in webhook.json()["alerts"]] == ["b"]
            assert samples(notifying)[("healwatch_alerts_silenced", ())] == 1
        finally:
            await notifying.stop()
            await hook.stop()
            await am.stop()
            db.close()

    asyncio.run(main())


def test_healer_notice_is_routed_and_sent(tmp_path: Path) -> None:
    """A healer's notice goes at once to the routed receiver as one alert named HealwatchHealing."""

    async def main() -> None:
        hook, am = await RecordingServer().start(), await RecordingServer().start()
        config = parse_config(CONFIG.format(hook=hook.url, am=am.url), "agent.yaml")
        db = notify_db(tmp_path)
        notifying = Notifying(config, db.conn)
        await notifying.start()
        try:
            notifying.notice(Notice("api", "inc-9", "critical", "escalated: restart did not help", time.time()))
            (webhook,) = await hook.wait_for(1)
            payload = webhook.json()
            assert payload["groupKey"] == "healing:inc-9"
            assert payload["alerts"][0]["labels"] == {"alertname": "HealwatchHealing", "service": "api",
                                                      "incident_id": "inc-9", "severity": "critical"}
            assert am.received == []  # Alertmanager gets the rules' alerts only
        finally:
            await notifying.stop()
            await hook.stop()
            await am.stop()
            db.close()

    asyncio.run(main())


def test_reload_swaps_receivers_and_keeps_groups_when_routes_are_unchanged(tmp_path: Path) -> None:
    """A reload pointing the receiver elsewhere delivers there, keeping the dispatcher (its groups) if routes stay."""

    async def main() -> None:
        first, second, am = (await RecordingServer().start(), await RecordingServer().start(),
                             await RecordingServer().start())
        db = notify_db(tmp_path)
        now = time.time()
        clock = [now]
        notifying = Notifying(parse_config(CONFIG.format(hook=first.url, am=am.url), "a.yaml"), db.conn,
                              lambda: clock[0])
        await notifying.start()
        try:
            notifying.on_alerts([firing(now, instance="a")])
            await first.wait_for(1)
            kept = notifying.dispatcher
            notifying.reload(parse_config(CONFIG.format(hook=second.url, am=am.url), "a.yaml"))
            assert notifying.dispatcher is kept
            notifying.on_alerts([firing(now, instance="a"), firing(now, instance="b")])
            await until(lambda: am.received[1:] != [])  # the batch was taken
            clock[0] = now + 61  # the group's next beat (group_interval 1m)
            notifying.on_alerts([])  # wakes the dispatcher at the new time
            (update,) = await second.wait_for(1)
            assert [a["labels"]["instance"] for a in update.json()["alerts"]] == ["a", "b"]
            assert len(first.received) == 1 and all(push.json() for push in am.received)
            notifying.reload(parse_config(CONFIG.format(hook=second.url, am=am.url).replace("1m", "2m"), "a.yaml"))
            assert notifying.dispatcher is not kept
        finally:
            await notifying.stop()
            for server in (first, second, am):
                await server.stop()
            db.close()

    asyncio.run(main())


def test_receiver_secrets_never_print(tmp_path: Path) -> None:
    """Webhook URLs, tokens and HMAC keys stay out of the config's repr and out of config errors."""
    text = CONFIG.format(hook="http://127.0.0.1:9", am="http://127.0.0.1:9")
    config = parse_config(text.replace("hmac-secret-value", "hmac-secret-value, bearer_token: tok-secret-1"), "a.yaml")
    shown = repr(config) + str(config.model_dump()) + config.model_dump_json()
    assert "url-secret" not in shown and "hmac-secret-value" not in shown and "tok-secret-1" not in shown
    with pytest.raises(SourceError) as raised:
        parse_config(text.replace("http://127.0.0.1:9/hook?token=url-secret", "bad-url-secret"), "a.yaml")
    assert "bad-url-secret" not in str(raised.value.issues) and "expected an http:// or https:// URL" in str(raised.value.issues)
