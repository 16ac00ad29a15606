"""``POST /api/v1/notify/test``: a synthetic firing and resolved notification to one receiver, and its answers."""

from __future__ import annotations

from typing import Any

import structlog

from agent.http import web
from agent.http.responses import error, json_object, success
from agent.http.view import AgentApi

log = structlog.get_logger("healwatch.api")


class NotifyTestHandlers:
    def __init__(self, agent: AgentApi) -> None:
        self.agent = agent

    async def test(self, request: web.Request) -> web.Response:
        tester = self.agent.receiver_tester()
        if tester is None:
            raise web.HTTPServiceUnavailable(reason="notifications have not started yet")
        body = await json_object(request)
        receiver, labels = body.get("receiver"), body.get("labels", {})
        if not isinstance(receiver, str) or not receiver:
            return error(400, "bad_data", "receiver: expected a receiver's name")
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            return error(400, "bad_data", "labels: expected an object of label names to string values")
        try:
            results = await tester.test_receiver(receiver, labels)
        except LookupError as exc:
            return error(404, "not_found", str(exc.args[0]))
        log.info("test notification sent", receiver=receiver, delivered=all(r.final for r in results))
        notifications: list[dict[str, Any]] = [
            {"status": result.status, "final": result.final,
             "attempts": [{"outcome": a.kind.value, "httpStatus": a.status, "detail": a.detail}
                          for a in result.answers]}
            for result in results
        ]
        return success({"receiver": receiver, "notifications": notifications})
