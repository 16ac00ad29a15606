"""check_why (issue #18, part 7): which failing checks an alert's annotations name, from real Check state."""

from __future__ import annotations

import asyncio

from agent.config import CheckConfig
from agent.health.checks import Check
from agent.health.probes import ProbeResult
from agent.notifying import check_why


def failed_check(name: str, result: ProbeResult) -> Check:
    """A check of service 'web' that has run once with ``result`` (failure_threshold 1)."""

    async def probe() -> ProbeResult:
        return result

    config = CheckConfig.model_validate({"name": name, "http": {"url": "http://127.0.0.1:1/"}, "failure_threshold": 1})
    check = Check("web", config, probe, lambda event: None, started_at=0.0)
    asyncio.run(check.run(10.0))
    return check


def test_the_check_label_picks_one_check_and_without_it_all_failing_checks_are_named() -> None:
    """An alert with a check label gets that check's reason; a service-wide one gets every failing check's."""
    http = failed_check("http", ProbeResult(False, 0.1, 503, "HTTP status 503"))
    script = failed_check("script", ProbeResult(False, 0.1, None, "exit status 2: a b", output="a\nb"))
    healthy = failed_check("port", ProbeResult(True, 0.1))
    checks = {"web": [http, script, healthy]}
    assert check_why(checks, {"service": "web", "check": "http"}) == {"check_reason": "HTTP status 503"}
    assert check_why(checks, {"service": "web", "check": "script"}) == {
        "check_reason": "exit status 2: a b", "check_output": "a\nb"}
    assert check_why(checks, {"service": "web"}) == {
        "check_reason": "http: HTTP status 503; script: exit status 2: a b", "check_output": "a\nb"}
    assert check_why(checks, {"service": "web", "check": "port"}) == {}
    assert check_why(checks, {"service": "db"}) == {}
    assert check_why(checks, {"alertname": "HostDown"}) == {}
