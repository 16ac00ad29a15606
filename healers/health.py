"""What the healing runtime reads about a service: its checks and its process, behind narrow protocols.

The agent's checks and process trackers fulfil them; the runtime never sees a probe, a pidfile or
psutil. ``wait_healthy`` is the step that re-runs a service's checks after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from healers.backends.base import ActionResult
from healers.clock import Clock

WAIT_POLL_MIN_S = 0.05
WAIT_POLL_MAX_S = 0.25  # while waiting for a restarted service, re-probe at least this often


class HealthCheck(Protocol):
    """One thresholded check of a service."""

    @property
    def name(self) -> str: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def interval_s(self) -> float: ...

    @property
    def liveness(self) -> bool:
        """Its failure heals: a liveness or both-roles check, or a startup check whose budget ran out."""
        ...

    def recovered(self) -> bool:
        """The last probe succeeded and the check's success threshold is met."""
        ...

    def failure(self) -> str:
        """Why the check is not passing, for the journal ("not probed yet" before its first probe)."""
        ...

    async def run(self, now: float) -> object:
        """Probe once now and update the thresholded state."""
        ...


class ServiceHealth(Protocol):
    """A service as healing sees it: its checks, whether its process runs, and its pid."""

    @property
    def checks(self) -> Sequence[HealthCheck]: ...

    def pid(self) -> int | None:
        """The service's process id when one is watched and found."""
        ...

    async def alive(self) -> bool:
        """Whether its process runs; True when no process is watched."""
        ...

    def rearm(self) -> None:
        """A run may have started a new process: look for it now rather than at the next interval."""
        ...


def failing_checks(health: ServiceHealth) -> list[str]:
    """The failing checks whose failure heals; a failing readiness-only check does not count."""
    return [check.name for check in health.checks if check.liveness and not check.healthy]


def unhealthy(health: ServiceHealth) -> bool:
    """Any check is failing, readiness-only ones included (a dependency that is not ready blocks its dependents)."""
    return any(not check.healthy for check in health.checks)


async def is_sick(health: ServiceHealth) -> bool:
    """A check whose failure heals is failing, or the process is gone."""
    return bool(failing_checks(health)) or not await health.alive()


async def wait_healthy(service: str, health: ServiceHealth, timeout_s: float, clock: Clock) -> ActionResult:
    """Re-run the service's checks until each has met its success_threshold, or give up before the timeout."""
    checks = health.checks
    if not checks:
        return ActionResult(True, f"{service} has no checks to wait for")
    poll_s = min(max(min(check.interval_s for check in checks), WAIT_POLL_MIN_S), WAIT_POLL_MAX_S)
    deadline = clock.now() + timeout_s
    while True:
        for check in checks:
            await check.run(clock.now())
        waiting = [check for check in checks if not check.recovered()]
        if not waiting:
            return ActionResult(True, f"checks passed: {', '.join(check.name for check in checks)}")
        if clock.now() + poll_s >= deadline:
            reasons = "; ".join(f"{check.name}: {check.failure()}" for check in waiting)
            return ActionResult(False, f"still unhealthy after {timeout_s:g}s: {reasons}")
        await clock.sleep(poll_s)


class Unwatched:
    """A service with neither checks nor a process to watch: never sick, no pid."""

    checks: Sequence[HealthCheck] = ()

    def pid(self) -> int | None:
        return None

    async def alive(self) -> bool:
        return True

    def rearm(self) -> None:
        pass
