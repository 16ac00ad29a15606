"""The real Alertmanager as oracle: the same alerts, routes, inhibition and silence go to it and to our Dispatcher.

Alertmanager notifies a local webhook receiver; our Dispatcher is stepped to the
same moments. Both must notify the same groups (receiver, groupKey, group labels)
with the same alerts (fingerprints, statuses, order), and mark the same alerts
silenced or inhibited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agent.config import NotifyConfig
from exporters.dispatcher import Dispatcher
from exporters.notification import AlertPayload, Notification
from exporters.silences import Silences, new_silence
from harness.processes import free_port, require_binary, stop
from harness.receivers import RecordingServer

GROUP_WAIT_S = 1.0
ROUTE: dict[str, Any] = {
    "receiver": "hook",
    "group_by": ["alertname", "service"],
    "group_wait": "1s",
    "group_interval": "1s",
    "repeat_interval": "1h",
    "routes": [
        {
            "matchers": ['severity="critical"'],
            "receiver": "pager",
            "continue": True,
            "routes": [{"matchers": ['team=~"db.*"'], "group_by": ["..."]}],
        },
        {"matchers": ["service=db"], "receiver": "dbteam"},
    ],
}
INHIBIT_RULES = [
    {"source_matchers": ['alertname="HostDown"'], "target_matchers": ['severity="warning"'], "equal": ["instance"]}
]
RECEIVERS = ("hook", "pager", "dbteam")

FIRST = [
    {"alertname": "DiskFull", "service": "api", "severity": "warning", "instance": "a"},  # inhibited by HostDown
    {"alertname": "DiskFull", "service": "api", "severity": "warning", "instance": "c"},
    {"alertname": "DiskFull", "service": "api", "severity": "critical", "instance": "b"},
    {"alertname": "HighLatency", "service": "web", "severity": "critical", "team": "db1"},
    {"alertname": "DiskFull", "service": "db", "severity": "warning"},
    {"alertname": "HostDown", "severity": "critical", "instance": "a"},
    {"alertname": "Noise", "service": "batch", "severity": "info"},  # silenced
]
RESOLVED = [FIRST[1], FIRST[2]]
JOINING = [{"alertname": "DiskFull", "service": "db", "severity": "warning", "instance": "x"}]

Seen = tuple[str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def _postable(labels: dict[str, str], starts_at: float, ends_at: float | None) -> dict[str, Any]:
    alert: dict[str, Any] = {"labels": labels, "startsAt": _iso(starts_at)}
    if ends_at is not None:
        alert["endsAt"] = _iso(ends_at)
    return alert


def _from_webhook(body: dict[str, Any]) -> Seen:
    alerts = tuple((a["fingerprint"], a["status"]) for a in body["alerts"])
    return body["receiver"], body["groupKey"], tuple(sorted(body["groupLabels"].items())), alerts


def _from_ours(notification: Notification) -> Seen:
    alerts = tuple((a.fingerprint, a.status(notification.created_at)) for a in notification.alerts)
    return notification.receiver, notification.group_key, tuple(sorted(notification.group_labels.items())), alerts


class Oracle:
    """One real Alertmanager and its webhook receiver, fed alongside our dispatcher."""

    def __init__(self, url: str, hooks: RecordingServer, session: aiohttp.ClientSession) -> None:
        self.url, self.hooks, self.session = url, hooks, session
        self.seen = 0

    async def push(self, alerts: list[dict[str, Any]]) -> None:
        async with self.session.post(f"{self.url}/api/v2/alerts", json=alerts) as response:
            assert response.status == 200, await response.text()

    async def silence(self, matcher: dict[str, Any], starts_at: float, ends_at: float) -> None:
        body = {"matchers": [matcher], "startsAt": _iso(starts_at), "endsAt": _iso(ends_at),
                "createdBy": "test", "comment": "oracle"}
        async with self.session.post(f"{self.url}/api/v2/silences", json=body) as response:
            assert response.status == 200, await response.text()

    async def notifications(self, expected: int) -> list[Seen]:
        """The next ``expected`` notifications, after a grace period in which no extra one may arrive."""
        await self.hooks.wait_for(self.seen + expected, timeout_s=8.0)
        await asyncio.sleep(1.5 * GROUP_WAIT_S)  # bounded: one more beat must bring nothing new
        fresh = self.hooks.received[self.seen:]
        self.seen = len(self.hooks.received)
        return sorted(_from_webhook(json.loads(r.body)) for r in fresh)

    async def marks(self) -> dict[str, tuple[str, bool, tuple[str, ...]]]:
        async with self.session.get(f"{self.url}/api/v2/alerts") as response:
            alerts = await response.json()
        return {
            a["fingerprint"]: (a["status"]["state"], bool(a["status"]["silencedBy"]),
                               tuple(sorted(a["status"]["inhibitedBy"])))
            for a in alerts
        }


def _config(hook_url: str) -> str:
    receivers = [{"name": n, "webhook_configs": [{"url": f"{hook_url}/{n}", "send_resolved": True}]} for n in RECEIVERS]
    return yaml.safe_dump({"route": ROUTE, "receivers": receivers, "inhibit_rules": INHIBIT_RULES})


def _dispatcher(silences: Silences) -> Dispatcher:
    config = NotifyConfig.model_validate(
        {"route": ROUTE, "receivers": [{"name": n} for n in RECEIVERS], "inhibit_rules": INHIBIT_RULES}
    )
    route = config.build_route()
    assert route is not None
    return Dispatcher(route, config.build_inhibitor(), silences, send_resolved=lambda _: True)


def _our_marks(dispatcher: Dispatcher, now: float) -> dict[str, tuple[str, bool, tuple[str, ...]]]:
    return {
        view.alert.fingerprint: (view.state, bool(view.silenced_by), tuple(sorted(view.inhibited_by)))
        for group in dispatcher.state(now) for view in group.alerts
    }


async def _compare(url: str, process: subprocess.Popen[bytes], hooks: RecordingServer) -> None:
    await hooks.start()
    try:
        await _steps(url, process, hooks)
    finally:
        await hooks.stop()


async def _steps(url: str, process: subprocess.Popen[bytes], hooks: RecordingServer) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        oracle = Oracle(url, hooks, session)
        await _until_ready(oracle, process)
        silences = Silences()
        ours = _dispatcher(silences)

        start = time.time()
        await oracle.silence({"name": "alertname", "value": "Noise", "isRegex": False}, start, start + 3600)
        silences.add(new_silence(['alertname="Noise"'], start, start + 3600), start)
        first = [AlertPayload.of(labels, start) for labels in FIRST]
        await oracle.push([_postable(a.labels, start, None) for a in first])
        ours.ingest(first, start)
        expected = sorted(_from_ours(n) for n in ours.due(start + GROUP_WAIT_S))
        assert len(expected) == 5
        assert await oracle.notifications(len(expected)) == expected
        assert await oracle.marks() == _our_marks(ours, time.time())

        second = time.time()
        changes = [AlertPayload.of(labels, start, second) for labels in RESOLVED]
        changes += [AlertPayload.of(labels, second) for labels in JOINING]
        await oracle.push([_postable(a.labels, a.starts_at, a.ends_at) for a in changes])
        ours.ingest(changes, second)
        expected = sorted(_from_ours(n) for n in ours.due(second + GROUP_WAIT_S))
        assert len(expected) == 3
        assert await oracle.notifications(len(expected)) == expected


async def _until_ready(oracle: Oracle, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "alertmanager exited; see alertmanager.log"
        try:
            async with oracle.session.get(f"{oracle.url}/-/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("alertmanager did not become ready within 10s")


@pytest.mark.timeout(30)
def test_dispatcher_notifies_like_alertmanager(tmp_path: Path) -> None:
    """Same groups, groupKeys, group labels, alerts (in order) and silenced/inhibited marks as Alertmanager 0.25."""
    binary = require_binary("prometheus-alertmanager")
    hooks = RecordingServer(port=free_port())
    (tmp_path / "alertmanager.yml").write_text(_config(hooks.url))
    port = free_port()
    argv = [binary, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
    with (tmp_path / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        asyncio.run(_compare(f"http://127.0.0.1:{port}", process, hooks))
    finally:
        stop(process)
