"""What the whole config asks of healing: its playbooks (a default one per ``autoheal`` service), and fleet warnings.

Apart from ``agent.healing`` so that ``healwatch check`` reads them without loading the runtime.
"""

from __future__ import annotations

from agent.config import AgentConfig, ServiceConfig
from agent.config.healing import DEFAULT_TIMEOUTS_S, WaitHealthyArgs
from healers.playbook import PlaybookSpec, StepSpec, Trigger


def playbook_specs(config: AgentConfig) -> list[PlaybookSpec]:
    """The configured playbooks, plus a default one for each ``autoheal`` service no playbook names."""
    specs = [playbook.spec(config.healing.dry_run) for playbook in config.playbooks]
    healed = {spec.service for spec in specs}
    for name, service in config.services.items():
        if service.autoheal and name not in healed:
            specs.append(default_playbook(name, service, config.healing.dry_run))
    return specs


def default_playbook(name: str, service: ServiceConfig, dry_run: bool) -> PlaybookSpec:
    """cut traffic (if configured) -> restart -> wait until healthy -> restore traffic, on any check or exit."""
    triggers = [Trigger("check_failed", name)] if service.checks else []
    if service.process is not None:
        triggers.append(Trigger("process_exited", name))
    steps = [StepSpec("restart", timeout_s=DEFAULT_TIMEOUTS_S["restart"])]
    if service.checks:
        steps.append(StepSpec("wait_healthy", timeout_s=WaitHealthyArgs().timeout))
    if service.traffic is not None:
        cut = StepSpec("traffic", {"op": "cut"}, timeout_s=DEFAULT_TIMEOUTS_S["traffic"])
        restore = StepSpec("traffic", {"op": "restore"}, timeout_s=DEFAULT_TIMEOUTS_S["traffic"])
        steps = [cut, *steps, restore]
    return PlaybookSpec(f"autoheal-{name}", name, tuple(triggers), tuple(steps), dry_run=dry_run)


def fleet_warnings(config: AgentConfig) -> list[str]:
    """Settings that validate but do nothing: ``fleet:`` on playbooks while coordination is off."""
    if config.coordination.backend != "none":
        return []
    return [
        f"playbooks -> {index} -> fleet: ignored, coordination.backend is none (the playbook heals without "
        "a fleet budget)"
        for index, playbook in enumerate(config.playbooks) if playbook.fleet is not None
    ]
