"""Microsoft Teams through an incoming webhook or a Workflows URL: one Adaptive Card per notification.

The message is the one Alertmanager's msteamsv2 notifier sends: a ``message``
with one ``application/vnd.microsoft.card.adaptive`` attachment holding a title
TextBlock (red while firing, green once resolved) and a text TextBlock. Teams
refuses messages over 28 KB, so the text gives up whole alerts from the end
(saying how many) until the message fits. The whole URL is a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from exporters.delivery import Outcome, OutcomeKind, classify_error, classify_response
from exporters.notification import AlertPayload, Notification
from exporters.receivers import is_healing
from exporters.receivers.webhook import USER_AGENT
from exporters.redact import Redactor
from exporters.templating import Text, render

# Teams' limit on one message posted to a webhook, the card and its envelope included.
MAX_MESSAGE_BYTES = 28 * 1024
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.2"  # what Alertmanager sends; Teams renders up to 1.5
COLOR = {"firing": "Attention", "resolved": "Good"}


@dataclass(frozen=True)
class MSTeamsSettings:
    webhook_url: str | None = None
    webhook_url_file: str | None = None  # read at every send, so a rotated URL is picked up
    title: Text | None = None  # None: Alertmanager's default title, [FIRING:2] HighLatency api
    text: Text | None = None  # None (or a failing template): the alerts, one paragraph each
    timeout_s: float = 10.0


def default_title(notification: Notification) -> str:
    """Alertmanager's default title: ``[FIRING:2] HighLatency api`` or ``[RESOLVED] HighLatency api``."""
    firing = sum(1 for a in notification.alerts if a.status(notification.created_at) == "firing")
    values = " ".join(v for _, v in sorted(notification.group_labels.items()))
    prefix = f"[FIRING:{firing}]" if notification.status() == "firing" else "[RESOLVED]"
    return f"{prefix} {values}".strip()


def alert_text(alert: AlertPayload, now: float) -> str:
    """One alert as a Markdown paragraph: status, name, summary, description, reason, its labels and links."""
    lines = [f"**{alert.status(now).upper()}** {alert.labels.get('alertname', '')}"]
    for key, prefix in (("summary", ""), ("description", ""), ("check_reason", "Why: ")):
        if alert.annotations.get(key):
            lines.append(prefix + alert.annotations[key])
    lines.append(", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname"))
    links = [f"[Source]({alert.generator_url})"] if alert.generator_url else []
    if alert.annotations.get("runbook_url"):
        links.append(f"[Runbook]({alert.annotations['runbook_url']})")
    if links:
        lines.append(" · ".join(links))
    # A TextBlock's Markdown needs a blank line between paragraphs and two spaces before a line break.
    return "  \n".join(lines)


def message(notification: Notification, settings: MSTeamsSettings) -> dict[str, Any]:
    """The Teams message for ``notification``, at most 28 KB encoded."""
    def default() -> str:
        healing = notification.alerts[0].annotations.get("summary", "") if is_healing(notification) else ""
        return healing or default_title(notification)

    title = render(settings.title, notification, default)
    text = "" if settings.text is None else settings.text.render(notification, lambda: "")
    if text:
        return _card(title, text, notification.status())
    paragraphs = [alert_text(a, notification.created_at) for a in notification.alerts]
    hidden = notification.truncated_alerts
    while True:
        note = [f"… and {hidden} more alert{'s' if hidden != 1 else ''} not shown"] if hidden else []
        card = _card(title, "\n\n".join(paragraphs + note), notification.status())
        if len(encode(card)) <= MAX_MESSAGE_BYTES or not paragraphs:
            return card
        paragraphs.pop()
        hidden += 1


def _card(title: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{
            "contentType": CARD_CONTENT_TYPE,
            "contentUrl": None,
            "content": {
                "$schema": CARD_SCHEMA,
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "body": [
                    {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True,
                     "style": "heading", "color": COLOR[status]},
                    {"type": "TextBlock", "text": text, "wrap": True},
                ],
                "msteams": {"width": "full"},
            },
        }],
    }


def encode(body: dict[str, Any]) -> bytes:
    """The message as posted: compact JSON, UTF-8 (Teams counts its limit in these bytes)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class MSTeamsReceiver:
    """POSTs the card; any 2xx is taken (Workflows answer 202, connectors 200), 429 and 5xx are retried."""

    def __init__(self, name: str, settings: MSTeamsSettings) -> None:
        self.name = name
        self.settings = settings
        self.redact = Redactor()
        if settings.webhook_url:
            self._secret(settings.webhook_url)

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        try:
            url = self._url()
        except OSError as exc:
            # The URL file may be mounted later; the outbox retries until the notification's max age.
            return Outcome(OutcomeKind.RETRY, self.redact(f"cannot read webhook_url_file: {exc}"))
        body = encode(message(notification, self.settings))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            response = await client.post(url, content=body, headers=headers, timeout=self.settings.timeout_s)
        except httpx.HTTPError as exc:
            return classify_error(exc, self.redact)
        return classify_response(response, now, self.redact)

    def _url(self) -> str:
        if self.settings.webhook_url_file:
            url = Path(self.settings.webhook_url_file).read_text().strip()
            self._secret(url)
            return url
        assert self.settings.webhook_url is not None  # the config asks for exactly one of the two
        return self.settings.webhook_url

    def _secret(self, url: str) -> None:
        # Workflows URLs carry their credential in sig=; an error quoting the path and query alone hides it too.
        self.redact.add(url)
        for value in parse_qs(urlsplit(url).query).get("sig", []):
            self.redact.add(value)
