"""Pushing alerts to Alertmanager's API v2, as Prometheus' notifier does.

Every alert batch the rule engine sends goes to every URL: firing alerts carry
an ``endsAt`` ahead of now (Prometheus' "valid until") and are re-sent before
it passes; a resolved alert carries its resolve time. Alertmanager then does
the grouping, silencing and routing for the whole fleet.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from exporters.delivery import Outcome, OutcomeKind, classify_error, classify_response
from exporters.notification import AlertPayload, Notification
from exporters.receivers.webhook import USER_AGENT, rfc3339
from exporters.redact import Redactor

ALERTS_PATH = "/api/v2/alerts"


def postable_alert(alert: AlertPayload) -> dict[str, Any]:
    """One alert in the shape ``POST /api/v2/alerts`` takes; endsAt is left out when unknown."""
    body: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        "generatorURL": alert.generator_url,
    }
    if alert.ends_at is not None:
        body["endsAt"] = rfc3339(alert.ends_at)
    return body


@dataclass(frozen=True)
class AlertmanagerSettings:
    urls: Sequence[str]
    timeout_s: float = 10.0


class AlertmanagerReceiver:
    """POSTs a notification's alerts to every Alertmanager; like Prometheus, one acceptance is success.

    The members of an Alertmanager cluster gossip alerts to each other, so an
    alert one of them accepted reaches all.
    """

    def __init__(self, name: str, settings: AlertmanagerSettings) -> None:
        self.name = name
        self.settings = settings
        # No registered secrets: its patterns hide a basic-auth password in a URL.
        self.redact = Redactor()

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        # A firing alert whose "valid until" passed while the push waited (Alertmanager down) would
        # arrive as resolved; leave it out: the rule engine has re-sent its current state since.
        alerts = [a for a in notification.alerts
                  if a.status(notification.created_at) == "resolved" or a.ends_at is None or a.ends_at > now]
        if not alerts:
            return Outcome.ok()
        body = json.dumps([postable_alert(a) for a in alerts], separators=(",", ":")).encode()
        outcomes = await asyncio.gather(*(self._post(client, url, body, now) for url in self.settings.urls))
        if any(o.kind is OutcomeKind.OK for o in outcomes):
            return Outcome.ok()
        kind = OutcomeKind.RETRY if any(o.kind is OutcomeKind.RETRY for o in outcomes) else OutcomeKind.FAIL
        retry_after = max((o.retry_after_s for o in outcomes if o.retry_after_s is not None), default=None)
        return Outcome(kind, "; ".join(o.detail for o in outcomes), retry_after_s=retry_after)

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes, now: float) -> Outcome:
        try:
            # Each member has its own deadline: a trickling one must not outlast the others' acceptance.
            async with asyncio.timeout(self.settings.timeout_s):
                response = await client.post(
                    url.rstrip("/") + ALERTS_PATH, content=body, timeout=self.settings.timeout_s,
                    headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                )
        except TimeoutError:
            return Outcome(OutcomeKind.RETRY, f"{self.redact(url)}: no complete answer within {self.settings.timeout_s:g}s")
        except httpx.HTTPError as exc:
            return classify_error(exc, self.redact)
        outcome = classify_response(response, now, self.redact)
        if outcome.kind is OutcomeKind.OK:
            return outcome
        return Outcome(outcome.kind, f"{self.redact(url)}: {outcome.detail}", outcome.status, outcome.retry_after_s)
