"""The healing runtime on a manual clock: backoff, deferral and wait_healthy stepped without waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from structlog.testing import capture_logs

from agent.state import StateDB
from healers.backends.base import ActionContext, ActionResult
from healers.clock import ManualClock, settle
from healers.events import CheckStateChanged
from healers.health import HealthCheck, wait_healthy
from healers.journal import MIGRATIONS, Journal
from healers.playbook import Backoff, Budget, PlaybookSpec, StepSpec, Trigger
from healers.plan import HealingPlan, ServiceBackends
from healers.runner import Notice
from healers.runtime import HealingRuntime
from rules.model import Alert, AlertState, Labels


class CountingRestart:
    """A restart backend that only counts its calls (the real ones are tested against real processes)."""

    name = "counting"

    def __init__(self) -> None:
        self.restarts: list[float] = []
        self.clock: ManualClock | None = None

    async def restart(self, ctx: ActionContext) -> ActionResult:
        assert self.clock is not None
        self.restarts.append(self.clock.now())
        return ActionResult(True, "restarted")


@dataclass
class Service:
    """A service whose process is down until a test says otherwise."""

    up: bool = False
    checks: Sequence[HealthCheck] = ()

    def pid(self) -> int | None:
        return None

    async def alive(self) -> bool:
        return self.up

    def rearm(self) -> None:
        pass


@dataclass
class Metrics:
    runs: list[tuple[str, str]] = field(default_factory=list)

    def run_finished(self, playbook: str, outcome: str, duration_s: float | None) -> None:
        self.runs.append((playbook, outcome))

    def fleet_denied(self, group: str) -> None:
        pass

    def fleet_store_error(self) -> None:
        pass


def runtime_for(spec: PlaybookSpec, service: Service, clock: ManualClock) -> tuple[HealingRuntime, CountingRestart,
                                                                                    list[Notice]]:
    db = StateDB(":memory:")
    db.migrate("healers", MIGRATIONS)
    restart = CountingRestart()
    restart.clock = clock
    notices: list[Notice] = []
    plan = HealingPlan(specs=(spec,), backends={"api": ServiceBackends(restart=restart)}, health={"api": service})
    runtime = HealingRuntime(plan, Journal(db.conn), clock=clock, metrics=Metrics(), log=structlog.get_logger(),
                             notify=notices.append)
    return runtime, restart, notices


CRASH_LOOP = PlaybookSpec(
    "heal-api", "api", (Trigger("process_exited", "api"), Trigger("alert", "api", alert_labels=(("alertname", "ApiDown"),))),
    (StepSpec("restart"),), budget=Budget(max_runs=3, within_s=3600.0),
    backoff=Backoff(initial_s=10.0, factor=2.0, max_s=300.0), cooldown_s=1.0,
)


def test_a_crash_loop_is_restarted_after_each_backoff_then_suspended() -> None:
    """A process that stays down is restarted at once, then after 10 s and 20 s of backoff, then suspended."""
    clock = ManualClock(start=1000.0)
    runtime, restart, notices = runtime_for(CRASH_LOOP, Service(up=False), clock)

    async def scenario() -> None:
        await runtime.start()
        try:
            runtime.on_process_exit("api", 4242)
            await settle()
            assert restart.restarts == [1000.0] and runtime.deferrals.pending("api")
            await clock.advance(9.9)
            assert restart.restarts == [1000.0]
            await clock.advance(0.1)
            assert restart.restarts == [1000.0, 1010.0]
            await clock.advance(19.9)
            assert len(restart.restarts) == 2
            await clock.advance(0.1)
            assert restart.restarts == [1000.0, 1010.0, 1030.0]
            assert runtime.suspended("api") and not runtime.deferrals.pending("api")
            assert [n.severity for n in notices if n.severity == "critical"] == ["critical"]
            assert "restart budget exhausted: 3 runs within 1h" in notices[-1].summary
            await clock.advance(600.0)
            assert len(restart.restarts) == 3
        finally:
            await runtime.stop()

    began = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - began < 5.0  # 630 s of healing time, stepped


def test_a_deferred_alert_heal_is_dropped_when_the_alert_resolved_before_its_time() -> None:
    """An alert firing again inside the backoff is deferred; resolved before the retry, the retry heals nothing."""
    clock = ManualClock(start=1000.0)
    service = Service(up=True)
    runtime, restart, _ = runtime_for(CRASH_LOOP, service, clock)
    labels = Labels({"alertname": "ApiDown", "service": "api"})

    def alert(state: AlertState) -> Alert:
        now = clock.now()
        return Alert(labels, {}, 1.0, state, now, fired_at=now,
                     resolved_at=now if state == AlertState.INACTIVE else None)

    async def scenario() -> None:
        await runtime.start()
        try:
            runtime.on_alerts([alert(AlertState.FIRING)])
            await settle()
            assert restart.restarts == [1000.0]
            runtime.on_alerts([alert(AlertState.FIRING)])
            await settle()
            assert runtime.deferrals.pending("api")
            runtime.on_alerts([alert(AlertState.INACTIVE)])
            with capture_logs() as logs:
                await clock.advance(10.0)
            assert restart.restarts == [1000.0] and not runtime.deferrals.pending("api")
            assert "heal dropped: the service recovered meanwhile" in [entry["event"] for entry in logs]
        finally:
            await runtime.stop()

    asyncio.run(scenario())


@dataclass
class FlakyCheck:
    """A check that passes from its ``passes_from``-th run on."""

    passes_from: int
    runs: int = 0
    name: str = "http"
    healthy: bool = False
    interval_s: float = 1.0
    liveness: bool = True

    def recovered(self) -> bool:
        return self.runs >= self.passes_from

    def failure(self) -> str:
        return "connection refused"

    async def run(self, now: float) -> object:
        self.runs += 1
        return None


def test_wait_healthy_polls_on_the_clock_and_gives_up_at_its_timeout() -> None:
    """wait_healthy re-probes every 0.25 s of clock time: passing at its 5th run succeeds, never passing fails at 2 s."""
    clock = ManualClock(start=0.0)

    async def scenario() -> tuple[ActionResult, ActionResult]:
        recovering = asyncio.create_task(wait_healthy("api", Service(checks=[FlakyCheck(5)]), 2.0, clock))
        never = asyncio.create_task(wait_healthy("api", Service(checks=[FlakyCheck(99)]), 2.0, clock))
        await settle()
        await clock.advance(2.0)
        return await recovering, await never

    passed, failed = asyncio.run(scenario())
    assert passed == ActionResult(True, "checks passed: http")
    assert failed == ActionResult(False, "still unhealthy after 2s: http: connection refused")


def test_a_healing_notice_is_logged_at_its_own_severity() -> None:
    """The notices of a run that heals (severity info) are logged at info, not at warning."""
    clock = ManualClock(start=1000.0)
    runtime, _, notices = runtime_for(CRASH_LOOP, Service(up=True), clock)

    async def scenario() -> list[tuple[str, str]]:
        await runtime.start()
        try:
            with capture_logs() as logs:
                runtime.on_process_exit("api", 4242)
                await settle()
        finally:
            await runtime.stop()
        return [(entry["severity"], entry["log_level"]) for entry in logs if entry["event"] == "healing notice"]

    logged = asyncio.run(scenario())
    assert [notice.severity for notice in notices] == ["info", "info"]
    assert logged == [("info", "info"), ("info", "info")]


ON_CHECKS = PlaybookSpec(
    "heal-api", "api", (Trigger("check_failed", "api"),), (StepSpec("restart"),),
    budget=Budget(max_runs=5, within_s=3600.0), backoff=Backoff(initial_s=10.0, factor=2.0, max_s=300.0),
    cooldown_s=1.0,
)


@dataclass
class SetCheck:
    """A check whose state the test sets; ``liveness`` False is a readiness-only check."""

    name: str
    liveness: bool
    healthy: bool = True
    interval_s: float = 1.0

    def recovered(self) -> bool:
        return self.healthy

    def failure(self) -> str:
        return "" if self.healthy else "503"

    async def run(self, now: float) -> object:
        return None


def roles_scenario(*, recover_before_retry: bool) -> list[float]:
    """A liveness and a readiness check fail; a restart heals liveness only. The restarts it takes, stepped 60 s."""
    clock = ManualClock(start=1000.0)
    live, ready = SetCheck("live", liveness=True), SetCheck("ready", liveness=False)
    runtime, restart, _ = runtime_for(ON_CHECKS, Service(up=True, checks=[live, ready]), clock)

    def fail(check: SetCheck) -> None:
        check.healthy = False
        runtime.on_check_changed(CheckStateChanged("api", check.name, healthy=False, at=clock.now(), reason="503",
                                                   liveness=check.liveness))

    async def scenario() -> None:
        original = restart.restart

        async def restart_heals_liveness(ctx: ActionContext) -> ActionResult:
            live.healthy = recover_before_retry
            return await original(ctx)

        restart.restart = restart_heals_liveness  # type: ignore[method-assign]
        await runtime.start()
        try:
            fail(ready)
            fail(live)
            await settle()
            if not recover_before_retry:  # the run left liveness failing: a retry is deferred; then liveness recovers
                assert runtime.deferrals.pending("api")
                live.healthy = True
            await clock.advance(60.0)
        finally:
            await runtime.stop()

    asyncio.run(scenario())
    return restart.restarts


def test_a_failing_readiness_check_does_not_trigger_a_run_again() -> None:
    """After a run that healed the liveness failure, a readiness-only failure left over does not heal again."""
    assert roles_scenario(recover_before_retry=True) == [1000.0]


def test_a_deferred_retry_is_dropped_when_only_readiness_still_fails() -> None:
    """A retry deferred while liveness failed is dropped once only the readiness-only check fails."""
    assert roles_scenario(recover_before_retry=False) == [1000.0]
