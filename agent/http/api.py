"""The JSON API on the agent's HTTP server: status, Prometheus-shaped alerts and rules, reload, and the
OpenAPI document; the healing and silence endpoints are registered here too (``healing.py``, ``silences.py``).

Handlers see the agent through the narrow protocols of ``view.py``; ``auth.py`` protects them.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

from agent import __version__
from agent.http import web
from agent.http.healing import HealingHandlers, incident_json
from agent.http.openapi import OPENAPI
from agent.http.responses import error, rfc3339, success
from agent.http.notifytest import NotifyTestHandlers
from agent.http.silences import SilenceHandlers
from agent.http.view import AgentApi, AgentView
from rules.golang.fmt import format_float
from rules.group import RuleGroup
from rules.model import Alert, AlertState

STATUS_INCIDENTS = 10  # the latest incidents /api/v1/status shows


def add_api_routes(app: web.Application, agent: AgentApi, *, more_paths: Mapping[str, Any] = {}) -> None:
    """Register the API's routes; ``more_paths`` documents routes others add (the status page's)."""
    api = _Api(agent, {**OPENAPI, "paths": {**OPENAPI["paths"], **more_paths}})
    healing = HealingHandlers(agent)
    silences = SilenceHandlers(agent)
    app.router.add_get("/api/v1/status", api.status)
    app.router.add_get("/api/v1/alerts", api.alerts)
    app.router.add_get("/api/v1/rules", api.rules)
    app.router.add_post("/-/reload", api.reload)
    app.router.add_get("/api/v1/incidents", healing.incidents)
    app.router.add_get("/api/v1/incidents/{id}", healing.incident)
    app.router.add_post("/api/v1/heal/{service}", healing.heal)
    app.router.add_post("/api/v1/heal/{service}/reset", healing.reset)
    app.router.add_post("/api/v1/traffic/{service}/cut", healing.cut_traffic)
    app.router.add_post("/api/v1/traffic/{service}/restore", healing.restore_traffic)
    app.router.add_post("/api/v1/maintenance/{service}", healing.maintenance)
    app.router.add_delete("/api/v1/maintenance/{service}", healing.maintenance)
    app.router.add_get("/api/v1/silences", silences.silences)
    app.router.add_post("/api/v1/silences", silences.add_silence)
    app.router.add_delete("/api/v1/silences/{id}", silences.expire_silence)
    app.router.add_post("/api/v1/notify/test", NotifyTestHandlers(agent).test)
    app.router.add_get("/api/v1/openapi.json", api.openapi)


class _Api:
    def __init__(self, agent: AgentApi, document: dict[str, Any]) -> None:
        self.agent = agent
        self.document = document

    async def status(self, request: web.Request) -> web.Response:
        agent = self.agent
        journal = agent.journal()
        return success({
            "build": {"version": __version__, "python": platform.python_version()},
            "startedAt": rfc3339(agent.started_at),
            "config": {
                "file": agent.config_path,
                "lastReloadSuccessful": not agent.config_errors,
                "errors": agent.config_errors,
            },
            "rules": {
                "files": agent.rule_files,
                "groups": len(agent.rule_groups()),
                "lastReloadSuccessful": not agent.rule_errors,
                "errors": agent.rule_errors,
            },
            "services": {name: _service_json(agent, name) for name in agent.config.services},
            "alerts": [alert_json(agent, alert) for alert in _alerts(agent.rule_groups())],
            "incidents": [] if journal is None else [
                incident_json(record, journal.steps(record.id))
                for record in journal.incidents(limit=STATUS_INCIDENTS)
            ],
        })

    async def alerts(self, request: web.Request) -> web.Response:
        return success({"alerts": [alert_json(self.agent, alert) for alert in _alerts(self.agent.rule_groups())]})

    async def rules(self, request: web.Request) -> web.Response:
        kind = request.query.get("type")
        groups = []
        for group in self.agent.rule_groups():
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
                    "lastEvaluation": rfc3339(rule.last_evaluation),
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
                        "alerts": [alert_json(self.agent, alert) for alert in active],
                    })
                rules.append(entry)
            groups.append({
                "name": group.spec.name,
                "file": group.spec.file,
                "interval": group.interval_s,
                "limit": group.spec.limit,
                "rules": rules,
                "evaluationTime": group.stats.last_duration_s,
                "lastEvaluation": rfc3339(group.stats.last_evaluation),
            })
        return success({"groups": groups})

    async def reload(self, request: web.Request) -> web.Response:
        errors = self.agent.reload()
        if errors:
            return error(422, "bad_data", "reload failed; the running config is kept:\n" + "\n".join(errors))
        return success({"reloaded": True})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)


def alert_json(agent: AgentApi, alert: Alert) -> dict[str, Any]:
    """Prometheus' shape, plus ``"maintenance": true`` for an alert of a service in maintenance and
    ``"silencedBy"``, Alertmanager's list of the silences that mute its notifications (maintenance's among them)."""
    entry = _prometheus_alert(alert)
    if agent.in_maintenance(alert.labels.get("service")):
        entry["maintenance"] = True
    silences = agent.silences()
    if silences is not None:
        # Matched as the dispatcher matches them: on the labels sent, external labels included.
        muted_by = silences.mutes({**agent.config.evaluation.external_labels, **alert.labels.as_dict()}, agent.clock())
        if muted_by:
            entry["silencedBy"] = list(muted_by)
    return entry


def _alerts(groups: list[RuleGroup]) -> list[Alert]:
    return [
        alert
        for group in groups
        for rule in group.alerting_rules()
        for alert in rule.active.values()
        if alert.state != AlertState.INACTIVE
    ]


def _healing_state(agent: AgentView, name: str) -> dict[str, Any] | None:
    journal = agent.journal()
    if journal is None:
        return None
    state = journal.service_state(name)
    return {"maintenance": state.maintenance, "suspendedReason": state.suspended_reason,
            "trafficCutBy": state.traffic_cut_by}


def _service_json(agent: AgentView, name: str) -> dict[str, Any]:
    tracker = agent.service_process(name)
    last_scrape = agent.last_scrape(name)
    return {
        "ready": agent.ready(name),
        "healing": _healing_state(agent, name),
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
                "role": check.config.role,
                "lastSuccess": None if check.last_result is None else check.last_result.success,
                "lastError": "" if check.last_result is None else check.last_result.error,
                "lastDurationSeconds": None if check.last_result is None else check.last_result.duration_s,
                "agentError": check.agent_error,
            }
            for check in agent.service_checks(name)
        ],
        "scrape": None if last_scrape is None else {
            "up": last_scrape.up, "samples": len(last_scrape.samples), "lastError": last_scrape.error,
            "lastScrape": rfc3339(last_scrape.at), "durationSeconds": round(last_scrape.duration_s, 6),
        },
    }


def _prometheus_alert(alert: Alert) -> dict[str, Any]:
    """An alert as Prometheus' /api/v1/alerts shows it."""
    return {
        "labels": dict(alert.labels),
        "annotations": alert.annotations,
        "state": str(alert.state),
        "activeAt": rfc3339(alert.active_at),
        "value": format_float(alert.value, "e", -1),
    }
