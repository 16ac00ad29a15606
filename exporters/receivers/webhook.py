"""The generic webhook receiver: Alertmanager's webhook payload (version 4), signed and authenticated."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from exporters.delivery import Outcome, OutcomeKind, classify_error, classify_response
from exporters.notification import AlertPayload, Notification
from exporters.redact import Redactor

# Go's zero time.Time as encoding/json writes it; Alertmanager sends it as endsAt of firing alerts.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
SIGNATURE_HEADER = "X-Healwatch-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "healwatch"


def rfc3339(seconds: float | None) -> str:
    """A time as Go marshals time.Time in UTC (RFC 3339, fraction without trailing zeros); None is the zero time."""
    if seconds is None:
        return GO_ZERO_TIME
    when = datetime.fromtimestamp(seconds, timezone.utc)
    fraction = f"{when.microsecond:06d}".rstrip("0")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def alert_json(alert: AlertPayload, now: float) -> dict[str, Any]:
    """One alert as Alertmanager's template data has it: endsAt is the zero time until it resolved."""
    status = alert.status(now)
    return {
        "status": status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at if status == "resolved" else None),
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }


def webhook_payload(notification: Notification, max_alerts: int = 0) -> dict[str, Any]:
    """Alertmanager's webhook message; like Alertmanager, common labels and status describe the alerts kept."""
    kept = notification
    if 0 < max_alerts < len(notification.alerts):
        kept = dataclasses.replace(
            notification,
            alerts=notification.alerts[:max_alerts],
            truncated_alerts=notification.truncated_alerts + len(notification.alerts) - max_alerts,
        )
    return {
        "receiver": kept.receiver,
        "status": kept.status(),
        "alerts": [alert_json(alert, kept.created_at) for alert in kept.alerts],
        "groupLabels": dict(kept.group_labels),
        "commonLabels": kept.common_labels(),
        "commonAnnotations": kept.common_annotations(),
        "externalURL": kept.external_url,
        "version": "4",
        "groupKey": kept.group_key,
        "truncatedAlerts": kept.truncated_alerts,
    }


def signature(secret: str, body: bytes) -> str:
    """The value of the signature header: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    bearer_token: str | None = None
    bearer_token_file: str | None = None  # read at every send, so a rotated token is picked up
    headers: Mapping[str, str] = field(default_factory=dict)
    hmac_secret: str | None = None
    max_alerts: int = 0  # 0 sends every alert
    timeout_s: float = 10.0


class WebhookReceiver:
    """POSTs the webhook payload as JSON; the whole URL counts as a secret, as in Alertmanager."""

    def __init__(self, name: str, settings: WebhookSettings) -> None:
        self.name = name
        self.settings = settings
        self.redact = Redactor(
            s for s in (settings.url, settings.bearer_token, settings.hmac_secret, *settings.headers.values()) if s
        )

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    def body(self, notification: Notification) -> bytes:
        return json.dumps(webhook_payload(notification, self.settings.max_alerts), separators=(",", ":")).encode()

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        body = self.body(notification)
        try:
            headers = self._headers(notification, body)
        except OSError as exc:
            # The token file may be mounted later; the outbox retries until the notification's max age.
            return Outcome(OutcomeKind.RETRY, self.redact(f"cannot read bearer_token_file: {exc}"))
        try:
            response = await client.post(self.settings.url, content=body, headers=headers, timeout=self.settings.timeout_s)
        except httpx.HTTPError as exc:
            return classify_error(exc, self.redact)
        return classify_response(response, now, self.redact)

    def _headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        headers = {**self.settings.headers, "Content-Type": "application/json", "User-Agent": USER_AGENT,
                   IDEMPOTENCY_HEADER: notification.id}
        token = self.settings.bearer_token
        if self.settings.bearer_token_file:
            token = Path(self.settings.bearer_token_file).read_text().strip()
            self.redact.add(token)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.settings.hmac_secret:
            headers[SIGNATURE_HEADER] = signature(self.settings.hmac_secret, body)
        return headers
