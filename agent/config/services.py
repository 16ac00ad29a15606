"""The ``services`` section: how a service's process is found, its checks and probes, and its scrape."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.config.healing import ChildEnv, RestartConfig, TrafficConfig
from agent.config.types import Duration, HostPort, HttpUrl, PositiveDuration, Regex, Section
from rules.durations import format_duration


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


DEFAULT_SCRAPE_TIMEOUT_S = 10.0  # Prometheus' global scrape_timeout


class ScrapeConfig(Section):
    url: HttpUrl
    interval: PositiveDuration = 15.0
    timeout: PositiveDuration | None = Field(
        None, description="How long one scrape may take; by default 10s, or the interval when shorter (as Prometheus).",
    )
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
        if self.timeout is not None and self.timeout > self.interval:
            raise ValueError(
                f"timeout {format_duration(self.timeout)} exceeds interval {format_duration(self.interval)}"
            )
        return self

    @property
    def timeout_s(self) -> float:
        """The timeout given, else the default shortened to the interval: a 5s scrape cannot wait 10s."""
        return self.timeout if self.timeout is not None else min(DEFAULT_SCRAPE_TIMEOUT_S, self.interval)


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
