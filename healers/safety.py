"""Whether a playbook may run now: locks, budget, backoff, cooldown, suspension, maintenance, dependencies,
active time intervals.

Pure bookkeeping with ``now`` passed in, shaped like Supervisor's process states and
Kubernetes' CrashLoopBackOff: each run of a service's playbooks is recorded; the next one waits
``backoff.delay_s(runs in the budget window)`` after the last, and ``cooldown_s`` after the last
success; when the window already holds ``budget.max_runs`` runs the service is suspended (a
terminal state, like Supervisor's FATAL) until it has stayed healthy for ``resume_after_healthy_s``
or an operator resets it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from healers.playbook import PlaybookSpec
from rules.durations import format_duration

# Outcomes of runs that acted on the service and so use up its budget.
COUNTED_OUTCOMES = frozenset({"succeeded", "aborted", "escalated", "interrupted"})

Verdict = Literal["run", "wait", "refuse", "suspend"]


@dataclass(frozen=True)
class RunRecord:
    """One past run of a playbook of the service; ``ended_at`` is None while it runs."""

    started_at: float
    ended_at: float | None
    outcome: str


@dataclass(frozen=True)
class Decision:
    """``run`` now; ``wait`` until ``not_before``; ``refuse`` for ``reason``; or ``suspend`` the service.

    A ``run`` with ``restart_blocked`` set may only cut traffic: a dependency is unhealthy.
    """

    verdict: Verdict
    reason: str = ""
    not_before: float | None = None
    restart_blocked: str = ""


@dataclass
class ServiceSafety:
    runs: list[RunRecord] = field(default_factory=list)
    running: bool = False
    suspended: bool = False
    suspended_reason: str = ""
    maintenance: bool = False
    healthy_since: float | None = None


def without_intervals(names: Sequence[str], now: float) -> bool:
    """The time check when no time intervals are configured: active exactly when no names are asked for."""
    return not names


class Safety:
    """The safety state of every service, and the rules deciding each run."""

    def __init__(self, resume_after_healthy_s: float) -> None:
        self.resume_after_healthy_s = resume_after_healthy_s
        # Whether ``now`` is in one of the named time intervals (a playbook's active_time_intervals).
        self.time_active: Callable[[Sequence[str], float], bool] = without_intervals
        self._services: dict[str, ServiceSafety] = {}

    def state(self, service: str) -> ServiceSafety:
        return self._services.setdefault(service, ServiceSafety())

    def restore(
        self, service: str, runs: Iterable[RunRecord], *, suspended_reason: str | None, maintenance: bool
    ) -> None:
        """Load what the journal kept across an agent restart."""
        state = self.state(service)
        state.runs = [run for run in runs if run.outcome in COUNTED_OUTCOMES]
        state.suspended = suspended_reason is not None
        state.suspended_reason = suspended_reason or ""
        state.maintenance = maintenance

    def decide(
        self,
        spec: PlaybookSpec,
        now: float,
        *,
        unhealthy_dependencies: Sequence[str] = (),
        manual: bool = False,
    ) -> Decision:
        """The decision for a trigger of ``spec`` at ``now``; a manual run skips budget, backoff and suspension."""
        state = self.state(spec.service)
        if state.maintenance:
            return Decision("refuse", f"{spec.service} is in maintenance")
        if state.running:
            return Decision("refuse", f"a playbook is already running for {spec.service}")
        blocked = ""
        if unhealthy_dependencies:
            blocked = f"not restarting {spec.service}: its dependency {', '.join(unhealthy_dependencies)} is unhealthy"
        if manual:
            return Decision("run", "manual run", restart_blocked=blocked)
        if state.suspended:
            return Decision("refuse", f"auto-healing of {spec.service} is suspended: {state.suspended_reason}")
        names = spec.active_time_intervals
        if not blocked and not self.time_active(names, now):
            blocked = f"not restarting {spec.service}: outside its active time intervals ({', '.join(names)})"
        if blocked:
            # Cutting traffic only: neither counted against the budget nor held back by backoff.
            return Decision("run", blocked, restart_blocked=blocked)
        recent = self._recent(state, spec, now)
        if len(recent) >= spec.budget.max_runs:
            return Decision(
                "suspend",
                f"restart budget exhausted: {len(recent)} runs within {format_duration(spec.budget.within_s)}",
            )
        not_before = self._not_before(recent, spec)
        if not_before is not None and now < not_before:
            return Decision("wait", f"backoff or cooldown until {not_before:.3f}", not_before=not_before)
        return Decision("run")

    def begin(self, service: str, now: float) -> None:
        """Take the service's lock for a run starting at ``now``."""
        state = self.state(service)
        if state.running:
            raise RuntimeError(f"a playbook is already running for {service}")
        state.running = True
        state.runs.append(RunRecord(now, None, "running"))

    def finish(self, service: str, now: float, outcome: str) -> None:
        """Release the lock and record how the run ended; uncounted outcomes leave no trace in the budget."""
        state = self.state(service)
        state.running = False
        started = state.runs.pop()
        if outcome in COUNTED_OUTCOMES:
            state.runs.append(RunRecord(started.started_at, now, outcome))

    def suspend(self, service: str, reason: str) -> bool:
        """Suspend auto-healing; True only when it was not suspended yet (so one escalation is sent)."""
        state = self.state(service)
        if state.suspended:
            return False
        state.suspended = True
        state.suspended_reason = reason
        state.healthy_since = None
        return True

    def note_health(self, service: str, healthy: bool, now: float) -> bool:
        """Track how long the service has been healthy; True when that resumed its suspended auto-healing."""
        state = self.state(service)
        if not healthy:
            state.healthy_since = None
            return False
        if state.healthy_since is None:
            state.healthy_since = now
        if state.suspended and now - state.healthy_since >= self.resume_after_healthy_s:
            self.reset(service)
            return True
        return False

    def reset(self, service: str) -> None:
        """Operator reset (or a long enough healthy period): lift the suspension and forget past runs."""
        state = self.state(service)
        state.suspended = False
        state.suspended_reason = ""
        state.runs = [run for run in state.runs if run.ended_at is None]

    def set_maintenance(self, service: str, on: bool) -> None:
        self.state(service).maintenance = on

    def _recent(self, state: ServiceSafety, spec: PlaybookSpec, now: float) -> list[RunRecord]:
        since = now - spec.budget.within_s
        return [run for run in state.runs if run.ended_at is not None and run.started_at >= since]

    def _not_before(self, recent: list[RunRecord], spec: PlaybookSpec) -> float | None:
        if not recent:
            return None
        last = max(recent, key=lambda run: run.started_at)
        assert last.ended_at is not None
        candidates = [last.ended_at + spec.backoff.delay_s(len(recent))]
        successes = [run.ended_at for run in recent if run.outcome == "succeeded" and run.ended_at is not None]
        if successes:
            candidates.append(max(successes) + spec.cooldown_s)
        return max(candidates)
