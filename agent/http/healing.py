"""The healing endpoints: the incident journal, and the operator's actions (heal, reset, traffic, maintenance)."""

from __future__ import annotations

from typing import Any

from agent.http import web
from agent.http.responses import checked_id, error, json_object, rfc3339, success
from agent.http.view import AgentApi, HealingControl
from healers.journal import IncidentRecord, Journal, StepRecord
from healers.plan import HealingError

MAX_INCIDENTS = 1000


class HealingHandlers:
    def __init__(self, agent: AgentApi) -> None:
        self.agent = agent

    async def incidents(self, request: web.Request) -> web.Response:
        service = request.query.get("service") or None
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            return error(400, "bad_data", f"limit must be an integer, got {request.query['limit']!r}")
        if not 1 <= limit <= MAX_INCIDENTS:
            return error(400, "bad_data", f"limit must be between 1 and {MAX_INCIDENTS}")
        journal = self._journal()
        return success({"incidents": [incident_json(i) for i in journal.incidents(service=service, limit=limit)]})

    async def incident(self, request: web.Request) -> web.Response:
        incident_id = checked_id(request)
        journal = self._journal()
        record = journal.incident(incident_id)
        if record is None:
            return error(404, "not_found", f"no incident with id {incident_id!r}")
        return success(incident_json(record, journal.steps(incident_id)))

    async def heal(self, request: web.Request) -> web.Response:
        service = service_name(self.agent, request)
        body = await json_object(request)
        dry_run = body.get("dry_run", request.query.get("dry_run", "false").lower() in ("1", "true", "yes"))
        if not isinstance(dry_run, bool):
            return error(400, "bad_data", f"dry_run must be true or false, got {dry_run!r}")
        playbook = body.get("playbook", request.query.get("playbook"))
        if playbook is not None and not isinstance(playbook, str):
            return error(400, "bad_data", f"playbook must be a playbook's name, got {playbook!r}")
        healing = self._healing()
        try:
            result = await healing.heal_now(service, dry_run=dry_run, playbook=playbook)
        except HealingError as exc:
            return error(409, "conflict", str(exc))
        record = healing.journal.incident(result.incident_id)
        assert record is not None  # the runner records the incident before its first step
        return success({
            **incident_json(record, healing.journal.steps(result.incident_id)),
            "trafficLeftCut": result.traffic_left_cut,
        })

    async def reset(self, request: web.Request) -> web.Response:
        service = service_name(self.agent, request)
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
        service = service_name(self.agent, request)
        try:
            result = await self._healing().set_traffic(service, cut)
        except HealingError as exc:
            return error(409, "conflict", str(exc))
        return success({"service": service, "traffic": "cut" if cut else "restored", "detail": result.detail})

    async def maintenance(self, request: web.Request) -> web.Response:
        service = service_name(self.agent, request)
        on = request.method == "POST"
        self._healing()  # 503 until healing runs
        self.agent.set_maintenance(service, on)
        return success({"service": service, "maintenance": on})

    def _healing(self) -> HealingControl:
        healing = self.agent.healing_control()
        if healing is None:
            raise web.HTTPServiceUnavailable(reason="healing has not started yet")
        return healing

    def _journal(self) -> Journal:
        return self._healing().journal


def service_name(agent: AgentApi, request: web.Request) -> str:
    """The ``{service}`` of the path; a service the config does not name is a 404."""
    service = request.match_info["service"]
    if service not in agent.config.services:
        raise web.HTTPNotFound(reason=f"unknown service {service!r}")
    return service


def incident_json(record: IncidentRecord, steps: list[StepRecord] | None = None) -> dict[str, Any]:
    """An incident of the healing journal; with ``steps`` when given."""
    incident: dict[str, Any] = {
        "id": record.id,
        "service": record.service,
        "playbook": record.playbook,
        "trigger": record.trigger,
        "startedAt": rfc3339(record.started_at),
        "endedAt": rfc3339(record.ended_at),
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
                "startedAt": rfc3339(step.started_at),
                "endedAt": rfc3339(step.ended_at),
                "durationSeconds": _duration(step.started_at, step.ended_at),
                "result": step.result,
                "error": step.error,
                "outputTail": step.output_tail,
                "attachment": step.attachment,
            }
            for step in steps
        ]
    return incident


def _duration(started_at: float, ended_at: float | None) -> float | None:
    return None if ended_at is None else round(ended_at - started_at, 3)
