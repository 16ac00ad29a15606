"""Wiring the healing runtime (``healers.runtime``) from the agent's config; the runtime itself lives in healers/.

From the config this builds the playbooks (a default one per ``autoheal`` service), each service's
backends, its health as the runtime reads it (the agent's checks and a process tracker of its own,
watched for exits through a pidfd), the fleet slots when coordination is on, and the runtime's
metrics as Prometheus families. The daemon passes check changes and alerts to the runtime's hooks.

Healing keeps its own process trackers beside the collectors': the exit watcher refreshes its
tracker from a worker thread, and a tracker is not shared across threads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import structlog
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.health.checks import Check
from agent.collectors.process import ProcessTracker
from agent.config import AgentConfig, ServiceConfig
from agent.config.timeintervals import intervener
from agent.health.pidwatch import ProcessWatcher
from agent.playbooks import fleet_warnings, playbook_specs
from agent.secrets import config_redactor
from healers.backends import ReadinessGate, make_restart_backend, make_traffic_backend
from healers.backends.base import RestartBackend, TrafficBackend
from healers.clock import SystemClock
from healers.exprcheck import ExprEvaluator, Samples, bind, scoped
from healers.fleet import BudgetSettings, open_store
from healers.fleet.slots import FleetSettings, FleetSlots
from healers.journal import Journal
from healers.playbook import PlaybookSpec
from healers.plan import HealingPlan, ServiceBackends
from healers.runner import Notice
from healers.runtime import HealingRuntime
from healers.triggers import watches_exits
from rules.model import Labels
from rules.promql import Engine, PromQLEvalError, ScalarResult, VectorResult
from rules.store import SeriesStore

log = structlog.get_logger("healwatch.healing")

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


# -- what the runtime reads and reports ------------------------------------------------


@dataclass
class WatchedService:
    """A service's checks and process as the runtime reads them (``healers.health.ServiceHealth``)."""

    checks: Sequence[Check]
    tracker: ProcessTracker | None = None
    watcher: ProcessWatcher | None = None

    def pid(self) -> int | None:
        return self.tracker.pid if self.tracker is not None else None

    async def alive(self) -> bool:
        # In a worker thread: matching by name scans all processes.
        return self.tracker is None or await asyncio.to_thread(self.tracker.alive)

    def rearm(self) -> None:
        if self.watcher is not None:
            self.watcher.rearm_soon()


class StoreEvaluator:
    """PromQL for healing steps (``healers.exprcheck.ExprEvaluator``): the agent's engine over its store, on the loop."""

    def __init__(self, engine: Engine, store: SeriesStore) -> None:
        self.engine = engine
        self.store = store

    def __call__(self, expr: str, service: str, now: float) -> Samples:
        result = self.engine.instant(bind(expr, service), self.store, round(now * 1000))
        if isinstance(result, ScalarResult):
            return [(Labels(), result.value)]
        if not isinstance(result, VectorResult):
            raise PromQLEvalError(f"the expression must return an instant vector: {expr}")
        return scoped(result.samples, service)


class HealingMetrics:
    """The runtime's counters as Prometheus metrics (``healers.plan.HealingMetrics``)."""

    def __init__(self) -> None:
        self.runs = Counter(
            "healwatch_playbook_runs", "Playbook runs by outcome.", ["playbook", "outcome"], registry=None
        )
        self.duration = Histogram(
            "healwatch_heal_duration_seconds", "How long playbook runs took, dry runs and blocked runs excepted.",
            buckets=DURATION_BUCKETS, registry=None,
        )
        self.denied = Counter(
            "healwatch_fleet_denied", "Heals the fleet budget denied a slot.", ["group"], registry=None
        )
        self.store_errors = Counter(
            "healwatch_fleet_store_errors", "Exchanges with the coordination store that failed.", registry=None
        )

    def run_finished(self, playbook: str, outcome: str, duration_s: float | None) -> None:
        self.runs.labels(playbook, outcome).inc()
        if duration_s is not None:
            self.duration.observe(duration_s)

    def fleet_denied(self, group: str) -> None:
        self.denied.labels(group).inc()

    def fleet_store_error(self) -> None:
        self.store_errors.inc()


def _incident_context(incident_id: str, service: str) -> AbstractContextManager[object]:
    """Every log line of a run, the backends' included, carries its incident id."""
    return structlog.contextvars.bound_contextvars(incident_id=incident_id, service=service)


# -- the wiring ------------------------------------------------------------------------


class Healing:
    """Builds the runtime's plan from the config (again on a reload) and runs the exit watchers beside it."""

    def __init__(
        self,
        config: AgentConfig,
        state_db_conn: sqlite3.Connection,
        checks: Mapping[str, Sequence[Check]] | None = None,
        clock: Callable[[], float] = time.time,
        *,
        trackers: Mapping[str, ProcessTracker] | None = None,
        gate: ReadinessGate | None = None,
        notify: Callable[[Notice], None] | None = None,
        evaluate: ExprEvaluator | None = None,
    ) -> None:
        """``trackers`` defaults to one tracker per service with ``process:``, separate from the collectors'.

        ``notify`` delivers escalations and notify steps (the notifier's ``notice``); they are logged either way.
        ``evaluate`` runs verify steps' and restore guards' PromQL (a ``StoreEvaluator`` over the agent's store).
        """
        self.evaluate = evaluate
        self.config = config
        self.gate = gate if gate is not None else ReadinessGate()
        self.metrics = HealingMetrics()
        self.clock = SystemClock(clock)
        self.services: dict[str, WatchedService] = {}
        self._watch_tasks: list[asyncio.Task[None]] = []
        self.runtime = HealingRuntime(
            self._plan(config, checks or {}, trackers), Journal(state_db_conn), clock=self.clock,
            metrics=self.metrics, log=log, gate=self.gate, notify=notify, run_context=_incident_context,
        )

    def _plan(
        self, config: AgentConfig, checks: Mapping[str, Sequence[Check]], trackers: Mapping[str, ProcessTracker] | None
    ) -> HealingPlan:
        self.config = config
        specs = tuple(playbook_specs(config))
        self.services = {
            name: WatchedService(
                list(checks.get(name, [])),
                trackers.get(name) if trackers is not None else
                ProcessTracker(service.process) if service.process is not None else None,
            )
            for name, service in config.services.items()
        }
        for spec in specs:
            watched = self.services.get(spec.service)
            if watched is not None and watched.tracker is not None and watches_exits(spec) and watched.watcher is None:
                watched.watcher = ProcessWatcher(spec.service, watched.tracker, self._on_exit)
        return HealingPlan(
            specs=specs,
            backends={name: self._backends(name, service) for name, service in config.services.items()},
            health=self.services,
            depends_on={name: tuple(service.depends_on) for name, service in config.services.items()},
            restart_dependents=frozenset(name for name, service in config.services.items()
                                         if service.restart_dependents),
            fleet=self._fleet(config, specs),
            dry_run=config.healing.dry_run,
            resume_after_healthy_s=config.healing.resume_after_healthy,
            redact=config_redactor(config),
            time_active=intervener(config.time_intervals).active,
            evaluate=self.evaluate,
        )

    def _backends(self, name: str, service: ServiceConfig) -> ServiceBackends:
        restart: RestartBackend | None = None
        traffic: TrafficBackend | None = None
        try:
            if service.restart is not None:
                restart = make_restart_backend(service.restart.settings())
            if service.traffic is not None:
                traffic = make_traffic_backend(service.traffic.settings(), self.gate, name)
        except ValueError as exc:
            # The config validated; a backend that still cannot be built is reported, and its steps fail.
            log.error("healing backend unusable", service=name, error=str(exc))
        return ServiceBackends(restart, traffic)

    def _fleet(self, config: AgentConfig, specs: Sequence[PlaybookSpec]) -> FleetSlots | None:
        coordination = config.coordination
        for warning in fleet_warnings(config):
            log.warning("fleet budget ignored", problem=warning)
        if coordination.backend == "none" or coordination.url is None:
            return None
        store = open_store(coordination.backend, coordination.url)
        budgets = {
            playbook.name: store.budget(BudgetSettings(
                playbook.fleet.group, max_concurrent=playbook.fleet.max_concurrent,
                fleet_size=playbook.fleet.fleet_size, max_runs=playbook.fleet.max_runs,
                within_s=playbook.fleet.within, lease_ttl_s=coordination.lease_ttl,
                member_ttl_s=coordination.member_ttl,
            ))
            for playbook in config.playbooks if playbook.fleet is not None
        }
        member = coordination.member or f"{socket.gethostname()}-{os.getpid()}"
        settings = FleetSettings(member, coordination.policy, coordination.member_ttl)
        return FleetSlots(store, budgets, settings, clock=self.clock, metrics=self.metrics, log=log)

    def _on_exit(self, service: str, pid: int) -> None:
        self.runtime.on_process_exit(service, pid)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.runtime.start()
        self._start_watchers()

    async def stop(self) -> None:
        await self._stop_watchers()
        await self.runtime.stop()

    async def reconfigure(self, config: AgentConfig, checks: Mapping[str, Sequence[Check]]) -> None:
        """Take a reloaded config and the reloaded checks; safety state and the journal carry over."""
        await self._stop_watchers()
        await self.runtime.reconfigure(self._plan(config, checks, None))
        self._start_watchers()

    def _start_watchers(self) -> None:
        self._watch_tasks = [
            asyncio.create_task(watched.watcher.run()) for watched in self.services.values()
            if watched.watcher is not None
        ]
        log.info("watching process exits", services=sorted(
            name for name, watched in self.services.items() if watched.watcher is not None
        ))

    async def _stop_watchers(self) -> None:
        tasks, self._watch_tasks = self._watch_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what the daemon reads -------------------------------------------------------

    def readiness(self, service: str) -> bool:
        """False while healing has cut the service's traffic through the readiness gate."""
        return not self.gate.is_cut(service)

    def families(self) -> list[Metric]:
        suspended = GaugeMetricFamily(
            "healwatch_autoheal_suspended", "1 while auto-healing of the service is suspended.", labels=["service"]
        )
        cut = GaugeMetricFamily(
            "healwatch_traffic_cut", "1 while healing keeps the service out of rotation.", labels=["service"]
        )
        states = self.runtime.journal.service_states()
        for service in self.config.services:
            suspended.add_metric([service], 1.0 if self.runtime.suspended(service) else 0.0)
            state = states.get(service)
            cut.add_metric([service], 1.0 if state is not None and state.traffic_cut_by is not None else 0.0)
        in_use = GaugeMetricFamily(
            "healwatch_fleet_slots_in_use", "Slots of the fleet group in use, as last seen in the store.",
            labels=["group"],
        )
        fleet = self.runtime.plan.fleet
        for group, count in (fleet.in_use() if fleet is not None else {}).items():
            in_use.add_metric([group], float(count))
        return [
            *self.metrics.runs.collect(), *self.metrics.duration.collect(), suspended, cut, in_use,
            *self.metrics.denied.collect(), *self.metrics.store_errors.collect(),
        ]
