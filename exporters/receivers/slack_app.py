"""Slack with a bot token: one living message per alert group, posted once and then updated in place.

The first notification of a group is posted with ``chat.postMessage``; its
``ts`` is kept in SQLite so later notifications of the group (alerts joining,
resolving) ``chat.update`` that message even across restarts. Once a group has
resolved, its next firing starts a new message. Healers' notices about a
service go to the thread of that service's open group message.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import httpx

from exporters.delivery import Outcome, OutcomeKind, classify_error, classify_response
from exporters.notification import Notification
from exporters.receivers import RECEIVER_MIGRATIONS, is_healing
from exporters.receivers.slack import SlackTexts, slack_message
from exporters.receivers.webhook import USER_AGENT
from exporters.redact import Redactor

MIGRATIONS = RECEIVER_MIGRATIONS["slack_app"]

DEFAULT_API_URL = "https://slack.com/api/"

# Web API errors (HTTP 200, ``"ok": false``) worth another try; every other error is final.
RETRYABLE_ERRORS = frozenset({
    "ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
})
# chat.update cannot touch the remembered message any more: post a new one instead.
MESSAGE_GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


@dataclass(frozen=True)
class SlackAppSettings:
    bot_token: str
    channel: str
    username: str | None = None
    api_url: str = DEFAULT_API_URL
    timeout_s: float = 10.0
    texts: SlackTexts = SlackTexts()


@dataclass(frozen=True)
class _Posted:
    channel: str
    ts: str
    resolved: bool


class SlackAppReceiver:
    """Posts or updates the group's message; remembers where it is in the ``slack_messages`` table."""

    def __init__(self, name: str, settings: SlackAppSettings, conn: sqlite3.Connection) -> None:
        self.name = name
        self.settings = settings
        self.conn = conn
        self.redact = Redactor([settings.bot_token])

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome:
        message = slack_message(notification, self.settings.channel, self.settings.username, self.settings.texts)
        if is_healing(notification):
            # A healing step belongs under the service's open incident message, if it has one.
            thread = self._open_message_of(notification.alerts[0].labels.get("service", ""))
            if thread is not None:
                message.update(channel=thread.channel, thread_ts=thread.ts)
            outcome, _ = await self._call(client, "chat.postMessage", message, now)
            return outcome
        posted = self._posted(notification.group_key)
        resolved = notification.status() == "resolved"
        if posted is not None and not posted.resolved:
            outcome, _ = await self._call(client, "chat.update", {**message, "channel": posted.channel, "ts": posted.ts}, now)
            if outcome.kind is not OutcomeKind.FAIL or outcome.detail not in MESSAGE_GONE_ERRORS:
                if outcome.kind is OutcomeKind.OK:
                    self._remember(notification.group_key, posted.channel, posted.ts, resolved)
                return outcome
        outcome, answer = await self._call(client, "chat.postMessage", message, now)
        if outcome.kind is OutcomeKind.OK:
            self._remember(notification.group_key, str(answer.get("channel", self.settings.channel)),
                           str(answer["ts"]), resolved)
        return outcome

    async def _call(
        self, client: httpx.AsyncClient, method: str, body: dict[str, Any], now: float
    ) -> tuple[Outcome, dict[str, Any]]:
        """One Web API call; Slack reports most failures as HTTP 200 with ``ok: false`` and an error name."""
        try:
            response = await client.post(
                self.settings.api_url.rstrip("/") + "/" + method,
                content=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                timeout=self.settings.timeout_s,
                headers={"Authorization": f"Bearer {self.settings.bot_token}", "User-Agent": USER_AGENT,
                         "Content-Type": "application/json; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            return classify_error(exc, self.redact), {}
        outcome = classify_response(response, now, self.redact)
        if outcome.kind is not OutcomeKind.OK:
            return outcome, {}
        try:
            answer = response.json()
        except ValueError:
            return Outcome(OutcomeKind.RETRY, f"{method}: the answer is not JSON", response.status_code), {}
        if not isinstance(answer, dict) or answer.get("ok") is not True or (method == "chat.postMessage" and "ts" not in answer):
            error = str(answer.get("error", "unexpected answer")) if isinstance(answer, dict) else "unexpected answer"
            kind = OutcomeKind.RETRY if error in RETRYABLE_ERRORS else OutcomeKind.FAIL
            return Outcome(kind, self.redact(error), response.status_code), {}
        return outcome, answer

    def _posted(self, group_key: str) -> _Posted | None:
        row = self.conn.execute(
            "SELECT channel, ts, resolved FROM slack_messages WHERE receiver = ? AND group_key = ?",
            (self.name, group_key),
        ).fetchone()
        return _Posted(row[0], row[1], bool(row[2])) if row else None

    def _open_message_of(self, service: str) -> _Posted | None:
        """The newest unresolved group message whose group labels include ``service``."""
        row = self.conn.execute(
            "SELECT channel, ts, resolved FROM slack_messages WHERE receiver = ? AND resolved = 0 "
            "AND instr(group_key, ?) > 0 ORDER BY rowid DESC LIMIT 1",
            (self.name, f'service="{service}"'),
        ).fetchone()
        return _Posted(row[0], row[1], bool(row[2])) if row and service else None

    def _remember(self, group_key: str, channel: str, ts: str, resolved: bool) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO slack_messages VALUES (?, ?, ?, ?, ?) ON CONFLICT(receiver, group_key) "
                "DO UPDATE SET channel = excluded.channel, ts = excluded.ts, resolved = excluded.resolved",
                (self.name, group_key, channel, ts, int(resolved)),
            )
