"""Slack through an incoming webhook: one Block Kit message per group notification, within Slack's limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from exporters.delivery import (
    Outcome,
    OutcomeKind,
    classify_error,
    classify_response,
    error_body,
)
from exporters.notification import AlertPayload, Notification
from exporters.receivers import is_healing
from exporters.receivers.webhook import USER_AGENT
from exporters.redact import Redactor
from exporters.templating import Text, render

# Slack's published limits (Block Kit reference; chat.postMessage truncates text beyond 40,000).
HEADER_MAX_CHARS = 150
SECTION_MAX_CHARS = 3000
CONTEXT_ELEMENT_MAX_CHARS = 3000
MAX_BLOCKS = 50
TEXT_MAX_CHARS = 40_000
# Slack rejects messages whose blocks hold well under 40,000 characters in all
# ("msg_blocks_too_long" near 13,000, slackapi/bolt-js#2509), so stay below that.
BLOCKS_BUDGET_CHARS = 12_000
# The fallback text is what notifications and screen readers show; a summary is enough.
FALLBACK_MAX_CHARS = SECTION_MAX_CHARS
ELLIPSIS = "…"

# Labels every alert of a group shares are shown once; these carry their own line.
_SHOWN_APART = ("alertname", "severity")


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def escape(text: str) -> str:
    """Text safe inside Slack mrkdwn: the three characters Slack asks to escape."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    # '|' and '>' end a Slack link and '<' starts a mention; percent-encoding keeps the URL intact.
    return f"<{url.replace('|', '%7C').replace('>', '%3E').replace('<', '%3C')}|{label}>"


def title(notification: Notification) -> str:
    """Alertmanager's default title: ``[FIRING:2] HighLatency api`` or ``[RESOLVED] HighLatency api``."""
    status = notification.status()
    firing = sum(1 for a in notification.alerts if a.status(notification.created_at) == "firing")
    values = " ".join(v for _, v in sorted(notification.group_labels.items()))
    prefix = f"[FIRING:{firing}]" if status == "firing" else "[RESOLVED]"
    return f"{prefix} {values}".strip()


def counts(notification: Notification) -> str:
    firing = sum(1 for a in notification.alerts if a.status(notification.created_at) == "firing")
    resolved = len(notification.alerts) - firing
    text = f"{firing} firing, {resolved} resolved"
    return text + (f" ({notification.truncated_alerts} more not shown)" if notification.truncated_alerts else "")


def _differing(alert: AlertPayload, common: Mapping[str, str]) -> str:
    pairs = [f"`{escape(k)}={escape(v)}`" for k, v in sorted(alert.labels.items())
             if k not in common and k not in _SHOWN_APART]
    return " ".join(pairs)


def alert_section_text(alert: AlertPayload, common: Mapping[str, str], now: float) -> str:
    """One alert in mrkdwn: status, name, severity, summary, description, its own labels and links."""
    status = alert.status(now).upper()
    head = f"*{status}* · *{escape(alert.labels.get('alertname', ''))}*"
    if "severity" in alert.labels:
        head += f" · severity {escape(alert.labels['severity'])}"
    lines = [head]
    for key in ("summary", "description"):
        if alert.annotations.get(key):
            lines.append(escape(alert.annotations[key]))
    if alert.annotations.get("check_reason"):
        lines.append(f"Why: {escape(alert.annotations['check_reason'])}")
    if alert.annotations.get("check_output"):
        lines.append(f"```{escape(alert.annotations['check_output'])}```")
    differing = _differing(alert, common)
    if differing:
        lines.append(differing)
    links = [link(alert.generator_url, "Source")] if alert.generator_url else []
    if alert.annotations.get("runbook_url"):
        links.append(link(alert.annotations["runbook_url"], "Runbook"))
    if links:
        lines.append(" · ".join(links))
    return truncate("\n".join(lines), SECTION_MAX_CHARS)


def blocks(notification: Notification, head: str | None = None, body: str = "") -> list[dict[str, Any]]:
    """Header, a summary section, a section per alert while the limits allow, then how many were left out;
    with a templated ``body``, the header and that body alone."""
    header = {"type": "header", "text": {"type": "plain_text",
                                         "text": truncate(head or title(notification), HEADER_MAX_CHARS)}}
    if body:
        return [header, _section(truncate(body, SECTION_MAX_CHARS))]
    common = notification.common_labels()
    shared = " ".join(f"`{escape(k)}={escape(v)}`" for k, v in sorted(common.items()) if k != "alertname")
    summary = f"*{counts(notification)}*" + (f"\n{shared}" if shared else "")
    result: list[dict[str, Any]] = [header, _section(truncate(summary, SECTION_MAX_CHARS))]
    budget = BLOCKS_BUDGET_CHARS - sum(_chars(block) for block in result)
    alerts = notification.alerts
    for index, alert in enumerate(alerts):
        text = alert_section_text(alert, common, notification.created_at)
        room_for_note = 1 if index < len(alerts) - 1 else 0
        if len(result) + 1 + room_for_note > MAX_BLOCKS or len(text) > budget - 100:
            left = len(alerts) - index
            result.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"… and {left} more alert{'s' if left != 1 else ''} not shown"}]})
            break
        result.append(_section(text))
        budget -= len(text)
    return result


def fallback_text(notification: Notification, head: str | None = None) -> str:
    """The ``text`` field: title, counts and the first summaries, escaped (Slack parses it as mrkdwn too)."""
    lines = [head or title(notification), counts(notification)]
    lines += [a.annotations["summary"] for a in notification.alerts if a.annotations.get("summary")]
    return truncate(escape("\n".join(lines)), FALLBACK_MAX_CHARS)


def healing_message(notification: Notification) -> dict[str, Any]:
    """A healer's notice in one section: severity, service, incident id and what happened."""
    alert = notification.alerts[0]
    severity, service = alert.labels.get("severity", "info"), alert.labels.get("service", "")
    incident, summary = alert.labels.get("incident_id", ""), alert.annotations.get("summary", "")
    text = f"[{severity.upper()}] {service}: {summary} (incident {incident})"
    section = f"*{escape(severity.upper())}* · *{escape(service)}* · incident `{escape(incident)}`\n{escape(summary)}"
    if alert.annotations.get("incident_url"):
        section += f"\n{link(alert.annotations['incident_url'], 'Journal')}"
    return {"text": truncate(escape(text), FALLBACK_MAX_CHARS), "blocks": [_section(truncate(section, SECTION_MAX_CHARS))]}


@dataclass(frozen=True)
class SlackTexts:
    """A receiver's title and text templates; a failing one falls back to the default."""

    title: Text | None = None
    text: Text | None = None


def slack_message(notification: Notification, channel: str | None = None, username: str | None = None,
                  texts: SlackTexts = SlackTexts()) -> dict[str, Any]:
    """The message for ``notification``: a healer's notice as one section, alerts as blocks (templated if set)."""
    if is_healing(notification):
        message = healing_message(notification)
    else:
        head = render(texts.title, notification, lambda: title(notification))
        body = "" if texts.text is None else texts.text.render(notification, lambda: "")
        message = {"text": fallback_text(notification, head), "blocks": blocks(notification, head, body)}
    if channel:
        message["channel"] = channel
    if username:
        message["username"] = username
    return message


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _chars(block: dict[str, Any]) -> int:
    text = block.get("text")
    return len(text["text"]) if isinstance(text, dict) else 0


@dataclass(frozen=True)
class SlackSettings:
    webhook_url: str
    channel: str | None = None
    username: str | None = None
    timeout_s: float = 10.0
    texts: SlackTexts = SlackTexts()


class SlackReceiver:
    """POSTs the message to an incoming webhook; Slack answers 200 with the body ``ok`` when it took it."""

    def __init__(self, name: str, settings: SlackSettings) -> None:
        self.name = name
        self.settings = settings
        self.redact = Redactor([settings.webhook_url])

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        message = slack_message(notification, self.settings.channel, self.settings.username, self.settings.texts)
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await client.post(
                self.settings.webhook_url, content=body, timeout=self.settings.timeout_s,
                headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
            )
        except httpx.HTTPError as exc:
            return classify_error(exc, self.redact)
        outcome = classify_response(response, now, self.redact)
        if outcome.kind is OutcomeKind.OK and response.text.strip() != "ok":
            return Outcome(OutcomeKind.FAIL, f"HTTP {response.status_code} without 'ok': "
                           f"{error_body(response.content, self.redact)}", response.status_code)
        return outcome
