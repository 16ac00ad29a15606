"""A real Alertmanager (Debian's prometheus-alertmanager) on loopback: our pushes, and its webhook vs ours."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporters.delivery import OutcomeKind
from exporters.dispatcher import Dispatcher
from exporters.inhibit import Inhibitor
from exporters.notification import AlertPayload, Notification
from exporters.receivers.alertmanager import AlertmanagerReceiver, AlertmanagerSettings
from exporters.receivers.webhook import webhook_payload
from exporters.routing import RouteSpec, build_route
from exporters.silences import Silences
from harness.processes import free_port, require_binary, stop
from harness.receivers import RecordingServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CONFIG = """
route:
  receiver: hook
  group_by: [alertname, service]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {hook}
        send_resolved: true
"""


@asynccontextmanager
async def alertmanager(tmp_path: Path, hook_url: str) -> AsyncIterator[str]:
    """Alertmanager on a free loopback port, clustering off, storage in tmp_path; yields its URL."""
    binary = require_binary("prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(hook=hook_url))
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address={url.removeprefix('http://')}", "--cluster.listen-address=",
         f"--web.external-url={url}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(15):
            while True:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                try:
                    if (await client.get(url + "/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass  # not listening yet
                await asyncio.sleep(0.05)
        yield url
    finally:
        stop(process)


def alerts_at(now: float, *, resolved: bool) -> tuple[AlertPayload, ...]:
    return tuple(
        AlertPayload.of(
            {"alertname": "DiskFull", "service": "db", "instance": instance, "severity": "warning"},
            starts_at=now - 120.25,
            ends_at=now - 1 if resolved else now + 240,
            annotations={"summary": f"disk almost full on {instance}", "runbook_url": "https://runbooks/disk"},
            generator_url="http://healwatch:9877/graph?g0.expr=disk_free_ratio+%3C+0.1&g0.tab=1",
        )
        for instance in ("db-1", "db-2")
    )


def push(alerts: tuple[AlertPayload, ...], now: float) -> Notification:
    return Notification(id="push", receiver="fleet", group_key="push", group_labels={}, alerts=alerts, created_at=now)


async def am_alerts(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    response = await client.get(url + "/api/v2/alerts")
    response.raise_for_status()
    return sorted(response.json(), key=lambda a: a["labels"]["instance"])


def test_pushed_alerts_arrive_with_their_labels_and_resolve(tmp_path: Path) -> None:
    """Firing alerts pushed to /api/v2/alerts are listed by Alertmanager with our labels; the resolved push clears them."""

    async def main() -> None:
        hook = await RecordingServer().start()
        try:
            async with alertmanager(tmp_path, hook.url + "/hook") as url, httpx.AsyncClient() as client:
                dead_url = f"http://127.0.0.1:{free_port()}"  # a second cluster member that is down
                receiver = AlertmanagerReceiver("fleet", AlertmanagerSettings(urls=[dead_url, url]))
                now = time.time()
                firing = alerts_at(now, resolved=False)
                assert (await receiver.send(client, push(firing, now), now)).kind is OutcomeKind.OK
                listed = await am_alerts(client, url)
                assert [a["labels"] for a in listed] == [a.labels for a in firing]
                assert [a["fingerprint"] for a in listed] == [a.fingerprint for a in firing]
                assert all(a["status"]["state"] == "active" and a["annotations"]["runbook_url"] for a in listed)
                resolved = alerts_at(now, resolved=True)
                assert (await receiver.send(client, push(resolved, now), now)).kind is OutcomeKind.OK
                assert await am_alerts(client, url) == []
                await hook.wait_for(2)
                assert [p.json()["status"] for p in hook.received] == ["firing", "resolved"]
        finally:
            await hook.stop()

    asyncio.run(main())


def test_alertmanager_push_outcome_when_all_refuse() -> None:
    """With every Alertmanager unreachable the push is retried, and the error names each URL's failure."""

    async def main() -> None:
        urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
        async with httpx.AsyncClient() as client:
            now = time.time()
            outcome = await AlertmanagerReceiver("fleet", AlertmanagerSettings(urls=urls)).send(
                client, push(alerts_at(now, resolved=False), now), now)
        assert outcome.kind is OutcomeKind.RETRY and outcome.detail.count("ConnectError") == 2

    asyncio.run(main())


def test_a_late_push_leaves_out_firing_alerts_whose_validity_passed() -> None:
    """A push delivered after its firing alerts' endsAt sends only its resolved alerts, so none resolves falsely."""

    async def main() -> None:
        am = await RecordingServer().start()
        try:
            created = time.time() - 600
            firing = alerts_at(created, resolved=False)  # valid until created + 240
            resolved = AlertPayload.of({"alertname": "Gone"}, starts_at=created - 60, ends_at=created - 1)
            receiver = AlertmanagerReceiver("fleet", AlertmanagerSettings(urls=[am.url]))
            async with httpx.AsyncClient() as client:
                outcome = await receiver.send(client, push((*firing, resolved), created), time.time())
                assert outcome.kind is OutcomeKind.OK
                assert [a["labels"] for a in am.received[0].json()] == [{"alertname": "Gone"}]
                assert (await receiver.send(client, push(firing, created), time.time())).kind is OutcomeKind.OK
                assert len(am.attempts) == 1  # nothing left to send: not sent at all
        finally:
            await am.stop()

    asyncio.run(main())


def same_shape(ours: Any, theirs: Any, path: str = "$") -> list[str]:
    """Differences in keys and value types between two JSON documents."""
    if type(ours) is not type(theirs):
        return [f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"]
    if isinstance(ours, dict):
        if set(ours) != set(theirs):
            return [f"{path}: keys {sorted(set(ours) ^ set(theirs))} differ"]
        return [d for key in ours for d in same_shape(ours[key], theirs[key], f"{path}.{key}")]
    if isinstance(ours, list):
        if len(ours) != len(theirs):
            return [f"{path}: {len(ours)} vs {len(theirs)} items"]
        return [d for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for d in same_shape(a, b, f"{path}[{i}]")]
    return []


async def group_message(hook: RecordingServer, after: int, status: str, alerts: int) -> dict[str, Any]:
    """The first webhook Alertmanager sent after the first ``after`` ones holding ``alerts`` alerts, all ``status``.

    Alertmanager inserts the alerts of one push one at a time, and a group whose
    alert started longer than group_wait ago flushes at once (``aggrGroup.insert``),
    so its first message may hold only the first alert; the full group follows a
    group_interval later.
    """
    async with asyncio.timeout(15):
        while True:
            for request in (await hook.wait_for(after + 1))[after:]:
                payload: dict[str, Any] = request.json()
                if len(payload["alerts"]) == alerts and all(a["status"] == status for a in payload["alerts"]):
                    return payload
            after = len(hook.received)


def test_our_webhook_payload_matches_alertmanagers_field_by_field(tmp_path: Path) -> None:
    """For the same alerts and route, Alertmanager's webhook and ours have the same keys, types and values."""

    async def main() -> None:
        hook = await RecordingServer().start()
        try:
            async with alertmanager(tmp_path, hook.url + "/hook") as url, httpx.AsyncClient() as client:
                receiver = AlertmanagerReceiver("fleet", AlertmanagerSettings(urls=[url]))
                route = build_route(RouteSpec(receiver="hook", group_by=("alertname", "service"), group_wait_s=0,
                                              group_interval_s=1, repeat_interval_s=3600))
                ours = Dispatcher(route, Inhibitor(), Silences(), send_resolved=lambda _: True, external_url=url)
                now = time.time()
                for resolved, at in ((False, now), (True, now + 1)):
                    alerts = alerts_at(now, resolved=resolved)
                    seen = len(hook.received)
                    await receiver.send(client, push(alerts, at), at)
                    ours.ingest(alerts, at)
                    (notification,) = ours.due(at)
                    theirs = await group_message(hook, seen, "resolved" if resolved else "firing", len(alerts))
                    mine = webhook_payload(notification)
                    assert same_shape(mine, theirs) == []
                    assert mine == theirs
        finally:
            await hook.stop()

    asyncio.run(main())
