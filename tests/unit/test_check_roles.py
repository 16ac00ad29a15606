"""Check roles (issue #17): the startup gate after every process start, readiness and liveness, on scripted time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from pydantic import ValidationError

from agent.config import CheckConfig, ServiceConfig
from agent.health.checks import Check, StartupGate
from agent.health.probes import ProbeResult
from agent.schedule.jobs import JobSet
from healers.events import CheckStateChanged
from healers.playbook import PlaybookSpec, StepSpec, Trigger
from healers.triggers import on_check_failed

OK = ProbeResult(True, 0.01, 200)
DOWN = ProbeResult(False, 0.3, None, "connect failed: Connection refused")


class ScriptedProbe:
    """A probe returning the given results in order (the last one forever), counting its calls."""

    def __init__(self, results: Iterable[ProbeResult]) -> None:
        self.results = list(results)
        self.calls = 0

    async def __call__(self) -> ProbeResult:
        self.calls += 1
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


class Process:
    """The process the gate asks about: a pid that a test changes to model a restart."""

    def __init__(self) -> None:
        self.pid: int | None = 100

    async def start_of(self) -> int | None:
        return self.pid


class Service:
    """A startup check, a liveness check and a readiness check sharing one gate, as build_jobs wires them."""

    def __init__(self, startup: Iterable[ProbeResult], live: Iterable[ProbeResult],
                 ready: Iterable[ProbeResult] = (OK,)) -> None:
        self.process = Process()
        self.events: list[CheckStateChanged] = []
        self.gate = StartupGate(self.process.start_of)
        self.probes = {"boot": ScriptedProbe(startup), "live": ScriptedProbe(live), "ready": ScriptedProbe(ready)}
        roles = {"boot": "startup", "live": "liveness", "ready": "readiness"}
        self.checks = {
            name: Check("api", config(name, role=role, failure_threshold=3), self.probes[name], self.events.append,
                        started_at=0.0, gate=self.gate)
            for name, role in roles.items()
        }
        self.gate.checks = list(self.checks.values())
        self.jobset = JobSet(checks={"api": self.gate.checks}, gates={"api": self.gate})

    def tick(self, now: float) -> None:
        """Run every check once at ``now``, as their jobs would."""
        async def main() -> None:
            for check in self.checks.values():
                await check.run(now)

        asyncio.run(main())


def config(name: str, **fields: object) -> CheckConfig:
    return CheckConfig.model_validate({"name": name, "http": {"url": "http://127.0.0.1:1/"}, **fields})


def test_others_wait_for_the_startup_check_then_it_stops() -> None:
    """Until the startup check first succeeds the others never probe and the service is not ready; then it rests."""
    service = Service(startup=[DOWN, DOWN, OK], live=[OK])
    service.tick(0)
    service.tick(10)
    assert service.probes["live"].calls == service.probes["ready"].calls == 0
    assert service.jobset.ready("api") is False and service.events == []
    service.tick(20)
    assert service.gate.passed and service.probes["live"].calls == 1 and service.jobset.ready("api") is True
    service.tick(30)
    assert service.probes["boot"].calls == 3 and service.probes["live"].calls == 2


def test_every_new_process_shuts_the_gate_and_resets_the_counts() -> None:
    """A new pid: liveness failures counted before it are forgotten, and nothing but the startup check runs."""
    service = Service(startup=[OK, DOWN, DOWN, OK], live=[OK, DOWN, DOWN, DOWN, OK])
    service.tick(0)
    service.tick(10)
    service.tick(20)
    live = service.checks["live"]
    assert live.consecutive_failures == 2 and live.healthy
    service.process.pid = 101
    service.tick(30)
    service.tick(40)
    assert live.consecutive_failures == 0 and service.probes["live"].calls == 3
    assert service.jobset.ready("api") is False
    service.tick(50)  # the startup check passes; live fails once, not a third time in a row
    assert service.gate.passed and live.consecutive_failures == 1 and live.healthy and service.events == []


def test_a_startup_that_never_succeeds_fails_as_liveness_after_its_budget() -> None:
    """failure_threshold x interval of failed startup probes turn it unhealthy once, as a liveness failure."""
    service = Service(startup=[DOWN], live=[OK])
    for now in (0, 10):
        service.tick(now)
    assert service.events == []
    service.tick(20)
    assert service.events == [CheckStateChanged("api", "boot", False, 20.0, DOWN.error, liveness=True)]
    service.tick(30)
    assert len(service.events) == 1 and service.probes["live"].calls == 0


def test_a_recovered_startup_after_a_restart_turns_healthy_and_opens_the_gate() -> None:
    """The startup check that ran out of budget recovers on the restarted process's first success."""
    service = Service(startup=[DOWN, DOWN, DOWN, OK], live=[OK])
    for now in (0, 10, 20):
        service.tick(now)
    service.process.pid = 101
    service.tick(30)
    assert service.events[-1] == CheckStateChanged("api", "boot", True, 30.0, "", liveness=True)
    assert service.gate.passed and service.probes["live"].calls == 1


def test_only_readiness_checks_decide_readiness() -> None:
    """A failing readiness check makes the service unready; a failing liveness-only check does not."""
    service = Service(startup=[OK], live=[DOWN], ready=[OK, DOWN])
    for now in (0, 10, 20):
        service.tick(now)
    assert not service.checks["live"].healthy and service.jobset.ready("api") is True
    service.tick(30)
    service.tick(40)
    assert not service.checks["ready"].healthy and service.jobset.ready("api") is False
    assert [(e.check, e.liveness) for e in service.events] == [("live", True), ("ready", False)]


def test_a_readiness_failure_heals_only_where_a_trigger_names_it() -> None:
    """A trigger without a check skips readiness-only checks; one naming the check still heals."""
    restart = (StepSpec("restart"),)
    any_check = PlaybookSpec("any", "api", (Trigger("check_failed", "api"),), restart)
    named = PlaybookSpec("named", "api", (Trigger("check_failed", "api", check="ready"),), restart)
    readiness = CheckStateChanged("api", "ready", False, 1.0, "down", liveness=False)
    liveness = CheckStateChanged("api", "live", False, 1.0, "down")
    assert [spec.name for spec, _ in on_check_failed([any_check, named], readiness)] == ["named"]
    assert [spec.name for spec, _ in on_check_failed([any_check, named], liveness)] == ["any"]


def test_config_rules() -> None:
    """Default role both; a startup check needs success_threshold 1 and a service at most one."""
    assert config("x").role == "both" and config("x").liveness and config("x").readiness
    assert not config("x", role="readiness").liveness and config("x", role="startup").liveness
    with pytest.raises(ValidationError, match="success_threshold must be 1"):
        config("x", role="startup", success_threshold=2)
    with pytest.raises(ValidationError, match="at most one startup check"):
        ServiceConfig.model_validate({"checks": [
            {"name": n, "role": "startup", "tcp": {"address": "127.0.0.1:1"}} for n in ("a", "b")
        ]})
