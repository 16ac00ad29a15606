"""The whole config file (AgentConfig): every section, and the checks that span sections."""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator

from agent.config.api import ApiConfig
from agent.config.defaults import DEFAULT_LISTEN
from agent.config.evaluation import EvaluationConfig
from agent.config.healing import CoordinationConfig, HealingConfig, PlaybookConfig, TrafficStepConfig
from agent.config.host import HostConfig
from agent.config.notify import NotifyConfig, interval_names
from agent.config.services import ServiceConfig
from agent.config.store import StoreConfig
from agent.config.timeintervals import TimeIntervalConfig, duplicate_names
from agent.config.types import HostPort, PositiveDuration, Section


def _existing_rule_file(pattern: str, info: ValidationInfo) -> str:
    """A rule_files entry without wildcards names a file that exists, relative to the config file's directory.

    The directory comes in the validation context (``config_dir``), so the entry is an error, with its
    line, among every other error of the file; a glob may match nothing yet (the agent warns).
    """
    config_dir = (info.context or {}).get("config_dir")
    if config_dir is not None and not glob.has_magic(pattern) and not (Path(config_dir) / pattern).exists():
        raise ValueError(f"rule file {str(Path(config_dir) / pattern)!r} does not exist")
    return pattern


RuleFileEntry = Annotated[str, AfterValidator(_existing_rule_file)]


class AgentConfig(Section):
    listen: HostPort = Field(
        DEFAULT_LISTEN,
        description="HOST:PORT of the HTTP server (/metrics, /-/healthy, /-/ready, the API, the status page); "
        "loopback by default, since reads need no token unless api.auth is all. `healwatch run --listen` overrides it.",
    )
    state_path: str = Field("./healwatch.db", description="SQLite state database; ':memory:' keeps none.")
    rule_files: list[RuleFileEntry] = Field([], description="Globs of Prometheus-format rule files, relative to this file.")
    default_rules: bool = Field(True, description="Also load the default host and service rules shipped with healwatch.")
    evaluation: EvaluationConfig = Field(
        EvaluationConfig(), description="How rule groups are evaluated (Prometheus' global settings and flags)."
    )
    interval: PositiveDuration = Field(15.0, description="Collection interval for process metrics.")
    host: HostConfig = Field(HostConfig(), description="The host collector (node_exporter-style node_* metrics).")
    api: ApiConfig = Field(ApiConfig(), description="The HTTP API's token, limits, TLS and query bounds.")
    store: StoreConfig = Field(StoreConfig(), description="The in-memory series store the rules query.")
    services: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ServiceConfig] = Field(
        {}, description="The watched services by name; the name is the `service` label of their metrics and alerts."
    )
    time_intervals: list[TimeIntervalConfig] = Field(
        [], description="Named times (Alertmanager's time_intervals) that routes and playbooks are muted or active in."
    )
    playbooks: list[PlaybookConfig] = Field(
        [], description="Healing playbooks: triggers and steps. A service with autoheal: true needs none."
    )
    healing: HealingConfig = Field(HealingConfig(), description="Settings for all healing: dry run, resuming.")
    coordination: CoordinationConfig = Field(
        CoordinationConfig(), description="The store agents share fleet budgets in (playbooks' fleet:)."
    )
    notify: NotifyConfig = Field(
        NotifyConfig(), description="Where alerts and healing notices go, in Alertmanager's shape."
    )
    # Names of the environment variables the file referenced as ${NAME}: their values may be secrets.
    _env_references: frozenset[str] = PrivateAttr(frozenset())

    @property
    def env_references(self) -> frozenset[str]:
        return self._env_references

    @model_validator(mode="after")
    def _healing_references(self) -> AgentConfig:
        problems = _reference_problems(self.services, self.playbooks) + self._interval_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _ramps_can_weigh(self) -> AgentConfig:
        """A progressive restore needs a traffic backend that weighs traffic; the error is at the step's line."""
        errors: list[Any] = []  # pydantic_core's InitErrorDetails, which this package does not import
        for index, playbook in enumerate(self.playbooks):
            traffic = self.services[playbook.target].traffic if playbook.target in self.services else None
            for number, step in enumerate(playbook.steps):
                if not isinstance(step.traffic, TrafficStepConfig) or traffic is None or traffic.weighs():
                    continue
                kind = next(key for key in ("readiness", "haproxy", "file", "exec") if getattr(traffic, key) is not None)
                message = (f"service {playbook.target!r} has {kind} traffic, which is all or nothing and cannot ramp "
                           "(haproxy can; file needs weight_path, exec needs weight); use traffic: restore")
                errors.append({"type": "value_error", "loc": ("playbooks", index, "steps", number, "traffic"),
                               "input": None, "ctx": {"error": ValueError(message)}})
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _interval_problems(self) -> list[str]:
        """Duplicate interval names, and names used but not defined (load_config reports those at their line)."""
        problems = [f"time_intervals: time interval {name!r} is not unique"
                    for name in duplicate_names(self.time_intervals)]
        defined = {entry.name for entry in self.time_intervals}
        used = interval_names(self.notify.route) + [
            (f"playbooks -> {index} -> active_time_intervals", name)
            for index, playbook in enumerate(self.playbooks) for name in playbook.active_time_intervals
        ]
        problems += [f"{where}: undefined time interval {name!r}" for where, name in used if name not in defined]
        return problems


def _reference_problems(services: Mapping[str, ServiceConfig], playbooks: Sequence[PlaybookConfig]) -> list[str]:
    """Every name a playbook or ``depends_on`` uses that the config does not define, and unusable steps."""
    problems = []
    for name, service in services.items():
        for dependency in service.depends_on:
            if dependency not in services:
                problems.append(f"services -> {name} -> depends_on: unknown service {dependency!r}")
            elif dependency == name:
                problems.append(f"services -> {name} -> depends_on: a service cannot depend on itself")
        if service.autoheal and service.restart is None:
            problems.append(f"services -> {name} -> autoheal: needs restart: to say how to restart it")
    seen: set[str] = set()
    for index, playbook in enumerate(playbooks):
        where = f"playbooks -> {index}"
        if playbook.name in seen:
            problems.append(f"{where} -> name: duplicate playbook name {playbook.name!r}")
        seen.add(playbook.name)
        target = services.get(playbook.target)
        if target is None:
            problems.append(f"{where}: unknown service {playbook.target!r}")
            continue
        for number, when in enumerate(playbook.when):
            check = when.check_failed.check if when.check_failed else None
            if check is not None and check not in {c.name for c in target.checks}:
                problems.append(f"{where} -> when -> {number}: service {playbook.target!r} has no check {check!r}")
            if when.process_exited is not None and target.process is None:
                problems.append(f"{where} -> when -> {number}: service {playbook.target!r} has no process: to watch")
        for number, step in enumerate(playbook.steps):
            if step.action == "restart" and target.restart is None:
                problems.append(f"{where} -> steps -> {number}: service {playbook.target!r} has no restart: configured")
            if step.action == "traffic" and target.traffic is None:
                problems.append(f"{where} -> steps -> {number}: service {playbook.target!r} has no traffic: configured")
    return problems
