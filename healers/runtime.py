"""The healing runtime: triggers in, playbook runs out, state kept in the journal.

Triggers arrive through typed hooks: a check turning unhealthy (``on_check_changed``), a batch of
alerts from the rule engine (``on_alerts``), a watched process exiting (``on_process_exit``), and an
operator's ``heal_now``. Every trigger goes through ``healers.safety``; a run happens in its own task
inside ``run_context`` (the agent binds ``incident_id`` to every log line there). After a run, a
service that is still sick is reconsidered, so a crash loop meets backoff and then the budget,
however its triggers arrive. A playbook with ``fleet:`` runs inside a fleet slot (``healers.fleet.slots``).

All time comes from one injected ``Clock``: backoff and cooldown deferrals, health ticks, fleet
renewals and ``wait_healthy`` are stepped in a test by a ``ManualClock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any

from healers.backends.base import ActionContext, ActionResult
from healers.backends.traffic import ReadinessGate
from healers.clock import Clock
from healers.deferral import Deferrals
from healers.events import CheckStateChanged
from healers.health import ServiceHealth, Unwatched, failing_checks, is_sick, unhealthy, wait_healthy
from healers.journal import Journal, new_incident_id
from healers.operator import operator_traffic
from healers.plan import HealingError, HealingMetrics, HealingPlan, ServiceBackends
from healers.playbook import PlaybookSpec, TriggerKind
from healers.runner import Log, Notice, Runner, RunResult, ServiceActions
from healers.safety import Decision, Safety
from healers.triggers import Cause, FiringAlerts, on_check_failed, on_process_exit
from rules.model import Alert

HEALTH_TICK_S = 1.0


def _no_context(incident_id: str, service: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


class HealingRuntime:
    """Owns the safety state and the journal of every service, and the tasks that trigger playbooks."""

    def __init__(
        self,
        plan: HealingPlan,
        journal: Journal,
        *,
        clock: Clock,
        metrics: HealingMetrics,
        log: Log,
        gate: ReadinessGate | None = None,
        notify: Callable[[Notice], None] | None = None,
        run_context: Callable[[str, str], AbstractContextManager[object]] = _no_context,
    ) -> None:
        """``notify`` delivers escalations and notify steps (the notifier's ``notice``); they are logged either way."""
        self.journal = journal
        self.clock = clock
        self.gate = gate if gate is not None else ReadinessGate()
        self.safety = Safety(plan.resume_after_healthy_s)
        self.runner = Runner(journal, notify=self._notify, log=log, clock=clock.now, sleep=clock.sleep)
        self.deferrals = Deferrals(clock)
        self._metrics = metrics
        self._log = log
        self._deliver = notify
        self._run_context = run_context
        self._firing = FiringAlerts()
        self._blocked: set[str] = set()  # services whose last run was blocked on a dependency or the store
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeats: asyncio.Task[None] | None = None
        # Triggers count from the end of start (the budgets are loaded) until stop; earlier ones are dropped.
        self._listening = False
        self._use(plan)

    def _use(self, plan: HealingPlan) -> None:
        self.plan = plan
        self.runner.redact = plan.redact
        self.safety.resume_after_healthy_s = plan.resume_after_healthy_s
        self.safety.time_active = plan.time_active
        self.actions = {service: self._actions(service, backends) for service, backends in plan.backends.items()}

    def _actions(self, service: str, backends: ServiceBackends) -> ServiceActions:
        async def wait(ctx: ActionContext) -> ActionResult:
            return await wait_healthy(service, self._health(service), ctx.timeout_s, self.clock)

        async def current_pid() -> int | None:
            health = self._health(service)
            await health.alive()  # looks the process up again
            return health.pid()

        return ServiceActions(service, backends.restart, backends.traffic, wait, self._health(service).pid,
                              current_pid, evaluate=self.plan.evaluate)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Close runs a killed agent left open, reload persisted state (those runs count), then heal."""
        for service, state in self.journal.service_states().items():
            if service in self.plan.backends and state.traffic_cut_by is not None:
                self.gate.set_cut(service, True)  # the readiness gate lives in memory; the journal remembers
        # Before the budgets are loaded: an interrupted run only counts once it is closed as such.
        await self.runner.recover_interrupted({spec.name: spec for spec in self.plan.specs}, self.actions.get)
        now = self.clock.now()
        states = self.journal.service_states()
        for service in self.plan.backends:
            saved = states.get(service)
            window = max((spec.budget.within_s for spec in self.plan.specs if spec.service == service), default=0.0)
            self.safety.restore(
                service, self.journal.runs(service, now - window),
                suspended_reason=saved.suspended_reason if saved else None,
                maintenance=saved.maintenance if saved else False,
            )
        self._spawn(self._health_ticks())
        self._start_heartbeats()
        self._listening = True
        self._log.info("healing started", playbooks=len(self.plan.specs))

    async def reconfigure(self, plan: HealingPlan) -> None:
        """Take a reloaded plan; safety state and the journal carry over, the old fleet store is closed."""
        old = self.plan.fleet
        await self._stop_heartbeats()
        self._use(plan)
        if old is not None and old is not plan.fleet:
            await old.aclose()
        self._start_heartbeats()

    async def stop(self) -> None:
        """Stop healing; a run still going is cancelled and the next start closes it as interrupted."""
        self._listening = False
        await self.deferrals.cancel_all()
        await self._stop_heartbeats()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.plan.fleet is not None:
            await self.plan.fleet.aclose()

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_heartbeats(self) -> None:
        if self.plan.fleet is not None:
            self._heartbeats = asyncio.create_task(self.plan.fleet.heartbeats())

    async def _stop_heartbeats(self) -> None:
        task, self._heartbeats = self._heartbeats, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- what operators ask (the API) --------------------------------------------------

    async def heal_now(self, service: str, *, dry_run: bool = False, playbook: str | None = None) -> RunResult:
        """Run ``playbook`` (by default the service's first) now, as an operator asked; maintenance and the lock apply."""
        specs = [spec for spec in self.plan.specs if spec.service == service]
        spec = next((spec for spec in specs if playbook in (None, spec.name)), None)
        if spec is None and playbook is not None and specs:
            names = ", ".join(spec.name for spec in specs)
            raise HealingError(f"no playbook {playbook!r} heals {service!r}; its playbooks: {names}")
        if spec is None:
            raise HealingError(f"no playbook heals {service!r}")
        decision = self.safety.decide(
            spec, self.clock.now(), unhealthy_dependencies=self._unhealthy_dependencies(service), manual=True
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
        self._log.warning("maintenance switched on" if on else "maintenance switched off", service=service)

    def in_maintenance(self, service: str) -> bool:
        return self.safety.state(service).maintenance

    def suspended(self, service: str) -> bool:
        return self.safety.state(service).suspended

    def reset(self, service: str) -> None:
        """Operator reset: lift a suspension and forget the service's budget, in the journal first.

        Persisted before it takes effect, so a reset either survives a restart or is refused
        (the state database stayed locked past its busy timeout) and changes nothing.
        """
        self._known(service)
        try:
            self.journal.reset_budget(service, self.clock.now())
        except sqlite3.Error as exc:
            raise HealingError(f"reset of {service} not saved, nothing changed; try again: {exc}") from None
        self.safety.reset(service)
        self._log.warning("auto-healing reset by the operator", service=service)

    async def set_traffic(self, service: str, cut: bool) -> ActionResult:
        """Operator cut or restore through the service's traffic backend; the journal remembers the operator's cut."""
        self._known(service)
        traffic = self.actions[service].traffic
        if traffic is None:
            raise HealingError(f"{service} has no traffic backend configured")
        if self.safety.state(service).running:
            raise HealingError(f"a playbook is running on {service}; try again when it has finished")
        result = await operator_traffic(self.journal, traffic, service, cut, self._health(service).pid())
        if not result.ok:
            raise HealingError(f"{'cutting' if cut else 'restoring'} traffic of {service} failed: {result.detail}")
        self._log.warning("traffic cut by the operator" if cut else "traffic restored by the operator",
                          service=service, detail=result.detail)
        return result

    def _known(self, service: str) -> None:
        if service not in self.plan.backends:
            raise HealingError(f"unknown service {service!r}")

    # -- triggers: the hooks the agent calls -----------------------------------------

    def on_check_changed(self, event: CheckStateChanged) -> None:
        """A check crossed its threshold: heal on failure, let blocked runs go on after a recovery."""
        if not self._listening:
            return
        if event.healthy:
            self._spawn(self._guarded("check recovered", self._after_recovery(event.service)))
            return
        for spec, cause in on_check_failed(self.plan.specs, event):
            self._spawn(self._guarded("check failed", self._trigger(spec, cause)))

    def on_alerts(self, alerts: Sequence[Alert]) -> None:
        """One batch of alerts the rule engine sent: heal for each firing alert a playbook matches."""
        if not self._listening:
            return
        for spec, cause in self._firing.update(self.plan.specs, alerts):
            self._spawn(self._guarded("alert", self._trigger(spec, cause)))

    def on_process_exit(self, service: str, pid: int) -> None:
        """A watched process exited."""
        if not self._listening:
            return
        for spec, cause in on_process_exit(self.plan.specs, service, pid):
            self._spawn(self._guarded("process exited", self._trigger(spec, cause)))

    async def _guarded(self, trigger: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            self._log.exception("healing trigger failed", trigger=trigger)

    async def _trigger(self, spec: PlaybookSpec, cause: Cause) -> None:
        now = self.clock.now()
        decision = self.safety.decide(spec, now, unhealthy_dependencies=self._unhealthy_dependencies(spec.service))
        if decision.verdict == "refuse":
            self._log.info("heal not started", service=spec.service, playbook=spec.name, trigger=cause.description,
                           reason=decision.reason)
        elif decision.verdict == "suspend":
            incident_id = new_incident_id()
            self.journal.record_incident(incident_id, spec.service, spec.name, cause.description, now, "escalated",
                                         decision.reason)
            self._metrics.run_finished(spec.name, "escalated", None)
            self._suspend(spec.service, decision.reason, incident_id)
        elif decision.verdict == "wait":
            self._defer(spec, cause, decision)
        else:
            self._spawn(self._fleet_run(spec, cause, decision))

    def _defer(self, spec: PlaybookSpec, cause: Cause, decision: Decision) -> None:
        """Try again at ``not_before``, if the service is still sick then (one pending retry per service)."""
        assert decision.not_before is not None
        if self.deferrals.defer(spec.service, decision.not_before, lambda: self._retry(spec, cause)):
            self._log.info("heal deferred", service=spec.service, playbook=spec.name, trigger=cause.description,
                           delay_s=round(max(decision.not_before - self.clock.now(), 0.0), 3), reason=decision.reason)

    async def _retry(self, spec: PlaybookSpec, cause: Cause) -> None:
        if cause.kind == "alert":
            still = self._firing.still_firing(spec)
        else:  # a dependency's recovery asks for the run whatever the dependent's health
            still = cause.kind == "dependency_recovered" or await self._sick(spec.service)
        if not still:
            self._log.info("heal dropped: the service recovered meanwhile", service=spec.service, playbook=spec.name)
            if self.plan.fleet is not None:
                self.plan.fleet.recovered(spec.service)
            return
        await self._guarded("retry", self._trigger(spec, cause))

    # -- runs ----------------------------------------------------------------------

    async def _fleet_run(self, spec: PlaybookSpec, cause: Cause, decision: Decision) -> RunResult | None:
        """Run ``spec``, inside a slot of its fleet group when it has one and would disrupt the service."""
        fleet = self.plan.fleet
        budget = fleet.budget(spec.name) if fleet is not None else None
        if (fleet is None or budget is None or decision.restart_blocked or spec.dry_run or self.plan.dry_run
                or not spec.disrupts()):
            return await self._run(spec, cause.description, decision)

        def journal_denial(reason: str) -> None:
            self.journal.record_incident(new_incident_id(), spec.service, spec.name, cause.description,
                                         self.clock.now(), "denied", reason)

        return await fleet.run(
            spec.service, budget, decision, lambda granted: self._run(spec, cause.description, granted),
            defer=lambda wait: self._defer(spec, cause, wait), journal_denial=journal_denial,
        )

    async def _run(
        self, spec: PlaybookSpec, trigger: str, decision: Decision, *, dry_run: bool = False
    ) -> RunResult | None:
        service = spec.service
        incident_id = new_incident_id()
        dry_run = dry_run or spec.dry_run or self.plan.dry_run
        started = self.clock.now()
        self.safety.begin(service, started)
        result: RunResult | None = None
        with self._run_context(incident_id, service):
            try:
                result = await self.runner.run(
                    spec, self.actions[service], incident_id=incident_id, trigger=trigger, dry_run=dry_run,
                    restart_blocked=decision.restart_blocked,
                )
            except Exception as exc:
                # A runner bug must not leave the lock held nor the incident open.
                self._log.exception("playbook run crashed", playbook=spec.name)
                self.journal.finish_incident(incident_id, self.clock.now(), "aborted",
                                             f"crashed: {type(exc).__name__}")
            finally:
                outcome = result.outcome if result is not None else "aborted"
                ended = self.clock.now()
                self.safety.finish(service, ended, "dry_run" if dry_run else outcome)
                counted = not dry_run and outcome != "blocked"
                self._metrics.run_finished(spec.name, "dry_run" if dry_run else outcome,
                                           ended - started if counted else None)
            if result is not None and result.outcome == "escalated":
                self._suspend(service, f"playbook {spec.name} escalated: {result.detail}", incident_id)
        if outcome == "blocked":
            self._blocked.add(service)
        self._health(service).rearm()
        if not dry_run and outcome != "blocked":
            await self._reconsider(spec)
        if not dry_run and outcome == "succeeded" and service in self.plan.restart_dependents:
            await self._restart_dependents(service)
        return result

    async def _reconsider(self, spec: PlaybookSpec) -> None:
        """A service still sick after a run is triggered again, so backoff and budget apply to crash loops."""
        if not await self._sick(spec.service):
            return
        kind: TriggerKind = "check_failed" if failing_checks(self._health(spec.service)) else "process_exited"
        await self._trigger(spec, Cause(kind, f"{spec.service} still unhealthy after playbook {spec.name}"))

    async def _restart_dependents(self, service: str) -> None:
        """``restart_dependents``: ``service`` healed and is healthy, so each service depending on it is healed too."""
        if await self._sick(service):
            return
        cause = Cause("dependency_recovered", f"dependency {service} recovered (restart_dependents)")
        for dependent, needs in sorted(self.plan.depends_on.items()):
            spec = next((spec for spec in self.plan.specs if spec.service == dependent), None)
            if service in needs and spec is not None:
                await self._trigger(spec, cause)

    async def _after_recovery(self, service: str) -> None:
        """A service turned healthy: runs blocked on it (or on its own failure) may go on."""
        for blocked in sorted(self._blocked):
            if blocked != service and service not in self.plan.depends_on.get(blocked, ()):
                continue
            if self._unhealthy_dependencies(blocked):
                continue
            self._blocked.discard(blocked)
            spec = next((spec for spec in self.plan.specs if spec.service == blocked), None)
            if spec is None:
                continue  # a reload took its playbook away
            if await self._sick(blocked):
                await self._trigger(spec, Cause("check_failed", f"dependency of {blocked} recovered"))
            elif self.journal.service_state(blocked).traffic_cut_by is not None and not self._busy(blocked):
                restore = dataclasses.replace(spec, steps=(spec.restore_step(),), dry_run=False)
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
                            f"auto-healing of {service} is suspended: {reason}", self.clock.now()))

    def _notify(self, notice: Notice) -> None:
        """Log the notice and hand it to the notifier; a notifier failure never stops the healing."""
        method = {"critical": self._log.error, "warning": self._log.warning}.get(notice.severity, self._log.info)
        method("healing notice", service=notice.service, incident_id=notice.incident_id,
               severity=notice.severity, summary=notice.summary)
        if self._deliver is None:
            return
        try:
            self._deliver(notice)
        except Exception:
            self._log.exception("healing notice not handed to the notifier", service=notice.service)

    async def _health_ticks(self) -> None:
        """Resume suspended services that have been healthy for long enough, and runs blocked by the time."""
        while True:
            await self.clock.sleep(HEALTH_TICK_S)
            for service in self.plan.backends:
                if not self.safety.state(service).suspended:
                    continue
                healthy = not await self._sick(service)
                now = self.clock.now()
                if self.safety.note_health(service, healthy, now):
                    self.journal.reset_budget(service, now)
                    self._log.warning("auto-healing resumed after a healthy period", service=service)
            await self._after_time_block()

    async def _after_time_block(self) -> None:
        """Runs blocked outside their playbook's active time intervals heal once an interval begins, if still sick."""
        now = self.clock.now()
        for service in sorted(self._blocked):
            spec = next((spec for spec in self.plan.specs if spec.service == service), None)
            if (spec is None or not spec.active_time_intervals or self._busy(service)
                    or not self.plan.time_active(spec.active_time_intervals, now)
                    or self._unhealthy_dependencies(service)):
                continue
            self._blocked.discard(service)
            if await self._sick(service):
                kind: TriggerKind = "check_failed" if failing_checks(self._health(service)) else "process_exited"
                await self._trigger(spec, Cause(kind, f"{service} still unhealthy when its active time interval began"))

    # -- service state -------------------------------------------------------------

    def _health(self, service: str) -> ServiceHealth:
        return self.plan.health.get(service) or Unwatched()

    async def _sick(self, service: str) -> bool:
        return await is_sick(self._health(service))

    def _unhealthy_dependencies(self, service: str) -> list[str]:
        return [name for name in self.plan.depends_on.get(service, ()) if unhealthy(self._health(name))]
