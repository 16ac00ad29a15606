"""PagerDuty Events API v2: a group's firing notification triggers, its resolved one resolves, one alert per group.

The ``dedup_key`` is the SHA-256 of the group key, as Alertmanager's pagerduty
notifier makes it, so a retry from the outbox, a repeat or a restarted agent
adds to the group's open PagerDuty alert instead of opening a second one.
Healers' notices go out as change events (``/v2/change/enqueue``): a restart or
a traffic cut is a change that gives responders context on the incident page; it
does not page anyone and needs no resolve. PagerDuty answers 202 when it took an
event, 400 to a malformed one (final), 429 and 5xx to be retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from exporters.delivery import Outcome, OutcomeKind, classify_error, classify_response
from exporters.notification import AlertPayload, Notification
from exporters.receivers import is_healing
from exporters.receivers.webhook import USER_AGENT, rfc3339
from exporters.redact import Redactor

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")
# PagerDuty's published limits: summary at most 1024 characters, dedup_key 255, a whole event 512 KB.
MAX_SUMMARY_CHARS = 1024
MAX_EVENT_BYTES = 512 * 1024
ELLIPSIS = "…"


@dataclass(frozen=True)
class PagerDutySettings:
    routing_key: str | None = None
    routing_key_file: str | None = None  # read at every send, so a rotated key is picked up
    url: str = DEFAULT_URL
    source: str = "healwatch"
    severity: str = "error"
    event_class: str | None = None
    component: str | None = None
    group: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0


def dedup_key(group_key: str) -> str:
    """The group's dedup key: SHA-256 hex of its group key (64 characters, as Alertmanager's)."""
    return hashlib.sha256(group_key.encode()).hexdigest()


def summary(notification: Notification) -> str:
    """Alertmanager's default title (``[FIRING:2] HighLatency api``) cut to PagerDuty's 1024 characters."""
    status = notification.status()
    firing = _firing(notification)
    values = " ".join(v for _, v in sorted(notification.group_labels.items()))
    prefix = f"[FIRING:{len(firing)}]" if status == "firing" else "[RESOLVED]"
    return _cut(f"{prefix} {values}".strip(), MAX_SUMMARY_CHARS)


def alerts_text(alerts: list[AlertPayload]) -> str:
    """Alerts as Alertmanager's default details list them: labels, then annotations, one block each."""
    blocks = []
    for alert in alerts:
        lines = ["Labels:"] + [f" - {k} = {v}" for k, v in sorted(alert.labels.items())]
        lines += ["Annotations:"] + [f" - {k} = {v}" for k, v in sorted(alert.annotations.items())]
        lines.append(f"Source: {alert.generator_url}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def event(notification: Notification, settings: PagerDutySettings, routing_key: str) -> dict[str, Any]:
    """The Events v2 alert event: trigger while any alert of the group fires, else resolve."""
    firing = _firing(notification)
    resolved = [a for a in notification.alerts if a not in firing]
    details: dict[str, Any] = {
        "firing": alerts_text(firing), "resolved": alerts_text(resolved),
        "num_firing": len(firing), "num_resolved": len(resolved), **settings.details,
    }
    payload: dict[str, Any] = {
        "summary": summary(notification), "source": settings.source, "severity": settings.severity,
        "timestamp": rfc3339(notification.created_at), "custom_details": details,
    }
    for key, value in (("class", settings.event_class), ("component", settings.component),
                       ("group", settings.group)):
        if value:
            payload[key] = value
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger" if firing else "resolve",
        "dedup_key": dedup_key(notification.group_key),
        "payload": payload,
        "client": "healwatch",
    }
    if notification.external_url:
        body["client_url"] = notification.external_url
    if len(_encode(body)) > MAX_EVENT_BYTES:
        # As Alertmanager does: the alert still opens, the details say why they are missing.
        payload["custom_details"] = {"error": "custom_details left out: the event exceeded PagerDuty's 512 KB",
                                     "num_firing": len(firing), "num_resolved": len(resolved)}
    return body


def change_event(notification: Notification, settings: PagerDutySettings, routing_key: str) -> dict[str, Any]:
    """A healer's notice as a change event: its summary, and the service, incident and severity as details."""
    (alert,) = notification.alerts
    text = alert.annotations.get("summary") or alert.labels.get("alertname", "healing")
    details = {k: alert.labels[k] for k in ("service", "incident_id", "severity") if k in alert.labels}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "payload": {"summary": _cut(text, MAX_SUMMARY_CHARS), "source": settings.source,
                    "timestamp": rfc3339(notification.created_at), "custom_details": {**details, **settings.details}},
    }
    if notification.external_url:
        body["links"] = [{"href": notification.external_url, "text": "healwatch"}]
    return body


class PagerDutyReceiver:
    """POSTs Events v2 events; the routing key is a secret, redacted from every error."""

    def __init__(self, name: str, settings: PagerDutySettings) -> None:
        self.name = name
        self.settings = settings
        self.redact = Redactor(s for s in (settings.routing_key,) if s)
        self.change_url = urljoin(settings.url, "change/enqueue")

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        try:
            routing_key = self._routing_key()
        except OSError as exc:
            # The key file may be mounted later; the outbox retries until the notification's max age.
            return Outcome(OutcomeKind.RETRY, self.redact(f"cannot read routing_key_file: {exc}"))
        if is_healing(notification):
            url, body = self.change_url, change_event(notification, self.settings, routing_key)
        else:
            url, body = self.settings.url, event(notification, self.settings, routing_key)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            response = await client.post(url, content=_encode(body), headers=headers, timeout=self.settings.timeout_s)
        except httpx.HTTPError as exc:
            return classify_error(exc, self.redact)
        return classify_response(response, now, self.redact)

    def _routing_key(self) -> str:
        if self.settings.routing_key_file:
            key = Path(self.settings.routing_key_file).read_text().strip()
            self.redact.add(key)
            return key
        assert self.settings.routing_key is not None  # the config asks for exactly one of the two
        return self.settings.routing_key


def _firing(notification: Notification) -> list[AlertPayload]:
    return [a for a in notification.alerts if a.status(notification.created_at) == "firing"]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
