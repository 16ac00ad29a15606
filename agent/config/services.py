"""The ``services`` section: how a service's process is found, its checks and probes, and its scrape."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.config.healing import ChildEnv, RestartConfig, TrafficConfig
from agent.config.probes import DialogueStep, DnsProbe, GrpcProbe, IcmpProbe, TlsConfig
from agent.config.types import Duration, HostPort, HttpUrl, PositiveDuration, Regex, Section
from rules.durations import format_duration


class ProcessMatch(Section):
    """How a service's process is found: exactly one of pidfile, name or cmdline."""

    pidfile: str | None = Field(None, description="File holding the process id; re-read at every refresh.")
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
    url: HttpUrl = Field(description="The http:// or https:// URL probed; redirects are followed (at most 10, as "
                                     "blackbox_exporter), and the connection is kept alive between probes.")
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = Field("GET", description="HTTP method; sends no body.")
    headers: dict[str, str] = Field(
        {}, description="Request headers; pass a secret (an Authorization header) as ${NAME}."
    )
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        [], description="Healthy status codes; empty means any 2xx."
    )
    body_regex: Regex | None = Field(
        None, description="Also healthy only if this Python regex is found in the body (its first max_body_bytes)."
    )
    tls_verify: bool = Field(True, description="Verify an https URL's certificate; false accepts any (self-signed).")
    tls_config: TlsConfig = Field(
        TlsConfig(), description="min_days_left for an https URL's certificates (probe_ssl_* are always reported); "
        "verification is tls_verify, the CAs those of SSL_CERT_FILE/SSL_CERT_DIR or certifi.",
    )
    max_body_bytes: int = Field(1 << 20, gt=0, description="Read at most this much of the body.")

    @model_validator(mode="after")
    def _tls_config_for_http(self) -> HttpProbe:
        given = self.tls_config.model_fields_set
        others = [key for key in ("insecure_skip_verify", "server_name", "ca_file") if key in given]
        if others:
            raise ValueError(f"tls_config of an http check takes min_days_left only, not {', '.join(others)} "
                             "(use tls_verify; SSL_CERT_FILE names the CAs)")
        return self


class TcpProbe(Section):
    address: HostPort = Field(
        description="HOST:PORT to connect to; healthy when a connection opens within the timeout (closed at once)."
    )
    tls: bool = Field(False, description="Connect over TLS and report the certificates (probe_ssl_*).")
    tls_config: TlsConfig = Field(TlsConfig(), description="Verification and expiry limits for tls and starttls.")
    query_response: list[DialogueStep] = Field(
        [], description="A dialogue held once connected, as blackbox_exporter's: each entry expects a line, then "
        "sends one, then may start TLS; healthy when it completes within the timeout.",
    )


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


CheckRole = Literal["both", "liveness", "readiness", "startup"]


class CheckConfig(Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="Unique within the service; the `check` label of its metrics, and what triggers name."
    )
    http: HttpProbe | None = Field(None, description="Probe with an HTTP request: healthy on an expected status.")
    tcp: TcpProbe | None = Field(None, description="Probe by opening a TCP connection.")
    exec: ExecProbe | None = Field(None, description="Probe by running a command: healthy on exit status 0.")
    process: ProcessProbe | None = Field(None, description="Healthy while the service's process runs; write `{}`.")
    dns: DnsProbe | None = Field(None, description="Probe by asking a DNS server (blackbox_exporter's DNS prober).")
    icmp: IcmpProbe | None = Field(None, description="Probe with an ICMP echo request (ping).")
    grpc: GrpcProbe | None = Field(None, description="Probe with the gRPC health service (needs healwatch[grpc]).")
    interval: PositiveDuration = Field(
        10.0, description="Time between probes (Kubernetes' periodSeconds, whose default it takes)."
    )
    timeout: PositiveDuration = Field(
        1.0, description="A probe not done by then fails (Kubernetes' timeoutSeconds and its default); "
        "an exec probe's process group is killed.",
    )
    failure_threshold: int = Field(
        3, ge=1, description="Consecutive failed probes that turn the check unhealthy (Kubernetes' failureThreshold "
        "and its default).",
    )
    success_threshold: int = Field(
        1, ge=1, description="Consecutive successful probes that turn it healthy again (Kubernetes' successThreshold "
        "and its default).",
    )
    failures_within: FailuresWithin | None = Field(
        None, description="Also unhealthy after count failures among the latest window runs, consecutive or not."
    )
    initial_delay: Duration = Field(
        0.0, description="No probe before this long after the check starts (Kubernetes' initialDelaySeconds); "
        "meanwhile it counts as healthy.",
    )
    role: CheckRole = Field(
        "both", description="As Kubernetes' probes: `liveness` failures heal, `readiness` decides /-/ready/{service}, "
        "`both` does both; `startup` gates the others after every start of the process until it first succeeds, "
        "and failing failure_threshold times in a row then counts as a liveness failure.",
    )

    @model_validator(mode="after")
    def _one_probe(self) -> CheckConfig:
        if self.role == "startup" and self.success_threshold != 1:
            raise ValueError("a startup check's success_threshold must be 1 (as Kubernetes' startupProbe)")
        if len(self.probe_kinds()) != 1:
            raise ValueError("expected exactly one probe: http, tcp, exec, process, dns, icmp or grpc")
        return self

    @property
    def liveness(self) -> bool:
        """Its failure heals: a liveness check, or a startup check whose budget ran out."""
        return self.role != "readiness"

    @property
    def readiness(self) -> bool:
        """It decides whether the service is ready."""
        return self.role in ("both", "readiness")

    def probe_kinds(self) -> list[str]:
        return [k for k in ("http", "tcp", "exec", "process", "dns", "icmp", "grpc") if getattr(self, k) is not None]

    @property
    def kind(self) -> str:
        return self.probe_kinds()[0]


DEFAULT_SCRAPE_TIMEOUT_S = 10.0  # Prometheus' global scrape_timeout


class ScrapeConfig(Section):
    url: HttpUrl = Field(
        description="The service's metrics endpoint; every sample gets its `service` label (honor_labels: false)."
    )
    interval: PositiveDuration = Field(
        15.0, description="Time between scrapes (Prometheus' scrape_interval); 15s like the agent's own collectors."
    )
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
    process: ProcessMatch | None = Field(
        None, description="How the service's process is found: measured, watched for exits, signalled."
    )
    checks: list[CheckConfig] = Field([], description="Health checks, each a probe run and thresholded.")
    scrape: ScrapeConfig | None = Field(None, description="Scrape the service's own Prometheus metrics.")
    restart: RestartConfig | None = Field(None, description="How a playbook's restart step restarts the service.")
    traffic: TrafficConfig | None = Field(None, description="How traffic steps take the service out of rotation.")
    depends_on: list[str] = Field([], description="Services that must be healthy before this one is restarted.")
    restart_dependents: bool = Field(
        False, description="After a playbook heals this service, heal the services that depend_on it too, each "
        "through its own playbook, budget and lock.",
    )
    autoheal: bool = Field(False, description="Heal with the default playbook: cut traffic, restart, wait, restore.")

    @model_validator(mode="after")
    def _consistent(self) -> ServiceConfig:
        names = [check.name for check in self.checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate check names: {', '.join(duplicates)}")
        if self.process is None and any(c.process for c in self.checks):
            raise ValueError("a process check needs the service's process: {pidfile|name|cmdline}")
        startup = [check.name for check in self.checks if check.role == "startup"]
        if len(startup) > 1:
            raise ValueError(f"at most one startup check per service, got {', '.join(startup)}")
        return self
