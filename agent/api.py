"""The JSON API on the agent's HTTP server: status, Prometheus-shaped alerts and rules, reload.

Reads are open unless ``api.auth: all``; every mutating request needs the bearer
token, and without a configured token mutations are refused (403), never open.
"""

from __future__ import annotations

import hmac
import os
import platform
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from agent import __version__
from agent.config import ApiConfig
from agent.jobs import ScrapeJob
from agent.ruler import RuleJob
from rules.gofmt import format_float
from rules.model import Alert, AlertState

if TYPE_CHECKING:
    from agent.daemon import Agent

log = structlog.get_logger("healwatch.api")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
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
            supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(supplied.encode(), token.encode()):
                log.warning("API request with a missing or wrong token", method=request.method, path=path,
                            peer=request.remote)
                return error(401, "unauthorized", "missing or wrong bearer token")
        try:
            if request.method in MUTATING:
                await request.read()  # enforces api.max_body_bytes before any handler runs
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, "bad_data", f"request body larger than {config.max_body_bytes} bytes")
        except web.HTTPException as exc:
            return error(exc.status, "bad_data" if exc.status < 500 else "internal", exc.reason)

    return middleware


def add_api_routes(app: web.Application, agent: Agent) -> None:
    """Register the API's routes on the agent's application."""
    api = _Api(agent)
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/alerts", api.alerts)
    app.router.add_get("/api/v1/rules", api.rules)
    app.router.add_post("/-/reload", api.reload)
    app.router.add_get("/api/v1/openapi.json", api.openapi)


class _Api:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

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
            "alerts": [_alert_json(alert) for alert in self._alerts()],
        })

    async def alerts(self, request: web.Request) -> web.Response:
        return success({"alerts": [_alert_json(alert) for alert in self._alerts()]})

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
                        "alerts": [_alert_json(alert) for alert in active],
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
        return web.json_response(OPENAPI)

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

    def _service(self, name: str) -> dict[str, Any]:
        agent = self.agent
        jobs = agent.jobset.jobs
        process = jobs.get(f"process:{name}")
        tracker = getattr(getattr(process, "collector", None), "tracker", None)
        scrape = jobs.get(f"scrape:{name}")
        last_scrape = scrape.target.last if isinstance(scrape, ScrapeJob) else None
        return {
            "ready": agent.ready(name),
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
                }
                for check in agent.jobset.checks.get(name, [])
            ],
            "scrape": None if last_scrape is None else {
                "up": last_scrape.up, "samples": len(last_scrape.samples), "lastError": last_scrape.error,
                "lastScrape": _rfc3339(last_scrape.at),
            },
        }


def _alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as Prometheus' /api/v1/alerts shows it."""
    return {
        "labels": dict(alert.labels),
        "annotations": alert.annotations,
        "state": str(alert.state),
        "activeAt": _rfc3339(alert.active_at),
        "value": format_float(alert.value, "e", -1),
    }


def _rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _error_responses() -> dict[str, Any]:
    return {
        "401": {"description": "Missing or wrong bearer token."},
        "403": {"description": "No API token is configured; mutations are disabled."},
    }


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
    },
}
