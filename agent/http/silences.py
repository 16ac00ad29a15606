"""The silence endpoints, Alertmanager-like: list, add and expire silences."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import structlog

from agent.http import web
from agent.http.responses import checked_id, error, json_object, rfc3339, success
from agent.http.view import AgentApi
from exporters.matchers import parse_matchers
from exporters.silences import Silence, Silences, new_silence
from rules.matchers import Matcher, MatchOp

log = structlog.get_logger("healwatch.api")

DEFAULT_SILENCE_S = 3600.0


class SilenceHandlers:
    def __init__(self, agent: AgentApi) -> None:
        self.agent = agent

    async def silences(self, request: web.Request) -> web.Response:
        silences = self._silences()
        now = self.agent.clock()
        return success({"silences": [silence_json(s, now) for s in silences.list(now)]})

    async def add_silence(self, request: web.Request) -> web.Response:
        silences = self._silences()
        now = self.agent.clock()
        body = await json_object(request)
        try:
            matchers = _silence_matchers(body.get("matchers"))
            starts_at = _timestamp(body, "startsAt", now)
            ends_at = _timestamp(body, "endsAt", max(starts_at, now) + DEFAULT_SILENCE_S)
            created_by, comment = _text(body, "createdBy"), _text(body, "comment")
            silence = new_silence(matchers, starts_at, ends_at, created_by, comment)
            silences.add(silence, now)
        except ValueError as exc:
            return error(400, "bad_data", f"invalid silence: {exc}")
        log.info("silence added", silence_id=silence.id, matchers=[str(m) for m in matchers], created_by=created_by)
        return success({"silenceID": silence.id})

    async def expire_silence(self, request: web.Request) -> web.Response:
        silence_id = checked_id(request)
        silences = self._silences()
        if silence_id not in {s.id for s in silences.list(self.agent.clock())}:
            return error(404, "not_found", f"no silence with id {silence_id!r}")
        try:
            silences.expire(silence_id, self.agent.clock())
        except ValueError as exc:
            return error(409, "conflict", str(exc))
        log.info("silence expired", silence_id=silence_id)
        return success({"silenceID": silence_id, "expired": True})

    def _silences(self) -> Silences:
        silences = self.agent.silences()
        if silences is None:
            raise web.HTTPServiceUnavailable(reason="notifications have not started yet")
        return silences


def silence_json(silence: Silence, now: float) -> dict[str, Any]:
    """A silence as Alertmanager's v2 API shows it."""
    return {
        "id": silence.id,
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.op in (MatchOp.RE, MatchOp.NRE),
             "isEqual": m.op in (MatchOp.EQ, MatchOp.RE)}
            for m in silence.matchers
        ],
        "startsAt": rfc3339(silence.starts_at),
        "endsAt": rfc3339(silence.ends_at),
        "createdBy": silence.created_by,
        "comment": silence.comment,
        "status": {"state": silence.state(now)},
    }


def _silence_matchers(value: object) -> list[Matcher]:
    """Matchers as strings (``alertname="X"``) or Alertmanager objects (``name``, ``value``, ``isRegex``, ``isEqual``)."""
    if not isinstance(value, list) or not value:
        raise ValueError("matchers must be a non-empty list")
    matchers: list[Matcher] = []
    for entry in value:
        if isinstance(entry, str):
            matchers.extend(parse_matchers(entry))
        elif isinstance(entry, dict):
            name, text = entry.get("name"), entry.get("value")
            is_regex, is_equal = entry.get("isRegex", False), entry.get("isEqual", True)
            if not isinstance(name, str) or not isinstance(text, str):
                raise ValueError(f"a matcher needs string name and value, got {entry!r}")
            if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
                raise ValueError(f"isRegex and isEqual must be true or false, got {entry!r}")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"invalid label name {name!r}")
            op = {(False, True): MatchOp.EQ, (False, False): MatchOp.NE,
                  (True, True): MatchOp.RE, (True, False): MatchOp.NRE}[(is_regex, is_equal)]
            matchers.append(Matcher(name, op, text))
        else:
            raise ValueError(f"a matcher must be a string or an object, got {entry!r}")
    return matchers


def _timestamp(body: dict[str, Any], key: str, default: float) -> float:
    """An RFC 3339 time of the body as seconds since the epoch; absent means ``default``."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key} must be an RFC 3339 time string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{key} is not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{key} needs a time zone (e.g. Z): {value!r}")
    return parsed.timestamp()


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value
