"""What the healing runtime is given (the plan the agent builds from its config, the metrics it reports to),
and the error it refuses an operator's request with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from healers.backends.base import RestartBackend, TrafficBackend
from healers.exprcheck import ExprEvaluator
from healers.fleet.slots import FleetMetrics, FleetSlots
from healers.health import ServiceHealth
from healers.playbook import PlaybookSpec
from healers.safety import without_intervals


class HealingError(Exception):
    """A request the runtime cannot honour (unknown service, refused run); the message says why."""


class HealingMetrics(FleetMetrics, Protocol):
    def run_finished(self, playbook: str, outcome: str, duration_s: float | None) -> None:
        """A run ended; ``duration_s`` is None for runs that do not count as heals (dry runs, blocked runs)."""
        ...


@dataclass(frozen=True)
class ServiceBackends:
    """How one service is restarted and taken out of rotation; None where it is not configured."""

    restart: RestartBackend | None = None
    traffic: TrafficBackend | None = None


@dataclass(frozen=True)
class HealingPlan:
    """What the runtime heals with, built by the agent from its config and replaced whole on a reload."""

    specs: tuple[PlaybookSpec, ...]
    backends: Mapping[str, ServiceBackends]  # every known service
    health: Mapping[str, ServiceHealth] = field(default_factory=dict)
    depends_on: Mapping[str, Sequence[str]] = field(default_factory=dict)
    restart_dependents: frozenset[str] = frozenset()  # services whose healing heals their dependents too
    fleet: FleetSlots | None = None
    dry_run: bool = False
    resume_after_healthy_s: float = 600.0
    redact: Callable[[str], str] = str
    # Whether a Unix time is in one of the named time intervals (always, without names); the agent's time_intervals.
    time_active: Callable[[Sequence[str], float], bool] = without_intervals
    # PromQL over the agent's store for verify steps and restore guards; None where there is no store (tests).
    evaluate: ExprEvaluator | None = None
