"""A real HTTP server on 127.0.0.1 that records what notifiers send and answers as a test scripts it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Received], Awaitable[web.Response] | web.Response]


@dataclass
class RecordingServer:
    """Records every request in ``attempts`` and the accepted ones (2xx) in ``received``; answers 200 ``ok``
    unless ``handler`` answers otherwise."""

    handler: Handler | None = None
    received: list[Received] = field(default_factory=list)
    attempts: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RecordingServer:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # the same port again after a restart
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout_s: float = 10.0, *, attempts: bool = False) -> list[Received]:
        """Wait until ``count`` requests were accepted (or, with ``attempts``, made at all); bounded in time."""
        seen = self.attempts if attempts else self.received
        async with asyncio.timeout(timeout_s):
            while len(seen) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return seen

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(request.path, dict(request.headers), await request.read())
        self.attempts.append(received)
        self.arrived.set()
        response = web.Response(text="ok")
        if self.handler is not None:
            answer = self.handler(received)
            response = await answer if isinstance(answer, Awaitable) else answer
        if 200 <= response.status < 300:
            self.received.append(received)
            self.arrived.set()
        return response


def run_with_receiver(scenario: Callable[[RecordingServer, httpx.AsyncClient], Awaitable[None]],
                      handler: Handler | None = None) -> None:
    """Run ``scenario`` on a fresh event loop with a started RecordingServer (answering by ``handler``) and a client."""
    async def main() -> None:
        server = await RecordingServer(handler).start()
        try:
            async with httpx.AsyncClient() as client:
                await scenario(server, client)
        finally:
            await server.stop()

    asyncio.run(main())


# -- PagerDuty Events API v2, as its published schema and limits describe it ---------------------------------
# https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ and .../send-change-events/

PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_MAX_EVENT_BYTES = 512 * 1024
PAGERDUTY_ROUTING_KEY_CHARS = 32
_PD_EVENT_KEYS = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
_PD_PAYLOAD_KEYS = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}
_PD_CHANGE_PAYLOAD_KEYS = {"summary", "source", "timestamp", "custom_details"}


def _text(value: Any, name: str, limit: int | None = None, *, required: bool = True) -> list[str]:
    if value is None:
        return [f"{name} is required"] if required else []
    if not isinstance(value, str) or not value:
        return [f"{name} must be a non-empty string"]
    if limit is not None and len(value) > limit:
        return [f"{name} is longer than {limit} characters"]
    return []


def _timestamp(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return [f"{name} is not an ISO 8601 timestamp"]
    return []


def _links(event: dict[str, Any]) -> list[str]:
    problems = []
    for key, needed in (("links", "href"), ("images", "src")):
        items = event.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get(needed), str) for i in items):
            problems.append(f"{key} must be a list of objects with {needed}")
    return problems


def pagerduty_problems(event: Any, *, change: bool = False) -> list[str]:
    """What PagerDuty would refuse in an alert event (or, with ``change``, a change event); empty when valid.

    Unknown keys are refused too, which PagerDuty may not do: stricter, so a misspelt field shows."""
    if not isinstance(event, dict):
        return ["the event must be a JSON object"]
    problems = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != PAGERDUTY_ROUTING_KEY_CHARS:
        problems.append(f"routing_key must be the {PAGERDUTY_ROUTING_KEY_CHARS}-character integration key")
    problems += _links(event)
    payload = event.get("payload")
    if change:
        if isinstance(key, str) and key.startswith("R"):
            problems.append("change events cannot be sent to a ruleset's routing key (one starting with R)")
        unknown = set(event) - {"routing_key", "payload", "links", "images"}
        allowed = _PD_CHANGE_PAYLOAD_KEYS
    else:
        unknown = set(event) - _PD_EVENT_KEYS
        allowed = _PD_PAYLOAD_KEYS
        action = event.get("event_action")
        if action not in PAGERDUTY_ACTIONS:
            problems.append(f"event_action must be one of {', '.join(PAGERDUTY_ACTIONS)}")
        problems += _text(event.get("dedup_key"), "dedup_key", 255, required=action != "trigger")
        if payload is None and action != "trigger":
            return problems + [f"unknown field {k}" for k in sorted(unknown)]
    if unknown:
        problems += [f"unknown field {k}" for k in sorted(unknown)]
    if not isinstance(payload, dict):
        return problems + ["payload is required and must be an object"]
    problems += [f"unknown field payload.{k}" for k in sorted(set(payload) - allowed)]
    problems += _text(payload.get("summary"), "payload.summary", 1024)
    problems += _text(payload.get("source"), "payload.source", required=not change)
    problems += _timestamp(payload.get("timestamp"), "payload.timestamp")
    if not change and payload.get("severity") not in PAGERDUTY_SEVERITIES:
        problems.append(f"payload.severity must be one of {', '.join(PAGERDUTY_SEVERITIES)}")
    for name in ("component", "group", "class"):
        problems += _text(payload.get(name), f"payload.{name}", required=False)
    if not isinstance(payload.get("custom_details", {}), dict):
        problems.append("payload.custom_details must be an object")
    return problems


@dataclass
class PagerDutyStandIn:
    """Answers as the Events API v2 does (202, or 400 with the errors) and keeps the alerts the events opened:
    ``opened`` counts alerts opened, ``open`` holds the dedup keys still open, ``changes`` the change events."""

    opened: int = 0
    open: set[str] = field(default_factory=set)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, received: Received) -> web.Response:
        if received.path not in ("/v2/enqueue", "/v2/change/enqueue"):
            return web.Response(status=404, text="not found")
        if len(received.body) > PAGERDUTY_MAX_EVENT_BYTES:
            return web.Response(status=413, text="event larger than 512 KB")
        try:
            event = received.json()
        except ValueError:
            return self._invalid(["the body is not JSON"])
        change = received.path == "/v2/change/enqueue"
        problems = pagerduty_problems(event, change=change)
        if problems:
            return self._invalid(problems)
        if change:
            self.changes.append(event)
            return web.json_response({"status": "success", "message": "Change event processed"}, status=202)
        key, action = event["dedup_key"], event["event_action"]
        if action == "trigger" and key not in self.open:
            self.opened += 1
            self.open.add(key)
        elif action == "resolve":
            self.open.discard(key)
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": key}, status=202)

    @staticmethod
    def _invalid(problems: list[str]) -> web.Response:
        return web.json_response({"status": "invalid event", "message": "Event object is invalid",
                                  "errors": problems}, status=400)


# -- Microsoft Teams: a message with one Adaptive Card, as incoming webhooks and Workflows take it --------------
# https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using

TEAMS_MAX_MESSAGE_BYTES = 28 * 1024
TEAMS_CARD_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
_CARD_ELEMENTS = {"TextBlock": "text", "Image": "url", "FactSet": "facts", "Container": "items", "ColumnSet": "columns"}


def teams_problems(message: Any) -> list[str]:
    """What Teams would refuse (or not render) in a posted message; empty when the card is well formed."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return ["the body must be an object with type: message"]
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments must be a non-empty list"]
    problems = []
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            problems.append(f"{where}.contentType must be application/vnd.microsoft.card.adaptive")
        content = attachment.get("content")
        if not isinstance(content, dict) or content.get("type") != "AdaptiveCard":
            problems.append(f"{where}.content must be an AdaptiveCard")
            continue
        if content.get("version") not in TEAMS_CARD_VERSIONS:
            problems.append(f"{where}.content.version must be one of {', '.join(TEAMS_CARD_VERSIONS)}")
        body = content.get("body")
        if not isinstance(body, list) or not body:
            problems.append(f"{where}.content.body must be a non-empty list")
            continue
        for number, element in enumerate(body):
            needed = _CARD_ELEMENTS.get(str(element.get("type"))) if isinstance(element, dict) else None
            if needed is None or element.get(needed) in (None, ""):
                problems.append(f"{where}.content.body[{number}] is not an element Teams renders "
                                f"({', '.join(_CARD_ELEMENTS)}, with its required property)")
    return problems


def teams_stand_in(received: Received) -> web.Response:
    """Answers as a Workflows webhook: 202 to a well-formed card, 413 over 28 KB, 400 with the problems."""
    if len(received.body) > TEAMS_MAX_MESSAGE_BYTES:
        return web.Response(status=413, text=f"message larger than {TEAMS_MAX_MESSAGE_BYTES} bytes")
    try:
        problems = teams_problems(received.json())
    except ValueError:
        problems = ["the body is not JSON"]
    if problems:
        return web.json_response({"error": {"code": "InvalidRequestContent", "message": "; ".join(problems)}},
                                 status=400)
    return web.Response(status=202)
