"""The healing runtime the daemon owns: triggers in, playbook runs out, state kept in the journal.

Triggers are a check turning unhealthy (``CheckStateChanged`` on the event channel), a firing
alert whose labels match (``list[Alert]`` on the same channel), a watched process exiting
(``agent.pidwatch``) and a manual ``heal_now``. Every trigger goes through ``healers.safety``;
a run happens in its own task with ``incident_id`` bound in structlog's context variables, so
every log line of the run carries it. After a run, a service that is still sick is
reconsidered, so a crash loop meets backoff and then the budget, however its triggers arrive.

With ``coordination.backend: redis`` or ``etcd`` a triggered run of a playbook with ``fleet:``
that would cut traffic or restart first takes a slot of its fleet group (``healers.fleet``),
renews it while running and gives it back after. A denied heal is journaled once (outcome
``denied``) and retried every third of the lease while the service stays sick. With the store
unreachable, ``fail_open`` heals anyway and ``fail_closed`` runs only the traffic cuts, retrying
later. Manual runs skip the fleet budget, as they skip the local one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence

import structlog
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.checks import Check
from agent.collectors.process import ProcessTracker
from agent.config import AgentConfig, ServiceConfig
from agent.events import EventChannel
from agent.healing_config import fleet_warnings, playbook_specs
from agent.pidwatch import ProcessWatcher
from agent.secrets import config_redactor
from healers.backends import ReadinessGate, make_restart_backend, make_traffic_backend
from healers.backends.base import (
    ActionContext,
    ActionResult,
    RestartBackend,
    TrafficBackend,
)
from healers.events import CheckStateChanged
from healers.fleet import BudgetSettings, FleetBudget, FleetStore, FleetUnavailable, open_store
from healers.journal import Journal, new_incident_id
from healers.playbook import PlaybookSpec, StepSpec, TriggerKind
from healers.runner import Notice, Runner, RunResult, ServiceActions
from healers.safety import Decision, Safety
from rules.model import Alert, AlertState, Labels

log = structlog.get_logger("healwatch.healing")

HEALTH_TICK_S = 1.0
WAIT_POLL_MIN_S = 0.05
WAIT_POLL_MAX_S = 0.25  # while waiting for a restarted service, re-probe at least this often
OPERATOR = "operator"  # the journal's traffic_cut_by for a cut an operator made, not an incident
OPERATOR_TRAFFIC_TIMEOUT_S = 30.0
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class HealingError(Exception):
    """A request the runtime cannot honour (unknown service, refused run); the message says why."""


class Healing:
    """Owns the playbooks, their safety state and journal, and the tasks that trigger them."""

    def __init__(
        self,
        config: AgentConfig,
        state_db_conn: sqlite3.Connection,
        events: EventChannel,
        trackers: Mapping[str, ProcessTracker] | None = None,
        checks: Mapping[str, Sequence[Check]] | None = None,
        clock: Callable[[], float] = time.time,
        *,
        gate: ReadinessGate | None = None,
        notify: Callable[[Notice], None] | None = None,
    ) -> None:
        """``trackers`` defaults to one tracker per service with ``process:``, separate from the collectors'.

        ``notify`` delivers escalations and notify steps (the notifier's ``notice``); they are logged either way.
        """
        self.journal = Journal(state_db_conn)
        self.events = events
        self.gate = gate if gate is not None else ReadinessGate()
        self.clock = clock
        self._deliver = notify
        self.runner = Runner(self.journal, notify=self._notify, log=log, clock=clock)
        self.safety = Safety(config.healing.resume_after_healthy)
        self._runs_total = Counter(
            "healwatch_playbook_runs", "Playbook runs by outcome.", ["playbook", "outcome"], registry=None
        )
        self._duration = Histogram(
            "healwatch_heal_duration_seconds", "How long playbook runs took, dry runs and blocked runs excepted.",
            buckets=DURATION_BUCKETS, registry=None,
        )
        self._fleet_denied = Counter(
            "healwatch_fleet_denied", "Heals the fleet budget denied a slot.", ["group"], registry=None
        )
        self._fleet_errors = Counter(
            "healwatch_fleet_store_errors", "Exchanges with the coordination store that failed.", registry=None
        )
        self._fleet_store: FleetStore | None = None
        self.member = ""  # this agent's name in its fleet groups, with coordination on
        self.fleet: dict[str, FleetBudget] = {}  # by playbook name
        self._fleet_waiting: set[str] = set()  # services whose denial is journaled; until a slot is granted
        self._fleet_busy: set[str] = set()  # services between asking for a slot and giving it back
        self._queue: asyncio.Queue[object] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._runs: set[asyncio.Task[RunResult | None]] = set()
        self._deferred: dict[str, asyncio.TimerHandle] = {}
        # Alerts firing now that trigger a playbook, by playbook name: a deferred alert heal runs only if one still does.
        self._firing: dict[str, set[Labels]] = {}
        self._blocked: set[str] = set()
        self._watchers: dict[str, tuple[ProcessWatcher, asyncio.Task[None]]] = {}
        self._configure(config, trackers, checks or {})

    # -- configuration -------------------------------------------------------------

    def _configure(
        self, config: AgentConfig, trackers: Mapping[str, ProcessTracker] | None, checks: Mapping[str, Sequence[Check]]
    ) -> None:
        self.config = config
        self.runner.redact = config_redactor(config)
        self.checks = {service: list(found) for service, found in checks.items()}
        self.specs = playbook_specs(config)
        self.fleet = self._fleet_budgets(config)
        self.safety.resume_after_healthy_s = config.healing.resume_after_healthy
        self.trackers = dict(trackers) if trackers is not None else {
            name: ProcessTracker(service.process) for name, service in config.services.items() if service.process
        }
        self.actions = {name: self._service_actions(name, service) for name, service in config.services.items()}

    def _service_actions(self, name: str, service: ServiceConfig) -> ServiceActions:
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

        async def wait_healthy(ctx: ActionContext) -> ActionResult:
            return await self._wait_healthy(name, ctx)

        return ServiceActions(name, restart, traffic, wait_healthy, lambda: self._pid(name))

    def _fleet_budgets(self, config: AgentConfig) -> dict[str, FleetBudget]:
        coordination = config.coordination
        for warning in fleet_warnings(config):
            log.warning("fleet budget ignored", problem=warning)
        if coordination.backend == "none" or coordination.url is None:
            return {}
        self.member = coordination.member or f"{socket.gethostname()}-{os.getpid()}"
        if self._fleet_store is None:
            self._fleet_store = open_store(coordination.backend, coordination.url)
        return {
            playbook.name: self._fleet_store.budget(BudgetSettings(
                playbook.fleet.group, max_concurrent=playbook.fleet.max_concurrent,
                fleet_size=playbook.fleet.fleet_size, max_runs=playbook.fleet.max_runs,
                within_s=playbook.fleet.within, lease_ttl_s=coordination.lease_ttl,
                member_ttl_s=coordination.member_ttl,
            ))
            for playbook in config.playbooks if playbook.fleet is not None
        }

    async def _close_fleet(self) -> None:
        store, self._fleet_store = self._fleet_store, None
        if store is not None:
            await store.aclose()

    async def reconfigure(self, config: AgentConfig, checks: Mapping[str, Sequence[Check]]) -> None:
        """Take a reloaded config and the reloaded checks; safety state and the journal carry over."""
        await self._stop_watchers()
        await self._close_fleet()
        self._configure(config, None, checks)
        self._start_watchers()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Close runs a killed agent left open, reload persisted state (those runs count), then listen for triggers."""
        for service, state in self.journal.service_states().items():
            if service in self.config.services and state.traffic_cut_by is not None:
                self.gate.set_cut(service, True)  # the readiness gate lives in memory; the journal remembers
        # Before the budgets are loaded: an interrupted run only counts once it is closed as such.
        await self.runner.recover_interrupted({spec.name: spec for spec in self.specs}, self.actions.get)
        now = self.clock()
        states = self.journal.service_states()
        for service in self.config.services:
            state = states.get(service)
            window = max((spec.budget.within_s for spec in self.specs if spec.service == service), default=0.0)
            self.safety.restore(
                service, self.journal.runs(service, now - window),
                suspended_reason=state.suspended_reason if state else None,
                maintenance=state.maintenance if state else False,
            )
        self._queue = self.events.subscribe()
        self._spawn(self._consume(self._queue))
        self._spawn(self._health_ticks())
        self._spawn(self._fleet_heartbeats())
        self._start_watchers()
        log.info("healing started", playbooks=len(self.specs), watched=sorted(self._watchers))

    async def stop(self) -> None:
        """Stop listening; a run still going is cancelled and the next start closes it as interrupted."""
        if self._queue is not None:
            self.events.unsubscribe(self._queue)
            self._queue = None
        for handle in self._deferred.values():
            handle.cancel()
        self._deferred.clear()
        await self._stop_watchers()
        tasks: list[asyncio.Task[object]] = [*self._tasks, *self._runs]  # type: ignore[list-item]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_fleet()

    def _spawn(self, coroutine: object) -> None:
        task = asyncio.create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_watchers(self) -> None:
        for spec in self.specs:
            service = spec.service
            if service in self._watchers or service not in self.trackers:
                continue
            if any(trigger.kind == "process_exited" for trigger in spec.triggers):
                watcher = ProcessWatcher(service, self.trackers[service], self._on_exit)
                self._watchers[service] = (watcher, asyncio.create_task(watcher.run()))

    async def _stop_watchers(self) -> None:
        tasks = [task for _, task in self._watchers.values()]
        self._watchers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- what others call ----------------------------------------------------------

    def readiness(self, service: str) -> bool:
        """False while healing has cut the service's traffic through the readiness gate."""
        return not self.gate.is_cut(service)

    async def heal_now(self, service: str, *, dry_run: bool = False) -> RunResult:
        """Run the service's first playbook now, as an operator asked; maintenance and the lock still apply."""
        spec = next((spec for spec in self.specs if spec.service == service), None)
        if spec is None:
            raise HealingError(f"no playbook heals {service!r}")
        decision = self.safety.decide(
            spec, self.clock(), unhealthy_dependencies=self._unhealthy_dependencies(service), manual=True
        )
        if decision.verdict != "run":
            raise HealingError(decision.reason)
        result = await self._run(spec, "manual", decision, dry_run=dry_run)
        if result is None:
            raise HealingError(f"the run for {service!r} crashed; see the log")
        return result

    def set_maintenance(self, service: str, on: bool) -> None:
        """Maintenance (persisted) stops all healing of the service until switched off."""
        self._known(service)
        self.safety.set_maintenance(service, on)
        self.journal.set_maintenance(service, on)
        log.warning("maintenance switched on" if on else "maintenance switched off", service=service)

    def reset(self, service: str) -> None:
        """Operator reset: lift a suspension and forget the service's budget, in the journal first.

        Persisted before it takes effect, so a reset either survives a restart or is refused
        (the state database stayed locked past its busy timeout) and changes nothing.
        """
        self._known(service)
        try:
            self.journal.reset_budget(service, self.clock())
        except sqlite3.Error as exc:
            raise HealingError(f"reset of {service} not saved, nothing changed; try again: {exc}") from None
        self.safety.reset(service)
        log.warning("auto-healing reset by the operator", service=service)

    async def set_traffic(self, service: str, cut: bool) -> ActionResult:
        """Operator cut or restore through the service's traffic backend; the journal remembers the operator's cut."""
        self._known(service)
        traffic = self.actions[service].traffic
        if traffic is None:
            raise HealingError(f"{service} has no traffic backend configured")
        if self.safety.state(service).running:
            raise HealingError(f"a playbook is running on {service}; try again when it has finished")
        before = self.journal.service_state(service).traffic_cut_by
        if cut:
            # Recorded before acting, as the runner does: a cut never goes unrecorded.
            self.journal.set_traffic_cut(service, OPERATOR)
        ctx = ActionContext(service, OPERATOR, OPERATOR_TRAFFIC_TIMEOUT_S, pid=self._pid(service))
        try:
            async with asyncio.timeout(OPERATOR_TRAFFIC_TIMEOUT_S):
                result = await (traffic.cut(ctx) if cut else traffic.restore(ctx))
        except TimeoutError:
            result = ActionResult(False, f"timed out after {OPERATOR_TRAFFIC_TIMEOUT_S:g}s")
        if not result.ok:
            self.journal.set_traffic_cut(service, before)
            raise HealingError(f"{'cutting' if cut else 'restoring'} traffic of {service} failed: {result.detail}")
        if not cut:
            self.journal.set_traffic_cut(service, None)
        log.warning("traffic cut by the operator" if cut else "traffic restored by the operator", service=service,
                    detail=result.detail)
        return result

    def families(self) -> list[Metric]:
        suspended = GaugeMetricFamily(
            "healwatch_autoheal_suspended", "1 while auto-healing of the service is suspended.", labels=["service"]
        )
        cut = GaugeMetricFamily(
            "healwatch_traffic_cut", "1 while healing keeps the service out of rotation.", labels=["service"]
        )
        states = self.journal.service_states()
        for service in self.config.services:
            suspended.add_metric([service], 1.0 if self.safety.state(service).suspended else 0.0)
            state = states.get(service)
            cut.add_metric([service], 1.0 if state is not None and state.traffic_cut_by is not None else 0.0)
        in_use = GaugeMetricFamily(
            "healwatch_fleet_slots_in_use", "Slots of the fleet group in use, as last seen in the store.",
            labels=["group"],
        )
        for group, budget in {budget.group: budget for budget in self.fleet.values()}.items():
            in_use.add_metric([group], float(budget.in_use()))
        return [
            *self._runs_total.collect(), *self._duration.collect(), suspended, cut, in_use,
            *self._fleet_denied.collect(), *self._fleet_errors.collect(),
        ]

    def _known(self, service: str) -> None:
        if service not in self.config.services:
            raise HealingError(f"unknown service {service!r}")

    # -- triggers ------------------------------------------------------------------

    async def _consume(self, queue: asyncio.Queue[object]) -> None:
        while True:
            event = await queue.get()
            try:
                if isinstance(event, CheckStateChanged):
                    await self._on_check(event)
                elif isinstance(event, list):
                    self._on_alerts([alert for alert in event if isinstance(alert, Alert)])
            except Exception:
                log.exception("healing trigger failed", trigger=type(event).__name__)

    async def _on_check(self, event: CheckStateChanged) -> None:
        if event.healthy:
            await self._after_recovery(event.service)
            return
        for spec in self.specs:
            if any(t.kind == "check_failed" and t.service == event.service and t.check in (None, event.check)
                   for t in spec.triggers):
                await self._trigger(spec, "check_failed", f"check {event.service}/{event.check} failed: {event.reason}")

    def _on_alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            firing = alert.state == AlertState.FIRING and alert.resolved_at is None
            for spec in self.specs:
                if not any(t.matches_alert(alert.labels) for t in spec.triggers):
                    continue
                if not firing:
                    self._firing.get(spec.name, set()).discard(alert.labels)
                    continue
                self._firing.setdefault(spec.name, set()).add(alert.labels)
                self._spawn(self._trigger(spec, "alert", f"alert {alert.labels}"))

    def _on_exit(self, service: str, pid: int) -> None:
        for spec in self.specs:
            if spec.service == service and any(t.kind == "process_exited" for t in spec.triggers):
                self._spawn(self._trigger(spec, "process_exited", f"process {pid} of {service} exited"))

    async def _trigger(self, spec: PlaybookSpec, kind: TriggerKind, description: str) -> None:
        now = self.clock()
        decision = self.safety.decide(spec, now, unhealthy_dependencies=self._unhealthy_dependencies(spec.service))
        if decision.verdict == "refuse":
            log.info("heal not started", service=spec.service, playbook=spec.name, trigger=description,
                     reason=decision.reason)
        elif decision.verdict == "suspend":
            incident_id = new_incident_id()
            self.journal.record_incident(incident_id, spec.service, spec.name, description, now, "escalated",
                                         decision.reason)
            self._runs_total.labels(spec.name, "escalated").inc()
            self._suspend(spec.service, decision.reason, incident_id)
        elif decision.verdict == "wait":
            self._defer(spec, kind, description, decision)
        else:
            task = asyncio.create_task(self._fleet_run(spec, kind, description, decision))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    def _defer(self, spec: PlaybookSpec, kind: TriggerKind, description: str, decision: Decision) -> None:
        """Try again at ``not_before``, if the service is still sick then (one pending retry per service)."""
        if spec.service in self._deferred:
            return
        assert decision.not_before is not None
        delay = max(decision.not_before - self.clock(), 0.0)
        log.info("heal deferred", service=spec.service, playbook=spec.name, trigger=description,
                 delay_s=round(delay, 3), reason=decision.reason)

        def retry() -> None:
            self._deferred.pop(spec.service, None)
            self._spawn(self._retry(spec, kind, description))

        self._deferred[spec.service] = asyncio.get_running_loop().call_later(delay, retry)

    async def _retry(self, spec: PlaybookSpec, kind: TriggerKind, description: str) -> None:
        still = bool(self._firing.get(spec.name)) if kind == "alert" else await self._sick(spec.service)
        if not still:
            log.info("heal dropped: the service recovered meanwhile", service=spec.service, playbook=spec.name)
            self._fleet_waiting.discard(spec.service)  # a later denial starts a new streak, journaled again
            return
        await self._trigger(spec, kind, description)

    # -- the fleet budget ----------------------------------------------------------

    async def _fleet_run(
        self, spec: PlaybookSpec, kind: TriggerKind, description: str, decision: Decision
    ) -> RunResult | None:
        """Run ``spec``, inside a slot of its fleet group when it has one and would disrupt the service."""
        budget = self.fleet.get(spec.name)
        if (budget is None or decision.restart_blocked or spec.dry_run or self.config.healing.dry_run
                or not any(_disrupts(step) for step in spec.steps)):
            return await self._run(spec, description, decision)
        service = spec.service
        if service in self._fleet_busy:
            log.info("heal not started: already asking for a fleet slot", service=service, playbook=spec.name)
            return None
        holder = f"{self.member}/{service}"
        self._fleet_busy.add(service)
        try:
            try:
                granted = await budget.acquire(holder)
            except FleetUnavailable as exc:
                return await self._without_store(spec, kind, description, decision, exc)
            if not granted:
                self._deny(spec, kind, description, budget)
                return None
            self._fleet_waiting.discard(service)
            log.info("fleet slot taken", service=service, group=budget.group, in_use=budget.in_use())
            renewer = asyncio.create_task(self._renew_slot(budget, holder))
            try:
                return await self._run(spec, description, decision)
            finally:
                renewer.cancel()
                await asyncio.gather(renewer, return_exceptions=True)
                await self._release_slot(budget, holder)
        finally:
            self._fleet_busy.discard(service)

    def _deny(self, spec: PlaybookSpec, kind: TriggerKind, description: str, budget: FleetBudget) -> None:
        """Count and log the denial, journal the first of a streak, and ask again a third of a lease later."""
        reason = f"waiting for a fleet slot: {budget.last_denial}"
        self._fleet_denied.labels(budget.group).inc()
        if spec.service not in self._fleet_waiting:
            self._fleet_waiting.add(spec.service)
            self.journal.record_incident(
                new_incident_id(), spec.service, spec.name, description, self.clock(), "denied", reason
            )
        log.warning("heal waits for a fleet slot", service=spec.service, playbook=spec.name, reason=reason)
        self._defer(spec, kind, description, Decision("wait", reason, not_before=self.clock() + budget.lease_ttl_s / 3))

    async def _without_store(
        self, spec: PlaybookSpec, kind: TriggerKind, description: str, decision: Decision, error: FleetUnavailable
    ) -> RunResult | None:
        """The store did not answer: heal anyway (fail_open) or only cut traffic and try again later."""
        self._fleet_errors.inc()
        coordination = self.config.coordination
        if coordination.policy == "fail_open":
            log.warning("fleet store unreachable: healing locally (fail_open)", service=spec.service, error=str(error))
            return await self._run(spec, description, decision)
        blocked = f"not restarting {spec.service}: the fleet store is unreachable (fail_closed): {error}"
        log.warning("fleet store unreachable: cutting traffic only (fail_closed)", service=spec.service,
                    error=str(error))
        result = await self._run(spec, description, dataclasses.replace(decision, restart_blocked=blocked))
        if result is not None and result.outcome == "blocked":
            # Nothing else retries a run blocked on the store (a dependency's recovery does for dependencies).
            retry_at = self.clock() + coordination.lease_ttl
            self._defer(spec, kind, description, Decision("wait", blocked, not_before=retry_at))
        return result

    async def _renew_slot(self, budget: FleetBudget, holder: str) -> None:
        while True:
            await asyncio.sleep(budget.lease_ttl_s / 3)
            try:
                if not await budget.renew(holder):
                    log.error("fleet slot lost: its lease expired before it was renewed", group=budget.group)
            except FleetUnavailable as exc:
                self._fleet_errors.inc()
                log.warning("fleet slot not renewed", group=budget.group, error=str(exc))

    async def _release_slot(self, budget: FleetBudget, holder: str) -> None:
        try:
            await budget.release(holder)
        except FleetUnavailable as exc:
            self._fleet_errors.inc()
            log.warning("fleet slot not released: it expires with its lease", group=budget.group, error=str(exc))

    async def _fleet_heartbeats(self) -> None:
        """Register this agent as a live member of each of its groups, every third of the member TTL."""
        while True:
            for budget in {budget.group: budget for budget in self.fleet.values()}.values():
                try:
                    await budget.register(self.member)
                except FleetUnavailable as exc:
                    self._fleet_errors.inc()
                    log.warning("fleet membership not renewed", group=budget.group, error=str(exc))
            await asyncio.sleep(self.config.coordination.member_ttl / 3)

    # -- runs ----------------------------------------------------------------------

    async def _run(
        self, spec: PlaybookSpec, trigger: str, decision: Decision, *, dry_run: bool = False
    ) -> RunResult | None:
        service = spec.service
        incident_id = new_incident_id()
        dry_run = dry_run or spec.dry_run or self.config.healing.dry_run
        started, began = self.clock(), time.monotonic()
        self.safety.begin(service, started)
        result: RunResult | None = None
        with structlog.contextvars.bound_contextvars(incident_id=incident_id, service=service):
            try:
                result = await self.runner.run(
                    spec, self.actions[service], incident_id=incident_id, trigger=trigger, dry_run=dry_run,
                    restart_blocked=decision.restart_blocked,
                )
            except Exception as exc:
                # A runner bug must not leave the lock held nor the incident open.
                log.exception("playbook run crashed", playbook=spec.name)
                self.journal.finish_incident(incident_id, self.clock(), "aborted", f"crashed: {type(exc).__name__}")
            finally:
                outcome = result.outcome if result is not None else "aborted"
                self.safety.finish(service, self.clock(), "dry_run" if dry_run else outcome)
                self._runs_total.labels(spec.name, "dry_run" if dry_run else outcome).inc()
                if not dry_run and outcome != "blocked":
                    self._duration.observe(time.monotonic() - began)
            if result is not None and result.outcome == "escalated":
                self._suspend(service, f"playbook {spec.name} escalated: {result.detail}", incident_id)
        if outcome == "blocked":
            self._blocked.add(service)
        if service in self._watchers:
            self._watchers[service][0].rearm_soon()
        if not dry_run and outcome != "blocked":
            await self._reconsider(spec)
        return result

    async def _reconsider(self, spec: PlaybookSpec) -> None:
        """A service still sick after a run is triggered again, so backoff and budget apply to crash loops."""
        if not await self._sick(spec.service):
            return
        kind: TriggerKind = "check_failed" if self._failing_checks(spec.service) else "process_exited"
        await self._trigger(spec, kind, f"{spec.service} still unhealthy after playbook {spec.name}")

    async def _after_recovery(self, service: str) -> None:
        """A service turned healthy: runs blocked on it (or on its own failure) may go on."""
        for blocked in sorted(self._blocked):
            if blocked != service and service not in self.config.services[blocked].depends_on:
                continue
            if self._unhealthy_dependencies(blocked):
                continue
            self._blocked.discard(blocked)
            spec = next(spec for spec in self.specs if spec.service == blocked)
            if await self._sick(blocked):
                await self._trigger(spec, "check_failed", f"dependency of {blocked} recovered")
            elif self.journal.service_state(blocked).traffic_cut_by is not None and not self._busy(blocked):
                restore = dataclasses.replace(
                    spec, steps=(StepSpec("traffic", {"op": "restore"}, timeout_s=10.0),), dry_run=False
                )
                await self._run(restore, f"{blocked} recovered while its restart was blocked", Decision("run"))

    def _busy(self, service: str) -> bool:
        state = self.safety.state(service)
        return state.running or state.maintenance

    def _suspend(self, service: str, reason: str, incident_id: str) -> None:
        """Suspend auto-healing and send the one critical notification about it."""
        if not self.safety.suspend(service, reason):
            return
        self.journal.set_suspended(service, reason)
        self._notify(Notice(service, incident_id, "critical",
                            f"auto-healing of {service} is suspended: {reason}", self.clock()))

    def _notify(self, notice: Notice) -> None:
        """Log the notice and hand it to the notifier; a notifier failure never stops the healing."""
        method = log.error if notice.severity == "critical" else log.warning
        method("healing notice", service=notice.service, incident_id=notice.incident_id,
               severity=notice.severity, summary=notice.summary)
        if self._deliver is None:
            return
        try:
            self._deliver(notice)
        except Exception:
            log.exception("healing notice not handed to the notifier", service=notice.service)

    async def _health_ticks(self) -> None:
        """Resume suspended services that have been healthy for long enough."""
        while True:
            await asyncio.sleep(HEALTH_TICK_S)
            for service in self.config.services:
                if not self.safety.state(service).suspended:
                    continue
                healthy = not await self._sick(service)
                now = self.clock()
                if self.safety.note_health(service, healthy, now):
                    self.journal.reset_budget(service, now)
                    log.warning("auto-healing resumed after a healthy period", service=service)

    # -- service state -------------------------------------------------------------

    def _failing_checks(self, service: str) -> list[str]:
        return [check.name for check in self.checks.get(service, []) if not check.healthy]

    async def _sick(self, service: str) -> bool:
        if self._failing_checks(service):
            return True
        tracker = self.trackers.get(service)
        return tracker is not None and not await asyncio.to_thread(tracker.alive)

    def _unhealthy_dependencies(self, service: str) -> list[str]:
        dependencies = self.config.services[service].depends_on if service in self.config.services else []
        return [name for name in dependencies if self._failing_checks(name)]

    def _pid(self, service: str) -> int | None:
        tracker = self.trackers.get(service)
        return tracker.pid if tracker is not None else None

    async def _wait_healthy(self, service: str, ctx: ActionContext) -> ActionResult:
        """Re-run the service's checks until each has met its success_threshold, or give up before the timeout."""
        checks = self.checks.get(service, [])
        if not checks:
            return ActionResult(True, f"{service} has no checks to wait for")
        poll_s = min(max(min(check.config.interval for check in checks), WAIT_POLL_MIN_S), WAIT_POLL_MAX_S)
        deadline = time.monotonic() + ctx.timeout_s
        while True:
            for check in checks:
                await check.run(self.clock())
            waiting = [check for check in checks if not _passed(check)]
            if not waiting:
                return ActionResult(True, f"checks passed: {', '.join(check.name for check in checks)}")
            if time.monotonic() + poll_s >= deadline:
                reasons = "; ".join(
                    f"{check.name}: {check.last_result.error if check.last_result else 'not probed yet'}"
                    for check in waiting
                )
                return ActionResult(False, f"still unhealthy after {ctx.timeout_s:g}s: {reasons}")
            await asyncio.sleep(poll_s)


def _disrupts(step: StepSpec) -> bool:
    """Whether the step takes the service out of traffic or down: what the fleet budget limits."""
    return step.action in ("restart", "signal") or (step.action == "traffic" and step.args.get("op") == "cut")


def _passed(check: Check) -> bool:
    result = check.last_result
    return (
        result is not None and result.success and check.consecutive_successes >= check.config.success_threshold
    )
