"""What a playbook is: its triggers, its steps and the safety settings that bound it.

Plain frozen values; the agent builds them from its config and the runner and the safety
logic read them. A playbook heals exactly one service, the one its triggers name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rules.model import Labels

# A traffic step's timeout unless the playbook says otherwise, and the bound on every restore the
# runtime adds by itself (after an abort, an interrupted run, a dependency's recovery).
DEFAULT_TRAFFIC_TIMEOUT_S = 10.0

Action = Literal["traffic", "restart", "exec", "signal", "wait_healthy", "sleep", "notify", "capture", "verify"]
OnFailure = Literal["abort", "continue", "escalate"]
TrafficOnAbort = Literal["restore", "keep"]
TriggerKind = Literal["check_failed", "process_exited", "alert", "manual", "dependency_recovered"]


@dataclass(frozen=True)
class StepSpec:
    """One step; ``args`` holds the action's own settings (``{"op": "cut"}``, ``{"command": [...]}``)."""

    action: Action
    args: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    on_failure: OnFailure = "abort"

    def describe(self) -> str:
        """A short human name such as ``traffic cut`` or ``restart``."""
        if self.ramps():
            return "traffic ramp " + "/".join(str(percent) for percent in self.args["ramp"].stages) + "%"
        if self.action == "traffic":
            return f"traffic {self.args.get('op', '?')}"
        if self.action == "signal":
            return f"signal {self.args.get('signal', '?')}"
        return self.action

    def cuts_traffic(self) -> bool:
        return self.action == "traffic" and self.args.get("op") == "cut"

    def restores_traffic(self) -> bool:
        return self.action == "traffic" and self.args.get("op") == "restore"

    def ramps(self) -> bool:
        """A progressive restore: ``args["ramp"]`` is a ``healers.ramp.Ramp``."""
        return self.restores_traffic() and self.args.get("ramp") is not None

    def disrupts(self) -> bool:
        """Whether the step takes the service out of traffic or down: what the fleet budget limits."""
        return self.action in ("restart", "signal") or self.cuts_traffic()


@dataclass(frozen=True)
class Trigger:
    """What starts a playbook: a check of ``service`` failing, its process exiting, an alert, or a person."""

    kind: TriggerKind
    service: str
    check: str | None = None  # check_failed: only this check; None means any of the service's checks
    alert_labels: tuple[tuple[str, str], ...] = ()  # alert: every pair must be on the alert

    def matches_alert(self, labels: Labels) -> bool:
        return self.kind == "alert" and all(labels.get(name) == value for name, value in self.alert_labels)

    def describe(self) -> str:
        if self.kind == "alert":
            return "alert " + ",".join(f"{k}={v}" for k, v in self.alert_labels)
        if self.kind == "check_failed" and self.check:
            return f"check_failed {self.service}/{self.check}"
        return f"{self.kind} {self.service}"


@dataclass(frozen=True)
class Budget:
    """At most ``max_runs`` runs of a service's playbooks within ``within_s``; then suspend."""

    max_runs: int = 3
    within_s: float = 1800.0


@dataclass(frozen=True)
class Backoff:
    """The wait before a run grows ``initial_s * factor**(recent runs - 1)``, capped at ``max_s``."""

    initial_s: float = 10.0
    factor: float = 2.0
    max_s: float = 300.0

    def delay_s(self, recent_runs: int) -> float:
        if recent_runs <= 0:
            return 0.0
        return min(self.initial_s * self.factor ** (recent_runs - 1), self.max_s)


@dataclass(frozen=True)
class PlaybookSpec:
    name: str
    service: str
    triggers: tuple[Trigger, ...]
    steps: tuple[StepSpec, ...]
    budget: Budget = Budget()
    backoff: Backoff = Backoff()
    cooldown_s: float = 60.0
    dry_run: bool = False
    traffic_on_abort: TrafficOnAbort = "restore"
    active_time_intervals: tuple[str, ...] = ()  # outside them, a triggered run may only cut traffic
    rollback: tuple[StepSpec, ...] = ()  # run once when a verify step fails; then that verify runs again

    def disrupts(self) -> bool:
        """Whether a run may cut traffic or take the service down (and so needs a fleet slot)."""
        return any(step.disrupts() for step in (*self.steps, *self.rollback))

    def restore_step(self) -> StepSpec:
        """A traffic restore with the playbook's own restore timeout, for restores the runtime adds."""
        timeout_s = next((step.timeout_s for step in self.steps if step.restores_traffic() and not step.ramps()),
                         DEFAULT_TRAFFIC_TIMEOUT_S)
        return StepSpec("traffic", {"op": "restore"}, timeout_s=timeout_s)
