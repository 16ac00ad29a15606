"""The agent's config schema, and loading it from YAML with positioned errors."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from agent.config.types import DEFAULT_PORT, Duration, HostPort, HttpUrl, PositiveDuration, Regex, Section
from agent.config.healing import (
    ChildEnv,
    CoordinationConfig,
    HealingConfig,
    PlaybookConfig,
    RestartConfig,
    TrafficConfig,
)
from agent.config.notify import NotifyConfig
from rules.durations import format_duration
from rules.errors import SourceError, SourceIssue
from rules.yamlfile import Path as YamlPath
from rules.yamlfile import Positions, load_yaml, read_source

DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
# ``${NAME}`` as load_yaml substitutes it; ``$$`` is a literal dollar and names nothing.
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ProcessMatch(Section):
    """How a service's process is found: exactly one of pidfile, name or cmdline."""

    pidfile: str | None = None
    name: str | None = Field(None, description="Exact process name (as in /proc/PID/comm or argv[0]).")
    cmdline: Regex | None = Field(None, description="Regex searched in the space-joined command line.")
    children: bool = Field(False, description="Add the resources of child processes.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ProcessMatch:
        given = [k for k in ("pidfile", "name", "cmdline") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("expected exactly one of pidfile, name or cmdline")
        return self


class HttpProbe(Section):
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, str] = {}
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        [], description="Healthy status codes; empty means any 2xx."
    )
    body_regex: Regex | None = None
    tls_verify: bool = True
    max_body_bytes: int = Field(1 << 20, gt=0, description="Read at most this much of the body.")


class TcpProbe(Section):
    address: HostPort


class ExecProbe(Section):
    command: list[str] = Field(min_length=1, description="argv list; never run through a shell.")
    env: ChildEnv = {}


class ProcessProbe(Section):
    """Healthy while the service's matched process is alive."""


class FailuresWithin(Section):
    """Monit's "N failures within M cycles": catches a check that fails every other run."""

    count: int = Field(ge=1, description="Failures that make the check unhealthy...")
    window: int = Field(ge=1, le=1000, description="...among this many latest runs.")

    @model_validator(mode="after")
    def _count_fits(self) -> FailuresWithin:
        if self.count > self.window:
            raise ValueError(f"count {self.count} cannot exceed window {self.window}")
        return self


class CheckConfig(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    exec: ExecProbe | None = None
    process: ProcessProbe | None = None
    interval: PositiveDuration = 10.0
    timeout: PositiveDuration = 1.0
    failure_threshold: int = Field(3, ge=1)
    success_threshold: int = Field(1, ge=1)
    failures_within: FailuresWithin | None = None
    initial_delay: Duration = 0.0

    @model_validator(mode="after")
    def _one_probe(self) -> CheckConfig:
        if len(self.probe_kinds()) != 1:
            raise ValueError("expected exactly one probe: http, tcp, exec or process")
        return self

    def probe_kinds(self) -> list[str]:
        return [k for k in ("http", "tcp", "exec", "process") if getattr(self, k) is not None]

    @property
    def kind(self) -> str:
        return self.probe_kinds()[0]


class ScrapeConfig(Section):
    url: HttpUrl
    interval: PositiveDuration = 15.0
    timeout: PositiveDuration = 10.0
    max_bytes: int = Field(10 << 20, gt=0, description="A larger response fails the scrape.")
    # Prometheus defaults every limit to 0 (none); a sidecar shares one series cap with the host and itself.
    sample_limit: int = Field(
        10_000, ge=0, description="More samples fail the whole scrape, as in Prometheus; 0: no limit."
    )
    label_limit: int = Field(0, ge=0, description="More labels on a sample (name, service included) fail the scrape.")
    label_name_length_limit: int = Field(0, ge=0, description="A longer label name fails the scrape.")
    label_value_length_limit: int = Field(0, ge=0, description="A longer label value fails the scrape.")

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> ScrapeConfig:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout {format_duration(self.timeout)} exceeds interval {format_duration(self.interval)}"
            )
        return self


class ServiceConfig(Section):
    process: ProcessMatch | None = None
    checks: list[CheckConfig] = []
    scrape: ScrapeConfig | None = None
    restart: RestartConfig | None = None
    traffic: TrafficConfig | None = None
    depends_on: list[str] = Field([], description="Services that must be healthy before this one is restarted.")
    autoheal: bool = Field(False, description="Heal with the default playbook: cut traffic, restart, wait, restore.")

    @model_validator(mode="after")
    def _consistent(self) -> ServiceConfig:
        names = [check.name for check in self.checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate check names: {', '.join(duplicates)}")
        if self.process is None and any(c.process for c in self.checks):
            raise ValueError("a process check needs the service's process: {pidfile|name|cmdline}")
        return self


class HostConfig(Section):
    enabled: bool = True
    interval: PositiveDuration = 15.0
    filesystem_exclude_types: list[str] = Field(
        default_factory=lambda: sorted(_PSEUDO_FILESYSTEMS),
        description="Filesystem types never reported (pseudo and virtual filesystems).",
    )


# node_exporter's default --collector.filesystem.fs-types-exclude.
_PSEUDO_FILESYSTEMS: set[str] = {
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay", "proc",
    "procfs", "pstore", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tracefs",
}


class StoreConfig(Section):
    retention: PositiveDuration = Field(600.0, description="How long samples are kept in memory.")
    max_series: int = Field(100_000, ge=1, description="New series beyond this are refused and counted.")
    max_scraped_series: int | None = Field(
        None, ge=1, description="Series all scrapes together may hold, so the host's, the probes' and the agent's "
        "own always have room (default: 90% of max_series).",
    )

    @model_validator(mode="after")
    def _scraped_within_max(self) -> StoreConfig:
        if self.max_scraped_series is not None and self.max_scraped_series > self.max_series:
            raise ValueError(f"max_scraped_series {self.max_scraped_series} exceeds max_series {self.max_series}")
        return self

    @property
    def scraped_series_limit(self) -> int:
        return self.max_scraped_series or max(1, self.max_series * 9 // 10)


class EvaluationConfig(Section):
    """How rule groups are evaluated; names follow Prometheus' settings and flags."""

    interval: PositiveDuration = Field(15.0, description="Default evaluation interval of rule groups.")
    external_labels: dict[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")], str] = {}
    external_url: str = Field("", description="Used for generatorURL and $externalURL in templates.")
    lookback_delta: PositiveDuration = Field(300.0, description="How far back an instant selector looks.")
    for_outage_tolerance: PositiveDuration = Field(3600.0, description="Max downtime for which `for` state is restored.")
    for_grace_period: Duration = Field(600.0, description="Minimum `for` left after a restore.")
    resend_delay: PositiveDuration = Field(60.0, description="Re-send firing alerts this often.")
    query_max_samples: int = Field(
        50_000_000, gt=0, description="Samples and points one rule's query may load or compute (Prometheus' "
        "--query.max-samples); a rule over it fails its evaluation with Prometheus' error.")
    # Rules run on the agent's event loop, so Prometheus' 2m would stall checks and healing that long.
    query_timeout: PositiveDuration = Field(
        10.0, description="A rule's query (or a template's) is stopped after this and the rule fails its evaluation.")


class TlsConfig(Section):
    cert_file: str
    key_file: str


class ApiConfig(Section):
    """The JSON API's protection: a bearer token for mutations (or everything), body limits, TLS."""

    auth: Literal["mutations", "all"] = Field("mutations", description="Which requests need the token.")
    token_env: str = Field("HEALWATCH_TOKEN", description="Environment variable holding the API token.")
    token_file: str | None = Field(None, description="File holding the API token (wins over token_env).")
    max_body_bytes: int = Field(64 << 10, gt=0)
    tls: TlsConfig | None = None
    query_timeout: PositiveDuration = Field(10.0, description="A PromQL query through the API is stopped after this.")
    # Far below Prometheus' 50M: each point a subquery computes is a few Python objects, and at 100k the
    # garbage collector's pauses (they stop the event loop too) stay near 30 ms and a query near 0.3 s of CPU.
    query_max_samples: int = Field(
        100_000, gt=0, description="Samples and points one API query may load or compute (like Prometheus' "
        "--query.max-samples)."
    )
    query_max_concurrency: int = Field(2, gt=0, description="API queries evaluated at once; more wait their turn.")
    max_connections: int | None = Field(
        None, gt=0, description="Open HTTP connections; default min(256, a quarter of the open-file limit)."
    )
    idle_timeout: PositiveDuration = Field(
        10.0, description="A connection without a complete request for this long is closed."
    )


class AgentConfig(Section):
    listen: HostPort = DEFAULT_LISTEN
    state_path: str = Field("./healwatch.db", description="SQLite state database; ':memory:' keeps none.")
    rule_files: list[str] = Field([], description="Globs of Prometheus-format rule files, relative to this file.")
    default_rules: bool = Field(True, description="Also load the default host and service rules shipped with healwatch.")
    evaluation: EvaluationConfig = EvaluationConfig()
    interval: PositiveDuration = Field(15.0, description="Collection interval for process metrics.")
    host: HostConfig = HostConfig()
    api: ApiConfig = ApiConfig()
    store: StoreConfig = StoreConfig()
    services: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ServiceConfig] = {}
    playbooks: list[PlaybookConfig] = []
    healing: HealingConfig = HealingConfig()
    coordination: CoordinationConfig = CoordinationConfig()
    notify: NotifyConfig = NotifyConfig()
    # Names of the environment variables the file referenced as ${NAME}: their values may be secrets.
    _env_references: frozenset[str] = PrivateAttr(frozenset())

    @property
    def env_references(self) -> frozenset[str]:
        return self._env_references

    @model_validator(mode="after")
    def _healing_references(self) -> AgentConfig:
        problems = _reference_problems(self.services, self.playbooks)
        if problems:
            raise ValueError("; ".join(problems))
        return self


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


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a config file; raise SourceError listing every problem."""
    return parse_config(read_source(path, "config"), str(path))


def parse_config(text: str, file: str) -> AgentConfig:
    """Validate config text; ``file`` names it in errors."""
    data, positions = load_yaml(text, file, substitute_env=True)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourceError([positions.issue((), "expected a mapping of settings at the top level")])
    for secret in _secret_values(AgentConfig, data):
        positions.hide(secret, "<secret>")
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise SourceError(_issues(exc, positions)) from None
    config._env_references = frozenset(filter(None, (m.group(1) for m in _ENV_REFERENCE.finditer(text))))
    return config


def _secret_values(annotation: Any, value: Any) -> Iterator[str]:
    """The strings in ``value`` that the schema ``annotation`` reads into SecretStr fields."""
    annotation = _unwrap(annotation)
    if annotation is SecretStr:
        if isinstance(value, str):
            yield value
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        for key, item in value.items():
            field = annotation.model_fields.get(str(key))
            if field is not None:
                yield from _secret_values(field.annotation, item)
    elif typing.get_origin(annotation) is dict and isinstance(value, dict):
        for item in value.values():
            yield from _secret_values(typing.get_args(annotation)[-1], item)
    elif typing.get_origin(annotation) is list and isinstance(value, list):
        for item in value:
            yield from _secret_values(typing.get_args(annotation)[0], item)


def _issues(exc: ValidationError, positions: Positions) -> list[SourceIssue]:
    """Positioned issues; values from the environment and secret fields are named, never quoted."""
    issues = []
    for error in exc.errors(include_url=False):
        loc: YamlPath = tuple(error["loc"])
        where = " -> ".join(str(part) for part in loc) or "top level"
        if error["type"] == "extra_forbidden":
            message = f"{where}: unknown key {loc[-1]!r}{_did_you_mean(loc)}"
            issues.append(positions.issue(loc, message, at_key=True))
            continue
        message = positions.redact(error["msg"].removeprefix("Value error, "))
        if error["type"] == "missing":
            message = f"missing required key {loc[-1]!r}"
        issues.append(positions.issue(loc, f"{where}: {message}"))
    return sorted(set(issues), key=lambda i: (i.line, i.column, i.message))


def _did_you_mean(loc: YamlPath) -> str:
    model = _model_at(AgentConfig, loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(model.model_fields)})"


def _model_at(annotation: Any, loc: YamlPath) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc``, following dicts, lists and Optionals."""
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = members[0]
        else:
            return annotation
