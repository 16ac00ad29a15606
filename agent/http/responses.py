"""The JSON envelopes of the agent's API, as Prometheus' API shapes them, and the request parts every handler reads."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from agent.http import web

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # incident and silence ids; anything else never reaches storage


def success(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def error(status: int, kind: str, message: str) -> web.Response:
    """An error as Prometheus' API shapes it."""
    return web.json_response({"status": "error", "errorType": kind, "error": message}, status=status)


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def checked_id(request: web.Request) -> str:
    """The ``{id}`` of the path; anything but letters, digits, ``_`` and ``-`` (``../x``) is a 400."""
    value = request.match_info["id"]
    if not ID.match(value):
        raise web.HTTPBadRequest(reason=f"invalid id {value[:80]!r}")
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; an empty body is ``{}``, anything else is a 400."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(reason=f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="the JSON body must be an object")
    return body
