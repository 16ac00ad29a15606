"""The JSON API on the agent's HTTP server: status, Prometheus-shaped alerts and rules, reload,
the healing journal and operator actions (heal, reset, traffic, maintenance), and silences.

Reads are open unless ``api.auth: all``; every mutating request needs the bearer
token, and without a configured token mutations are refused (403), never open.
"""

from __future__ import annotations

import hmac
import json
import os
import platform
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import hdrs, web

from agent import __version__
from agent.config.schema import ApiConfig
from agent.schedule.jobs import ScrapeJob
from agent.notifying import Notifying
from agent.schedule.rules import RuleJob
from exporters.matchers import parse_matchers
from exporters.silences import Silence, new_silence
from healers.journal import IncidentRecord, StepRecord
from healers.plan import HealingError
from healers.runtime import HealingRuntime
from rules.golang.fmt import format_float
from rules.matchers import Matcher, MatchOp
from rules.model import Alert, AlertState

if TYPE_CHECKING:
    from agent.daemon import Agent

log = structlog.get_logger("healwatch.api")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STATUS_INCIDENTS = 10  # the latest incidents /api/v1/status shows
DEFAULT_SILENCE_S = 3600.0
MAX_INCIDENTS = 1000
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # incident and silence ids; anything else never reaches storage
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_token(config: ApiConfig) -> str | None:
    """The configured token (file first, then environment), or None when there is none."""
    if config.token_file:
        token = Path(config.token_file).read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get(config.token_env, "").strip()
    return token or None


def error(status: int, kind: str, message: str) -> web.Response:
    """An error as Prometheus' API shapes it."""
    return web.json_response({"status": "error", "errorType": kind, "error": message}, status=status)


def unauthorized(token_env: str) -> web.Response:
    """401 with the challenge RFC 6750 asks for, and what a client must send."""
    response = error(401, "unauthorized", "missing or wrong bearer token: send the header "
                     f"'Authorization: Bearer <token>' (healwatch's CLI sends the token from {token_env})")
    response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="healwatch"'
    return response


def bearer_credentials(authorization: str) -> bytes:
    """The token of a ``Bearer <token>`` header (scheme in any case, RFC 7235), or b"" for anything else.

    aiohttp hands undecodable header bytes over as surrogates; they can never match
    a token, and must not raise while being compared.
    """
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return b""
    return credentials.strip().encode("utf-8", "surrogateescape")


def success(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def protect(config: ApiConfig, token: str | None) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Middleware: bearer-token checks, and JSON errors (no tracebacks) for API paths."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        is_api = path.startswith("/api/") or path == "/-/reload"
        if not is_api:
            return await handler(request)
        needs_token = request.method in MUTATING or config.auth == "all"
        if needs_token and path != "/api/v1/openapi.json":
            if token is None:
                return error(403, "forbidden", "no API token is configured (api.token_file or the "
                             f"{config.token_env} variable); mutating endpoints are disabled")
            if not hmac.compare_digest(bearer_credentials(request.headers.get(hdrs.AUTHORIZATION, "")), token.encode()):
                log.warning("API request with a missing or wrong token", method=request.method, path=path,
                            peer=request.remote)
                return unauthorized(config.token_env)
        try:
            if request.method in MUTATING:
                await request.read()  # enforces api.max_body_bytes before any handler runs
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, "bad_data", f"request body larger than {config.max_body_bytes} bytes")
        except web.HTTPException as exc:
            return error(exc.status, "bad_data" if exc.status < 500 else "internal", exc.reason)

    return middleware


def add_api_routes(app: web.Application, agent: Agent, *, more_paths: Mapping[str, Any] = {}) -> None:
    """Register the API's routes; ``more_paths`` documents routes others add (the status page's)."""
    api = _Api(agent, {**OPENAPI, "paths": {**OPENAPI["paths"], **more_paths}})
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/alerts", api.alerts)
    app.router.add_get("/api/v1/rules", api.rules)
    app.router.add_post("/-/reload", api.reload)
    app.router.add_get("/api/v1/incidents", api.incidents)
    app.router.add_get("/api/v1/incidents/{id}", api.incident)
    app.router.add_post("/api/v1/heal/{service}", api.heal)
    app.router.add_post("/api/v1/heal/{service}/reset", api.reset)
    app.router.add_post("/api/v1/traffic/{service}/cut", api.cut_traffic)
    app.router.add_post("/api/v1/traffic/{service}/restore", api.restore_traffic)
    app.router.add_post("/api/v1/maintenance/{service}", api.maintenance)
    app.router.add_delete("/api/v1/maintenance/{service}", api.maintenance)
    app.router.add_get("/api/v1/silences", api.silences)
    app.router.add_post("/api/v1/silences", api.add_silence)
    app.router.add_delete("/api/v1/silences/{id}", api.expire_silence)
    app.router.add_get("/api/v1/openapi.json", api.openapi)


class _Api:
    def __init__(self, agent: Agent, document: dict[str, Any]) -> None:
        self.agent = agent
        self.document = document

    async def status(self, request: web.Request) -> web.Response:
        agent = self.agent
        return success({
            "build": {"version": __version__, "python": platform.python_version()},
            "startedAt": _rfc3339(agent.started_at),
            "config": {
                "file": agent.config_path,
                "lastReloadSuccessful": not agent.config_errors,
                "errors": agent.config_errors,
            },
            "rules": {
                "files": agent.rule_files,
                "groups": len(self._rule_jobs()),
                "lastReloadSuccessful": not agent.rule_errors,
                "errors": agent.rule_errors,
            },
            "services": {name: self._service(name) for name in agent.config.services},
            "alerts": [self._alert_json(alert) for alert in self._alerts()],
            "incidents": [] if (healing := self._healing_if_started()) is None else [
                _incident_json(record, healing.journal.steps(record.id))
                for record in healing.journal.incidents(limit=STATUS_INCIDENTS)
            ],
        })

    async def alerts(self, request: web.Request) -> web.Response:
        return success({"alerts": [self._alert_json(alert) for alert in self._alerts()]})

    async def rules(self, request: web.Request) -> web.Response:
        kind = request.query.get("type")
        groups = []
        for job in self._rule_jobs():
            group = job.group
            rules = []
            for rule in group.rules:
                if kind == "alert" and rule.alerting is None or kind == "record" and rule.alerting is not None:
                    continue
                entry: dict[str, Any] = {
                    "name": rule.spec.name,
                    "query": rule.spec.expr,
                    "labels": rule.spec.labels,
                    "health": rule.health,
                    "lastError": rule.last_error,
                    "evaluationTime": rule.last_duration_s,
                    "lastEvaluation": _rfc3339(rule.last_evaluation),
                    "type": "recording",
                }
                if rule.alerting is not None:
                    active = [a for a in rule.alerting.active.values() if a.state != AlertState.INACTIVE]
                    entry.update({
                        "type": "alerting",
                        "duration": rule.spec.for_s,
                        "keepFiringFor": rule.spec.keep_firing_for_s,
                        "annotations": rule.spec.annotations,
                        "state": str(rule.alerting.state),
                        "alerts": [self._alert_json(alert) for alert in active],
                    })
                rules.append(entry)
            groups.append({
                "name": group.spec.name,
                "file": group.spec.file,
                "interval": group.interval_s,
                "limit": group.spec.limit,
                "rules": rules,
                "evaluationTime": group.stats.last_duration_s,
                "lastEvaluation": _rfc3339(group.stats.last_evaluation),
            })
        return success({"groups": groups})

    async def reload(self, request: web.Request) -> web.Response:
        errors = self.agent.reload()
        if errors:
            return error(422, "bad_data", "reload failed; the running config is kept:\n" + "\n".join(errors))
        return success({"reloaded": True})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)

    # -- healing -------------------------------------------------------------------

    async def incidents(self, request: web.Request) -> web.Response:
        service = request.query.get("service") or None
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            return error(400, "bad_data", f"limit must be an integer, got {request.query['limit']!r}")
        if not 1 <= limit <= MAX_INCIDENTS:
            return error(400, "bad_data", f"limit must be between 1 and {MAX_INCIDENTS}")
        journal = self._healing().journal
        return success({"incidents": [_incident_json(i) for i in journal.incidents(service=service, limit=limit)]})

    async def incident(self, request: web.Request) -> web.Response:
        incident_id = _checked_id(request)
        journal = self._healing().journal
        record = journal.incident(incident_id)
        if record is None:
            return error(404, "not_found", f"no incident with id {incident_id!r}")
        return success(_incident_json(record, journal.steps(incident_id)))

    async def heal(self, request: web.Request) -> web.Response:
        service = self._service_name(request)
        body = await _json_object(request)
        dry_run = body.get("dry_run", request.query.get("dry_run", "false").lower() in ("1", "true", "yes"))
        if not isinstance(dry_run, bool):
            return error(400, "bad_data", f"dry_run must be true or false, got {dry_run!r}")
        healing = self._healing()
        try:
            result = await healing.heal_now(service, dry_run=dry_run)
        except HealingError as exc:
            return error(409, "conflict", str(exc))
        record = healing.journal.incident(result.incident_id)
        assert record is not None  # the runner records the incident before its first step
        return success({
            **_incident_json(record, healing.journal.steps(result.incident_id)),
            "trafficLeftCut": result.traffic_left_cut,
        })

    async def reset(self, request: web.Request) -> web.Response:
        service = self._service_name(request)
        try:
            self._healing().reset(service)
        except HealingError as exc:
            return error(503, "unavailable", str(exc))
        return success({"service": service, "reset": True})

    async def cut_traffic(self, request: web.Request) -> web.Response:
        return await self._traffic(request, cut=True)

    async def restore_traffic(self, request: web.Request) -> web.Response:
        return await self._traffic(request, cut=False)

    async def _traffic(self, request: web.Request, *, cut: bool) -> web.Response:
        service = self._service_name(request)
        try:
            result = await self._healing().set_traffic(service, cut)
        except HealingError as exc:
            return error(409, "conflict", str(exc))
        return success({"service": service, "traffic": "cut" if cut else "restored", "detail": result.detail})

    async def maintenance(self, request: web.Request) -> web.Response:
        service = self._service_name(request)
        on = request.method == "POST"
        self._healing()  # 503 until healing runs
        self.agent.set_maintenance(service, on)
        return success({"service": service, "maintenance": on})

    # -- silences ------------------------------------------------------------------

    async def silences(self, request: web.Request) -> web.Response:
        notifying = self._notifying()
        now = notifying.clock()
        return success({"silences": [_silence_json(s, now) for s in notifying.silences.list(now)]})

    async def add_silence(self, request: web.Request) -> web.Response:
        notifying = self._notifying()
        now = notifying.clock()
        body = await _json_object(request)
        try:
            matchers = _silence_matchers(body.get("matchers"))
            starts_at = _timestamp(body, "startsAt", now)
            ends_at = _timestamp(body, "endsAt", max(starts_at, now) + DEFAULT_SILENCE_S)
            created_by, comment = _text(body, "createdBy"), _text(body, "comment")
            silence = new_silence(matchers, starts_at, ends_at, created_by, comment)
            notifying.silences.add(silence, now)
        except ValueError as exc:
            return error(400, "bad_data", f"invalid silence: {exc}")
        log.info("silence added", silence_id=silence.id, matchers=[str(m) for m in matchers], created_by=created_by)
        return success({"silenceID": silence.id})

    async def expire_silence(self, request: web.Request) -> web.Response:
        silence_id = _checked_id(request)
        notifying = self._notifying()
        silences = notifying.silences
        if silence_id not in {s.id for s in silences.list(notifying.clock())}:
            return error(404, "not_found", f"no silence with id {silence_id!r}")
        try:
            silences.expire(silence_id, notifying.clock())
        except ValueError as exc:
            return error(409, "conflict", str(exc))
        log.info("silence expired", silence_id=silence_id)
        return success({"silenceID": silence_id, "expired": True})

    # -- helpers -------------------------------------------------------------------

    def _healing(self) -> HealingRuntime:
        healing = self._healing_if_started()
        if healing is None:
            raise web.HTTPServiceUnavailable(reason="healing has not started yet")
        return healing

    def _healing_if_started(self) -> HealingRuntime | None:
        return None if self.agent.healing is None else self.agent.healing.runtime

    def _notifying(self) -> Notifying:
        if self.agent.notifying is None:
            raise web.HTTPServiceUnavailable(reason="notifications have not started yet")
        return self.agent.notifying

    def _service_name(self, request: web.Request) -> str:
        service = request.match_info["service"]
        if service not in self.agent.config.services:
            raise web.HTTPNotFound(reason=f"unknown service {service!r}")
        return service

    def _alert_json(self, alert: Alert) -> dict[str, Any]:
        """Prometheus' shape, plus ``"maintenance": true`` for an alert of a service in maintenance."""
        entry = _prometheus_alert(alert)
        if self.agent.in_maintenance(alert.labels.get("service")):
            entry["maintenance"] = True
        return entry

    def _rule_jobs(self) -> list[RuleJob]:
        return [job for job in self.agent.jobset.jobs.values() if isinstance(job, RuleJob)]

    def _alerts(self) -> list[Alert]:
        return [
            alert
            for job in self._rule_jobs()
            for rule in job.group.alerting_rules()
            for alert in rule.active.values()
            if alert.state != AlertState.INACTIVE
        ]

    def _healing_state(self, name: str) -> dict[str, Any] | None:
        healing = self._healing_if_started()
        if healing is None:
            return None
        state = healing.journal.service_state(name)
        return {"maintenance": state.maintenance, "suspendedReason": state.suspended_reason,
                "trafficCutBy": state.traffic_cut_by}

    def _service(self, name: str) -> dict[str, Any]:
        agent = self.agent
        jobs = agent.jobset.jobs
        process = jobs.get(f"process:{name}")
        tracker = getattr(getattr(process, "collector", None), "tracker", None)
        scrape = jobs.get(f"scrape:{name}")
        last_scrape = scrape.target.last if isinstance(scrape, ScrapeJob) else None
        return {
            "ready": agent.ready(name),
            "healing": self._healing_state(name),
            "process": None if tracker is None else {
                "pid": tracker.pid, "up": tracker.pid is not None, "reason": tracker.reason,
                "pidChanges": tracker.pid_changes,
            },
            "checks": [
                {
                    "name": check.name,
                    "kind": check.config.kind,
                    "healthy": check.healthy,
                    "consecutiveFailures": check.consecutive_failures,
                    "lastSuccess": None if check.last_result is None else check.last_result.success,
                    "lastError": "" if check.last_result is None else check.last_result.error,
                    "lastDurationSeconds": None if check.last_result is None else check.last_result.duration_s,
                    "agentError": check.agent_error,
                }
                for check in agent.jobset.checks.get(name, [])
            ],
            "scrape": None if last_scrape is None else {
                "up": last_scrape.up, "samples": len(last_scrape.samples), "lastError": last_scrape.error,
                "lastScrape": _rfc3339(last_scrape.at),
            },
        }


def _prometheus_alert(alert: Alert) -> dict[str, Any]:
    """An alert as Prometheus' /api/v1/alerts shows it."""
    return {
        "labels": dict(alert.labels),
        "annotations": alert.annotations,
        "state": str(alert.state),
        "activeAt": _rfc3339(alert.active_at),
        "value": format_float(alert.value, "e", -1),
    }


def _incident_json(record: IncidentRecord, steps: list[StepRecord] | None = None) -> dict[str, Any]:
    """An incident of the healing journal; with ``steps`` when given."""
    incident: dict[str, Any] = {
        "id": record.id,
        "service": record.service,
        "playbook": record.playbook,
        "trigger": record.trigger,
        "startedAt": _rfc3339(record.started_at),
        "endedAt": _rfc3339(record.ended_at),
        "durationSeconds": _duration(record.started_at, record.ended_at),
        "outcome": record.outcome,
        "dryRun": record.dry_run,
        "detail": record.detail,
    }
    if steps is not None:
        incident["steps"] = [
            {
                "index": step.index,
                "action": step.action,
                "backend": step.backend,
                "startedAt": _rfc3339(step.started_at),
                "endedAt": _rfc3339(step.ended_at),
                "durationSeconds": _duration(step.started_at, step.ended_at),
                "result": step.result,
                "error": step.error,
                "outputTail": step.output_tail,
            }
            for step in steps
        ]
    return incident


def _duration(started_at: float, ended_at: float | None) -> float | None:
    return None if ended_at is None else round(ended_at - started_at, 3)


def _silence_json(silence: Silence, now: float) -> dict[str, Any]:
    """A silence as Alertmanager's v2 API shows it."""
    return {
        "id": silence.id,
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.op in (MatchOp.RE, MatchOp.NRE),
             "isEqual": m.op in (MatchOp.EQ, MatchOp.RE)}
            for m in silence.matchers
        ],
        "startsAt": _rfc3339(silence.starts_at),
        "endsAt": _rfc3339(silence.ends_at),
        "createdBy": silence.created_by,
        "comment": silence.comment,
        "status": {"state": silence.state(now)},
    }


def _checked_id(request: web.Request) -> str:
    """The ``{id}`` of the path; anything but letters, digits, ``_`` and ``-`` (``../x``) is a 400."""
    value = request.match_info["id"]
    if not ID.match(value):
        raise web.HTTPBadRequest(reason=f"invalid id {value[:80]!r}")
    return value


async def _json_object(request: web.Request) -> dict[str, Any]:
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


def _rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _error_responses() -> dict[str, Any]:
    return {
        "401": {"description": "Missing or wrong bearer token."},
        "403": {"description": "No API token is configured; mutations are disabled."},
    }


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _mutation(
    summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
    query: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A token-protected operation on one service."""
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [_path_parameter("service"), *(query or [])],
        "responses": {**responses, "404": {"description": "Unknown service."}, **_error_responses()},
    }
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return operation


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "healwatch agent API", "version": __version__},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/v1/status": {"get": {"summary": "Services, checks, processes, active alerts, config and rule load state.",
                                   "responses": {"200": {"description": "Status."}, **_error_responses()}}},
        "/api/v1/alerts": {"get": {"summary": "Active alerts, in the shape of Prometheus' /api/v1/alerts.",
                                   "responses": {"200": {"description": "Alerts."}, **_error_responses()}}},
        "/api/v1/rules": {"get": {
            "summary": "Rule groups, in the shape of Prometheus' /api/v1/rules.",
            "parameters": [{"name": "type", "in": "query", "schema": {"type": "string", "enum": ["alert", "record"]}}],
            "responses": {"200": {"description": "Rule groups."}, **_error_responses()}}},
        "/-/reload": {"post": {"summary": "Re-read the config and rule files; errors keep the running config.",
                               "security": [{"bearer": []}],
                               "responses": {"200": {"description": "Reloaded."},
                                             "422": {"description": "Invalid config; nothing changed."},
                                             **_error_responses()}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OK"}}}},
        "/api/v1/incidents": {"get": {
            "summary": "The healing journal's incidents, newest first.",
            "parameters": [{"name": "service", "in": "query", "schema": {"type": "string"}},
                           {"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INCIDENTS, "default": 50}}],
            "responses": {"200": {"description": "Incidents."}, "400": {"description": "Bad limit."},
                          **_error_responses()}}},
        "/api/v1/incidents/{id}": {"get": {
            "summary": "One incident with its steps.",
            "parameters": [_path_parameter("id")],
            "responses": {"200": {"description": "The incident."}, "400": {"description": "Malformed id."},
                          "404": {"description": "No such incident."}, **_error_responses()}}},
        "/api/v1/heal/{service}": {"post": _mutation(
            "Run the service's playbook now and answer with its incident, outcome and steps (a long call).",
            {"200": {"description": "The finished run."}, "409": {"description": "The run was refused."}},
            body={"type": "object", "properties": {"dry_run": {"type": "boolean"}}},
            query=[{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}])},
        "/api/v1/heal/{service}/reset": {"post": _mutation(
            "Lift an auto-heal suspension and forget the service's restart budget.",
            {"200": {"description": "Reset."}})},
        "/api/v1/traffic/{service}/cut": {"post": _mutation(
            "Take the service out of rotation through its traffic backend.",
            {"200": {"description": "Cut."}, "409": {"description": "No backend, a run is going on, or it failed."}})},
        "/api/v1/traffic/{service}/restore": {"post": _mutation(
            "Put the service back into rotation through its traffic backend.",
            {"200": {"description": "Restored."},
             "409": {"description": "No backend, a run is going on, or it failed."}})},
        "/api/v1/maintenance/{service}": {
            "post": _mutation("Switch maintenance on: no healing of the service until it is off.",
                              {"200": {"description": "Maintenance on."}}),
            "delete": _mutation("Switch maintenance off.", {"200": {"description": "Maintenance off."}}),
        },
        "/api/v1/silences": {
            "get": {"summary": "Silences, Alertmanager-like: active, then pending, then expired.",
                    "responses": {"200": {"description": "Silences."}, **_error_responses()}},
            "post": {
                "summary": "Add a silence; answers its silenceID.",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["matchers"],
                    "properties": {
                        "matchers": {"type": "array", "minItems": 1, "items": {"oneOf": [
                            {"type": "string", "example": 'alertname="HighLatency"'},
                            {"type": "object", "required": ["name", "value"], "properties": {
                                "name": {"type": "string"}, "value": {"type": "string"},
                                "isRegex": {"type": "boolean"}, "isEqual": {"type": "boolean"}}},
                        ]}},
                        "startsAt": {"type": "string", "format": "date-time", "description": "Default: now."},
                        "endsAt": {"type": "string", "format": "date-time", "description": "Default: start + 1h."},
                        "createdBy": {"type": "string"},
                        "comment": {"type": "string"},
                    }}}}},
                "responses": {"200": {"description": "Added."},
                              "400": {"description": "Malformed JSON, invalid matchers or times."},
                              **_error_responses()}},
        },
        "/api/v1/silences/{id}": {"delete": {
            "summary": "Expire a silence.",
            "security": [{"bearer": []}],
            "parameters": [_path_parameter("id")],
            "responses": {"200": {"description": "Expired."}, "400": {"description": "Malformed id."},
                          "404": {"description": "No such silence."}, "409": {"description": "Already expired."},
                          **_error_responses()}}},
    },
}
