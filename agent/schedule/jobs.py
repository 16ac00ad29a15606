"""The periodic jobs the daemon schedules, built from the config.

Every job is named after the source it feeds (the store and the exposition
keep one entry per source) and returns an Observation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import Metric

from agent.health.checks import Check, StartupGate
from agent.collectors.base import Collector, samples_of
from agent.collectors.host import HostCollector
from agent.health.probes import make_probe
from agent.httpclient import HttpClient
from agent.collectors.process import (
    ProcessScanner,
    ProcessTracker,
    ServiceProcessCollector,
)
from agent.collectors.scrape import ScrapeResult, ScrapeTarget
from agent.config import AgentConfig, CheckConfig
from agent.secrets import config_redactor
from healers.events import CheckStateChanged
from rules.model import Labels


@dataclass
class Observation:
    """What one run saw: families for /metrics, and the samples for the store (default: the families')."""

    families: list[Metric]
    samples: Iterable[tuple[Labels, float]] | None = None

    def store_samples(self) -> Iterable[tuple[Labels, float]]:
        return samples_of(self.families) if self.samples is None else self.samples


class Job(Protocol):
    name: str
    interval_s: float
    spec: Any  # the config this job was built from; a reload keeps jobs whose spec is unchanged

    async def observe(self, now: float) -> Observation: ...


@dataclass
class CollectorJob:
    """Runs a blocking collector (psutil) in a worker thread, so the loop stays free."""

    name: str
    interval_s: float
    spec: Any
    collector: Collector

    async def observe(self, now: float) -> Observation:
        return Observation(await asyncio.to_thread(self.collector.collect, now))


@dataclass
class CheckJob:
    name: str
    interval_s: float
    spec: Any
    check: Check

    async def observe(self, now: float) -> Observation:
        await self.check.run(now)
        return Observation(self.check.families())


@dataclass
class ScrapeJob:
    name: str
    interval_s: float
    spec: Any
    target: ScrapeTarget

    async def observe(self, now: float) -> Observation:
        result = await self.target.scrape(now)
        families = self.target.families()
        scraped = result.samples if result.up else []
        return Observation(families, [*samples_of(families), *scraped])


@dataclass
class JobSet:
    """All jobs of one config, plus the per-service readiness they determine."""

    jobs: dict[str, Job] = field(default_factory=dict)
    checks: dict[str, list[Check]] = field(default_factory=dict)
    gates: dict[str, StartupGate] = field(default_factory=dict)

    def ready(self, service: str) -> bool | None:
        """A known service is ready once its startup check passed and its readiness checks have probed and pass.

        Like Kubernetes' readiness, a service is not ready before its first probe since its process started;
        liveness-only checks do not count; an unknown service gives None.
        """
        if service not in self.checks:
            return None
        gate = self.gates.get(service)
        if gate is not None and not gate.passed:
            return False
        return all(check.healthy and check.probed for check in self.checks[service] if check.config.readiness)

    def process_tracker(self, service: str) -> ProcessTracker | None:
        """The tracker of the service's process; None when the service names no process."""
        job = self.jobs.get(process_job_name(service))
        if isinstance(job, CollectorJob) and isinstance(job.collector, ServiceProcessCollector):
            return job.collector.tracker
        return None

    def last_scrape(self, service: str) -> ScrapeResult | None:
        """The service's latest scrape; None before the first one, or when it is not scraped."""
        job = self.jobs.get(scrape_job_name(service))
        return job.target.last if isinstance(job, ScrapeJob) else None


def _startup_gate(
    service: str, checks: list[CheckConfig], tracker: ProcessTracker | None, previous: JobSet | None
) -> StartupGate | None:
    """The service's startup gate when it has a startup check (the previous one, so kept checks keep theirs)."""
    if not any(check.role == "startup" for check in checks):
        return None

    async def start_of() -> tuple[int, int] | None:
        """The tracked process looked up again, named by its pid and how many starts the tracker has seen."""
        if tracker is None or await asyncio.to_thread(tracker.refresh) is None or tracker.pid is None:
            return None
        return tracker.pid_changes, tracker.pid

    gate = previous.gates.get(service) if previous is not None else None
    if gate is None:
        return StartupGate(start_of)
    gate.start_of = start_of
    return gate


def process_job_name(service: str) -> str:
    return f"process:{service}"


def check_job_name(service: str, check: str) -> str:
    return f"check:{service}/{check}"


def scrape_job_name(service: str) -> str:
    return f"scrape:{service}"


def build_jobs(
    config: AgentConfig,
    *,
    http_client: HttpClient,
    insecure_http_client: HttpClient,
    on_check_change: Callable[[CheckStateChanged], None],
    scanner: ProcessScanner,
    previous: JobSet | None = None,
) -> JobSet:
    """Jobs for ``config``; jobs of ``previous`` whose spec is unchanged are kept with their state."""
    old = previous.jobs if previous else {}
    result = JobSet()
    redact = config_redactor(config)

    def add(job_name: str, spec: Any, make: Callable[[], Job]) -> Job:
        kept = old.get(job_name)
        job = kept if kept is not None and kept.spec == spec else make()
        result.jobs[job_name] = job
        return job

    if config.host.enabled:
        add("host", config.host, lambda: CollectorJob("host", config.host.interval, config.host, HostCollector(config.host)))

    for service, svc in config.services.items():
        alive: Callable[[], bool] = lambda: False
        tracker: ProcessTracker | None = None
        if svc.process is not None:
            match, interval = svc.process, config.interval
            process_job = add(
                process_job_name(service),
                (match, interval),
                lambda: CollectorJob(
                    process_job_name(service),
                    interval,
                    (match, interval),
                    ServiceProcessCollector(service, match, tracker=ProcessTracker(match, scanner=scanner)),
                ),
            )
            assert isinstance(process_job, CollectorJob) and isinstance(process_job.collector, ServiceProcessCollector)
            tracker = process_job.collector.tracker
            alive = tracker.alive
        result.checks[service] = []
        gate = _startup_gate(service, svc.checks, tracker, previous)
        if gate is not None:
            result.gates[service] = gate
        for check_config in svc.checks:
            name = check_job_name(service, check_config.name)
            client = http_client if not check_config.http or check_config.http.tls_verify else insecure_http_client
            spec = (check_config, svc.process, config.interval, gate is not None)
            job = add(
                name,
                spec,
                lambda: CheckJob(
                    name,
                    check_config.interval,
                    spec,
                    Check(
                        service,
                        check_config,
                        make_probe(check_config, http_client=client, alive=alive),
                        on_check_change,
                        redact=redact,
                        gate=gate,
                    ),
                ),
            )
            assert isinstance(job, CheckJob)
            result.checks[service].append(job.check)
        if gate is not None:
            gate.checks = result.checks[service]
        if svc.scrape is not None:
            scrape = svc.scrape
            add(
                scrape_job_name(service),
                scrape,
                lambda: ScrapeJob(
                    scrape_job_name(service), scrape.interval, scrape, ScrapeTarget(service, scrape, http_client)
                ),
            )
    return result
