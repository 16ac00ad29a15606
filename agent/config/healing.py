"""The healing part of the config: per-service restart/traffic/depends_on/autoheal, playbooks, healing defaults.

Each section converts itself into the plain values ``healers/`` works with (backend settings,
``StepSpec``); what needs the whole config (cross-references, the playbooks of every service)
lives in ``agent.config`` and ``agent.healing``, so this module imports neither.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from agent.config.timeintervals import IntervalName
from agent.config.types import Duration, PositiveDuration, Section
from healers.backends import (
    DockerRestart,
    ExecRestart,
    ExecTraffic,
    FileTraffic,
    HaproxyTraffic,
    ReadinessTraffic,
    RestartSettings,
    SignalRestart,
    SupervisorRestart,
    TrafficSettings,
)
from healers.backends.restart import parse_signal
from healers.exprcheck import check as check_expr
from healers.backends.traffic import check_haproxy_name, parse_address
from healers.fleet import parse_limit
from healers.playbook import (
    DEFAULT_TRAFFIC_TIMEOUT_S,
    Action,
    Backoff,
    Budget,
    OnFailure,
    PlaybookSpec,
    StepSpec,
    Trigger,
)
from healers.ramp import Ramp
from healers.verify import Verify

Argv = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, description="argv; never a shell.")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
ChildEnv = Annotated[
    dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str],
    Field(description="Variables added to the command's minimal environment (PATH, HOME, LANG, LC_*, TZ); "
                      "pass one of the agent's own with NAME: ${NAME}."),
]
DEFAULT_STORE_URLS = {"redis": "redis://127.0.0.1:6379/0", "etcd": "http://127.0.0.1:2379"}
_STORE_SCHEMES = {"redis": ("redis://", "rediss://", "unix://"), "etcd": ("http://", "https://")}


def _exactly_one(model: Section, keys: Sequence[str]) -> None:
    given = [key for key in keys if getattr(model, key) is not None]
    if len(given) != 1:
        raise ValueError(f"expected exactly one of {', '.join(keys)}")


def _signal_name(value: str) -> str:
    parse_signal(value)
    return value


_BYTE_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "KB": 1000, "MB": 1000 * 1000}


def _byte_size(value: Any) -> int:
    """``64KiB``, ``1MiB``, ``500KB`` or a plain number of bytes, greater than 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|KB|MB)?", str(value).strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"expected a size such as 64KiB, 1MiB or 4096, got {value!r}")
        size = int(match[1]) * _BYTE_UNITS[match[2] or ""]
    if size <= 0:
        raise ValueError("must be greater than 0 bytes")
    return size


ByteSize = Annotated[
    int,
    BeforeValidator(_byte_size),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^\d+\s*(B|KiB|MiB|KB|MB)?$"},
                              {"type": "integer", "minimum": 1}], "examples": ["64KiB", "1MiB"]}),
]


# -- service level -----------------------------------------------------------------


class SupervisorConfig(Section):
    url: str = Field(description="unix:///run/supervisor.sock or http://127.0.0.1:9001/RPC2")
    program: str = Field(
        description="The supervisord program (as supervisorctl names it): stopped, started, read back as RUNNING."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("unix://", "http://", "https://")):
            raise ValueError(f"expected a unix:// or http(s):// URL, got {value!r}")
        return value


class DockerConfig(Section):
    socket: str = Field("/var/run/docker.sock", description="The Docker Engine API's unix socket (Docker's default).")
    container: str = Field(description="Container name or id.")


class RestartConfig(Section):
    """How the service is restarted: exactly one backend."""

    exec: Argv | None = Field(None, description="Restart by running this argv (never a shell); exit 0 is success.")
    signal: str | None = Field(None, description="Signal the matched process; its parent restarts it.")
    supervisor: SupervisorConfig | None = Field(None, description="Restart a supervisord program over XML-RPC.")
    docker: DockerConfig | None = Field(None, description="Restart a container through the Docker Engine API.")
    env: ChildEnv = {}

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str | None) -> str | None:
        return None if value is None else _signal_name(value)

    @model_validator(mode="after")
    def _one(self) -> RestartConfig:
        _exactly_one(self, ("exec", "signal", "supervisor", "docker"))
        if self.env and self.exec is None:
            raise ValueError("env applies only to an exec restart")
        return self

    def settings(self) -> RestartSettings:
        if self.exec is not None:
            return ExecRestart(tuple(self.exec), tuple(self.env.items()))
        if self.signal is not None:
            return SignalRestart(self.signal)
        if self.supervisor is not None:
            return SupervisorRestart(self.supervisor.url, self.supervisor.program)
        assert self.docker is not None
        return DockerRestart(self.docker.socket, self.docker.container)


class ReadinessConfig(Section):
    """``/-/ready/{service}`` answers 503 while traffic is cut."""


class HaproxyConfig(Section):
    socket: str | None = Field(None, description="The runtime API's unix socket.")
    address: str | None = Field(None, description="The runtime API's TCP host:port.")
    backend: str = Field(description="The HAProxy backend the service's server is in.")
    server: str = Field(description="The service's server in that backend.")
    mode: Literal["maint", "drain"] = Field(
        "maint", description="The state a cut sets: maint sends the server no new traffic, drain still lets "
        "persistent (sticky) sessions in; maint, since the server is about to be restarted.",
    )

    @model_validator(mode="after")
    def _valid(self) -> HaproxyConfig:
        _exactly_one(self, ("socket", "address"))
        if self.address is not None:
            parse_address(self.address)
        check_haproxy_name("backend", self.backend)
        check_haproxy_name("server", self.server)
        return self


class FileConfig(Section):
    path: str = Field(min_length=1, description="Flag file created while traffic is cut.")
    weight_path: str | None = Field(
        None, min_length=1, description="File holding the service's share of traffic, 0 to 100: a progressive "
        "restore writes each stage's percentage, a restore 100. Without it the file backend cannot ramp.",
    )


class ExecTrafficConfig(Section):
    cut: Argv = Field(description="argv run to take the service out of rotation (never a shell); exit 0 is success.")
    restore: Argv = Field(description="argv run to put it back.")
    weight: Argv | None = Field(
        None, description="argv run at each stage of a progressive restore; $PERCENT in an argument (and "
        "HEALWATCH_TRAFFIC_PERCENT) is the share, 0 to 100. Without it the exec backend cannot ramp.",
    )
    env: ChildEnv = {}


class TrafficConfig(Section):
    """How the service is taken out of rotation: exactly one backend."""

    readiness: ReadinessConfig | None = Field(
        None, description="Fail the agent's /-/ready/{service}, which a load balancer or kubelet polls; write `{}`."
    )
    haproxy: HaproxyConfig | None = Field(None, description="Set the server's state through HAProxy's runtime API.")
    file: FileConfig | None = Field(None, description="Create a flag file that nginx or a health script tests.")
    exec: ExecTrafficConfig | None = Field(None, description="Run one command to cut and one to restore.")

    @model_validator(mode="after")
    def _one(self) -> TrafficConfig:
        _exactly_one(self, ("readiness", "haproxy", "file", "exec"))
        return self

    def settings(self) -> TrafficSettings:
        if self.readiness is not None:
            return ReadinessTraffic()
        if self.haproxy is not None:
            h = self.haproxy
            return HaproxyTraffic(h.backend, h.server, socket=h.socket, address=h.address, mode=h.mode)
        if self.file is not None:
            return FileTraffic(self.file.path, self.file.weight_path)
        assert self.exec is not None
        return ExecTraffic(tuple(self.exec.cut), tuple(self.exec.restore), tuple(self.exec.env.items()),
                           tuple(self.exec.weight or ()))

    def weighs(self) -> bool:
        """Whether the backend can give the service a share of traffic, as a progressive restore needs."""
        return (self.haproxy is not None or (self.file is not None and self.file.weight_path is not None)
                or (self.exec is not None and self.exec.weight is not None))


# -- playbooks -----------------------------------------------------------------------


class CheckFailedWhen(Section):
    service: Name = Field(description="The service whose check turning unhealthy starts the playbook.")
    check: Name | None = Field(None, description="Only this check; any of the service's checks when omitted.")


class ProcessExitedWhen(Section):
    service: Name = Field(description="The service whose process exiting starts the playbook (needs its process:).")


class WhenConfig(Section):
    """One trigger: exactly one of check_failed, process_exited or alert (labels the alert must carry)."""

    check_failed: CheckFailedWhen | None = Field(None, description="When a check of the service turns unhealthy.")
    process_exited: ProcessExitedWhen | None = Field(None, description="When the service's process exits.")
    alert: dict[str, str] | None = Field(None, description="Labels the firing alert must carry, e.g. alertname.")

    @model_validator(mode="after")
    def _one(self) -> WhenConfig:
        _exactly_one(self, ("check_failed", "process_exited", "alert"))
        if self.alert is not None and not self.alert:
            raise ValueError("alert: expected at least one label to match, such as alertname")
        return self

    def service(self) -> str | None:
        if self.check_failed is not None:
            return self.check_failed.service
        if self.process_exited is not None:
            return self.process_exited.service
        return (self.alert or {}).get("service")


class WaitHealthyArgs(Section):
    timeout: PositiveDuration = Field(
        60.0, description="How long the service's checks are re-run until each meets its success_threshold."
    )


class NotifyArgs(Section):
    message: str = Field(description="The notice's summary annotation.")
    severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="The notice's severity label, which routes can match."
    )


class CaptureArgs(Section):
    """Diagnostics before acting: the command's output, redacted, is attached to the incident."""

    exec: Argv = Field(
        description="argv (never a shell) run once; $PID in an argument is the service's pid, also in HEALWATCH_PID "
        "(a command naming $PID fails when the pid is unknown). stdout and stderr are both kept.",
    )
    timeout: PositiveDuration = Field(10.0, description="The command is killed (its process group) after this; "
                                      "what it printed is kept and the step fails.")
    max_bytes: ByteSize = Field(
        "64KiB", validate_default=True,
        description="Output kept, such as 64KiB; a command printing more is killed at the bound and the step passes "
        "with what it kept.",
    )


class RampConfig(Section):
    """Restore traffic in stages, each held while a guard expression stays empty."""

    ramp: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        min_length=1, description="The service's share of traffic at each stage, in percent, ascending to 100. "
        "HAProxy reads it as a percentage of the server's configured weight (give servers weights such as 100).",
    )
    hold: PositiveDuration = Field(30.0, description="How long each stage is held, the last one included.")
    guard: str | None = Field(
        None, description="PromQL over the agent's local store, scoped to the service as verify's expr ($service), "
        "read at each stage's start, every second and at its end: a non-empty result cuts traffic again and "
        "escalates. Without it the stages are only held.",
    )

    @field_validator("ramp")
    @classmethod
    def _ascending(cls, stages: list[int]) -> list[int]:
        if any(later <= earlier for earlier, later in zip(stages, stages[1:], strict=False)) or stages[-1] != 100:
            raise ValueError(f"expected shares ascending to 100, such as [10, 50, 100], got {stages}")
        return stages

    @field_validator("guard")
    @classmethod
    def _promql(cls, expr: str | None) -> str | None:
        problem = None if expr is None else check_expr(expr)
        if problem is not None:
            raise ValueError(f"could not use the guard expression: {problem}")
        return expr


class TrafficStepConfig(Section):
    """A progressive restore: ``{restore: {ramp: [10, 50, 100], hold: 30s, guard: <PromQL>}}``."""

    restore: RampConfig = Field(description="Restore traffic in stages through a backend that can weigh it.")


def _traffic_step(value: Any) -> Any:
    """A mapping is a progressive restore, validated here so its errors name its own keys, not the union's."""
    if isinstance(value, dict):
        return TrafficStepConfig.model_validate(value)
    if value is not None and value not in ("cut", "restore"):
        raise ValueError(f"expected cut, restore or {{restore: {{ramp: [...], hold: ..., guard: ...}}}}, got {value!r}")
    return value


class VerifyArgs(Section):
    """A heal proves itself on the service's series before the playbook goes on."""

    expr: str = Field(
        description="PromQL over the agent's local store, evaluated every `interval`; $service in it is the "
        "service's name, and series labelled with another service are left out of its result.",
    )
    for_: Duration = Field(
        0.0, alias="for", description="The step passes once the expression has returned a non-empty result (with "
        "absent: an empty one) continuously this long; a result of the other kind starts it over.",
    )
    timeout: PositiveDuration = Field(120.0, description="The step fails when it has not passed by then.")
    absent: bool = Field(False, description="Pass while the expression is empty instead, as a guard (no 5xx).")
    interval: PositiveDuration = Field(1.0, description="How often the expression is evaluated; each result is "
                                       "journaled (equal results in a row as one line).")

    @field_validator("expr")
    @classmethod
    def _promql(cls, expr: str) -> str:
        problem = check_expr(expr)
        if problem is not None:
            raise ValueError(f"could not use the verify expression: {problem}")
        return expr

    def verify(self) -> Verify:
        return Verify(self.expr, self.for_, self.timeout, self.absent, self.interval)


class EmptyArgs(Section):
    """An action without settings: ``restart: {}``."""


DEFAULT_TIMEOUTS_S = {
    "traffic": DEFAULT_TRAFFIC_TIMEOUT_S, "restart": 60.0, "exec": 30.0, "signal": 5.0, "notify": 10.0,
}
STEP_ACTIONS: tuple[Action, ...] = get_args(Action)  # each a key of StepConfig
# A capture's step outlasts its command's timeout by this, so the killed command's output is still kept.
CAPTURE_GRACE_S = 5.0
# A verify step's hard bound outlasts its own timeout (measured on the healing clock) by this.
VERIFY_GRACE_S = 5.0


class StepConfig(Section):
    """One step: exactly one action, with an optional timeout and what to do when it fails."""

    traffic: Annotated[Literal["cut", "restore"] | TrafficStepConfig | None, BeforeValidator(_traffic_step)] = Field(
        None, description="Cut or restore the service's traffic through its traffic: backend (timeout 10s), or "
        "restore it progressively: {restore: {ramp: [10, 50, 100], hold: 30s, guard: <PromQL>}} (timeout: the "
        "holds plus 10s a stage; on_failure escalate, and traffic stays cut).",
    )
    restart: EmptyArgs | None = Field(
        None, description="Restart the service through its restart: backend (timeout 60s); write `{}`."
    )
    exec: Argv | None = Field(None, description="Run this argv, never through a shell; exit 0 passes (timeout 30s).")
    signal: str | None = Field(
        None, description="Send this signal (TERM, SIGHUP, 9) to the service's process (timeout 5s)."
    )
    wait_healthy: WaitHealthyArgs | None = Field(
        None, description="Re-run the service's checks until all pass; fails at its timeout."
    )
    sleep: PositiveDuration | None = Field(None, description="Wait this long (timeout: this plus 1s).")
    notify: NotifyArgs | None = Field(
        None, description="Send a healing notice through the notify routes (timeout 10s)."
    )
    capture: CaptureArgs | None = Field(
        None, description="Run a diagnostics command and attach its bounded, redacted output to the incident; "
        "triggers of the service wait while it runs, like during any step. A failed capture continues the run "
        "unless on_failure says otherwise.",
    )
    verify: VerifyArgs | None = Field(
        None, description="Evaluate PromQL over the local store until it has held for `for`; fails at its "
        "timeout (2m), and then the playbook's rollback steps run, if it has any.",
    )
    env: ChildEnv = {}
    timeout: PositiveDuration | None = Field(
        None, description="The step fails when not done by then; default: its action's timeout, named above."
    )
    on_failure: Literal["abort", "continue", "escalate"] = Field(
        "abort", description="When the step fails: abort the run, continue with the next step, or escalate "
        "(abort, suspend the service's auto-healing and notify).",
    )

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str | None) -> str | None:
        return None if value is None else _signal_name(value)

    @model_validator(mode="after")
    def _one(self) -> StepConfig:
        _exactly_one(self, STEP_ACTIONS)
        if self.env and self.exec is None and self.capture is None:
            raise ValueError("env applies only to an exec or capture step")
        if self.capture is not None and self.timeout is not None:
            raise ValueError("a capture step has its own timeout: write it inside capture:")
        if self.verify is not None and self.timeout is not None:
            raise ValueError("a verify step has its own timeout: write it inside verify:")
        return self

    @property
    def action(self) -> Action:
        return next(action for action in STEP_ACTIONS if getattr(self, action) is not None)

    def spec(self) -> StepSpec:
        action = self.action
        args: dict[str, Any] = {}
        default_timeout = DEFAULT_TIMEOUTS_S.get(action, 0.0)
        if isinstance(self.traffic, TrafficStepConfig):
            restore = self.traffic.restore
            args = {"op": "restore", "ramp": Ramp(tuple(restore.ramp), restore.hold, restore.guard)}
            default_timeout = len(restore.ramp) * (restore.hold + DEFAULT_TRAFFIC_TIMEOUT_S) + DEFAULT_TRAFFIC_TIMEOUT_S
        elif self.traffic is not None:
            args = {"op": self.traffic}
        elif self.exec is not None:
            args = {"command": tuple(self.exec), "env": dict(self.env)}
        elif self.signal is not None:
            args = {"signal": self.signal}
        elif self.wait_healthy is not None:
            default_timeout = self.wait_healthy.timeout
        elif self.sleep is not None:
            args = {"seconds": self.sleep}
            default_timeout = self.sleep + 1.0
        elif self.notify is not None:
            args = {"message": self.notify.message, "severity": self.notify.severity}
        elif self.capture is not None:
            args = {"command": tuple(self.capture.exec), "env": dict(self.env), "timeout_s": self.capture.timeout,
                    "max_bytes": self.capture.max_bytes}
            default_timeout = self.capture.timeout + CAPTURE_GRACE_S
        elif self.verify is not None:
            args = {"verify": self.verify.verify()}
            default_timeout = self.verify.timeout + VERIFY_GRACE_S
        # Diagnostics that fail must not keep the heal from healing: a capture continues unless told otherwise;
        # a progressive restore whose guard fired leaves traffic cut, which a person must hear about.
        defaults: dict[str, OnFailure] = {"capture": "continue", "ramp": "escalate"}
        kind = "ramp" if isinstance(self.traffic, TrafficStepConfig) else action
        on_failure = self.on_failure if "on_failure" in self.model_fields_set else defaults.get(kind, self.on_failure)
        return StepSpec(action, args, self.timeout or default_timeout, on_failure)


class BudgetConfig(Section):
    max_runs: int = Field(
        3, ge=1, description="Runs of the service's playbooks within `within` after which its auto-healing is "
        "suspended (until healthy for healing.resume_after_healthy, or reset).",
    )
    within: PositiveDuration = Field(1800.0, description="The window in which runs count against max_runs.")


class BackoffConfig(Section):
    """The wait after a run before the next: initial * factor^(runs in the budget window - 1), at most max."""

    initial: Duration = Field(
        10.0, description="The wait after the first run (Kubernetes' CrashLoopBackOff starts at 10s too)."
    )
    factor: float = Field(2.0, ge=1.0, description="Each further run in the budget window multiplies the wait by this.")
    max: Duration = Field(300.0, description="The longest wait (CrashLoopBackOff's cap, 5m).")


class FleetConfig(Section):
    """The playbook's share of a fleet-wide budget, taken before it cuts traffic or restarts."""

    group: Name = Field(description="The fleet budget's name; agents whose playbooks name it share it.")
    max_concurrent: int | str = Field(1, description="Holders at a time: a count, or a percentage such as 10%.")
    fleet_size: int | None = Field(None, ge=1, description="The group's size for a percentage; else its live members.")
    max_runs: int | None = Field(None, ge=1, description="Heals across the fleet within `within`; else unlimited.")
    within: PositiveDuration = Field(600.0, description="The window in which max_runs counts heals.")

    @field_validator("max_concurrent")
    @classmethod
    def _limit(cls, value: int | str) -> int | str:
        parse_limit(value)
        return value


class CoordinationConfig(Section):
    """Where agents share the fleet budget; ``none`` heals locally only."""

    backend: Literal["none", "redis", "etcd"] = Field(
        "none", description="Which store keeps the budget: none heals locally only; etcd is v3, via its JSON gateway.",
    )
    url: str | None = Field(
        None, validate_default=True,
        description=f"Where the store is: a redis://, rediss:// or unix:// URL for redis "
                    f"({DEFAULT_STORE_URLS['redis']} if omitted), an http:// or https:// endpoint for etcd "
                    f"({DEFAULT_STORE_URLS['etcd']} if omitted).",
    )
    policy: Literal["fail_open", "fail_closed"] = Field(
        "fail_closed", description="Store unreachable: heal locally anyway, or only cut traffic."
    )
    lease_ttl: PositiveDuration = Field(
        10.0,
        description="A slot's lease, renewed every third of it during a heal; etcd rounds leases up to whole seconds.",
    )
    member_ttl: PositiveDuration = Field(15.0, description="How long a registration as a live member lasts.")
    member: Name | None = Field(None, description="This agent's name in the fleet; host name and pid if omitted.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The backend's default when omitted; else a URL of a scheme the backend speaks."""
        backend = str(info.data.get("backend"))  # "None" when the backend itself is invalid: that error suffices
        if value is None:
            return DEFAULT_STORE_URLS.get(backend)
        schemes = _STORE_SCHEMES.get(backend)
        if schemes is not None and not value.startswith(schemes):
            expected = f"{', '.join(schemes[:-1])} or {schemes[-1]}"
            raise ValueError(f"expected a URL starting with {expected} for backend {backend}, got {value!r}")
        if backend == "etcd" and not _host_and_port(value):
            raise ValueError(f"expected an etcd endpoint such as {DEFAULT_STORE_URLS['etcd']}, got {value!r}")
        return value


def _host_and_port(url: str) -> bool:
    """Whether ``url`` names a host, and a port in range if any."""
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port out of range or not a number, a broken IPv6 address
        return False


class PlaybookConfig(Section):
    name: Name = Field(description="Unique playbook name, as the journal, API and metrics show it.")
    service: Name | None = Field(None, description="The service healed; by default the one the triggers name.")
    when: list[WhenConfig] = Field([], description="Triggers; without any the playbook only runs on request.")
    steps: list[StepConfig] = Field(min_length=1, description="Actions run in order, each journaled.")
    rollback: list[StepConfig] = Field(
        [], description="Steps run once when a verify step fails (such as: put the last good version back and "
        "restart); then that verify runs again, and if it fails again the playbook escalates.",
    )
    budget: BudgetConfig = Field(BudgetConfig(), description="How many runs before auto-healing is suspended.")
    backoff: BackoffConfig = Field(BackoffConfig(), description="The growing wait between runs.")
    cooldown: Duration = Field(
        60.0, description="No triggered run for this long after a successful one, so the service can settle."
    )
    dry_run: bool = Field(False, description="Journal what the steps would do and execute nothing.")
    traffic_on_abort: Literal["restore", "keep"] = Field(
        "restore", description="After a failed run that cut traffic: restore it, or keep it cut and send a critical "
        "notice; restore, so a service never stays out of rotation unnoticed.",
    )
    fleet: FleetConfig | None = Field(
        None, description="A fleet-wide budget the run must get a slot of before it cuts traffic or restarts."
    )
    active_time_intervals: list[IntervalName] = Field(
        [], description="Names from time_intervals: outside all of them a triggered run only cuts traffic and "
        "notifies (journaled as blocked); manual runs are not limited.",
    )

    @model_validator(mode="after")
    def _one_service(self) -> PlaybookConfig:
        named = {s for s in [self.service, *(w.service() for w in self.when)] if s is not None}
        if not named:
            raise ValueError("name the service this playbook heals (service:, or a trigger's service)")
        if len(named) > 1:
            raise ValueError(f"a playbook heals one service, but it names {', '.join(sorted(named))}")
        if self.rollback and not any(step.verify is not None for step in self.steps):
            raise ValueError("rollback runs when a verify step fails, but no step verifies")
        return self

    @property
    def target(self) -> str:
        return next(s for s in [self.service, *(w.service() for w in self.when)] if s is not None)

    def spec(self, global_dry_run: bool) -> PlaybookSpec:
        """The plain value the healing runtime runs; ``healing.dry_run`` makes every playbook a dry run."""
        service = self.target
        triggers = []
        for when in self.when:
            if when.check_failed is not None:
                triggers.append(Trigger("check_failed", service, check=when.check_failed.check))
            elif when.process_exited is not None:
                triggers.append(Trigger("process_exited", service))
            else:
                triggers.append(Trigger("alert", service, alert_labels=tuple(sorted((when.alert or {}).items()))))
        return PlaybookSpec(
            name=self.name,
            service=service,
            triggers=tuple(triggers),
            steps=tuple(step.spec() for step in self.steps),
            budget=Budget(self.budget.max_runs, self.budget.within),
            backoff=Backoff(self.backoff.initial, self.backoff.factor, self.backoff.max),
            cooldown_s=self.cooldown,
            dry_run=self.dry_run or global_dry_run,
            traffic_on_abort=self.traffic_on_abort,
            active_time_intervals=tuple(self.active_time_intervals),
            rollback=tuple(step.spec() for step in self.rollback),
        )


class HealingConfig(Section):
    dry_run: bool = Field(False, description="Journal what every playbook would do and execute nothing.")
    resume_after_healthy: PositiveDuration = Field(
        600.0, description="A suspended service resumes auto-healing after being healthy this long."
    )
