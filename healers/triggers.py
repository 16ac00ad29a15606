"""Which playbooks a trigger starts: a check turning unhealthy, a process exit, a firing alert.

Pure matching, plus the one piece of trigger state: which matching alerts fire now, so a deferred
alert heal runs only while one still does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from healers.events import CheckStateChanged
from healers.playbook import PlaybookSpec, TriggerKind
from rules.model import Alert, AlertState, Labels


@dataclass(frozen=True)
class Cause:
    """Why a playbook is asked to run: the trigger's kind and a line for the journal and the log."""

    kind: TriggerKind
    description: str


def on_check_failed(specs: Iterable[PlaybookSpec], event: CheckStateChanged) -> list[tuple[PlaybookSpec, Cause]]:
    """The playbooks a check of ``event.service`` turning unhealthy starts; a readiness check only where named."""
    cause = Cause("check_failed", f"check {event.service}/{event.check} failed: {event.reason}")
    return [
        (spec, cause) for spec in specs
        if any(t.kind == "check_failed" and t.service == event.service
               and (t.check == event.check or (t.check is None and event.liveness))
               for t in spec.triggers)
    ]


def on_process_exit(specs: Iterable[PlaybookSpec], service: str, pid: int) -> list[tuple[PlaybookSpec, Cause]]:
    """The playbooks the exit of ``service``'s process starts."""
    cause = Cause("process_exited", f"process {pid} of {service} exited")
    return [
        (spec, cause) for spec in specs
        if spec.service == service and any(t.kind == "process_exited" for t in spec.triggers)
    ]


def watches_exits(spec: PlaybookSpec) -> bool:
    return any(trigger.kind == "process_exited" for trigger in spec.triggers)


@dataclass
class FiringAlerts:
    """Alerts firing now that trigger a playbook, by playbook name."""

    firing: dict[str, set[Labels]] = field(default_factory=dict)

    def update(self, specs: Sequence[PlaybookSpec], alerts: Iterable[Alert]) -> list[tuple[PlaybookSpec, Cause]]:
        """Take one batch the rule engine sent; return a trigger for every matching alert that fires."""
        started = []
        for alert in alerts:
            firing = alert.state == AlertState.FIRING and alert.resolved_at is None
            for spec in specs:
                if not any(t.matches_alert(alert.labels) for t in spec.triggers):
                    continue
                if not firing:
                    self.firing.get(spec.name, set()).discard(alert.labels)
                    continue
                self.firing.setdefault(spec.name, set()).add(alert.labels)
                started.append((spec, Cause("alert", f"alert {alert.labels}")))
        return started

    def still_firing(self, spec: PlaybookSpec) -> bool:
        return bool(self.firing.get(spec.name))
