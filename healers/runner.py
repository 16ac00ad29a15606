"""Running one playbook: its steps in order, each journaled before and after, bounded by its timeout.

A failed step continues, aborts or escalates as its ``on_failure`` says; a failed ``verify`` step
first runs the playbook's ``rollback`` steps (once per run) and then itself again, and escalates if
it fails again. A run that stops
after cutting traffic restores it or, with ``traffic_on_abort: keep``, raises a critical
notice: a service is never left out of rotation silently. In dry run every step is journaled
and nothing acts. Suspending the service after an escalation is the caller's business
(``healers.safety``); the runner reports the outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from healers.backends.base import (
    ActionContext,
    ActionResult,
    RestartBackend,
    TrafficBackend,
)
from healers.backends.restart import SignalRestartBackend, run_command
from healers.capture import capture
from healers.exprcheck import ExprEvaluator
from healers.journal import Journal
from healers.playbook import DEFAULT_TRAFFIC_TIMEOUT_S, PlaybookSpec, StepSpec
from healers.ramp import ramp_up, weighing
from healers.verify import Verify, verify

Severity = Literal["info", "warning", "critical"]

# Steps acting on the service's process (a restart through the signal backend too) look its pid up afresh.
PID_STEPS = frozenset({"signal", "restart", "capture"})


class Log(Protocol):
    """The slice of a structlog logger the runner and the runtime use; the agent passes a real one."""

    def bind(self, **values: Any) -> Log: ...
    def info(self, event: str, **values: Any) -> Any: ...
    def warning(self, event: str, **values: Any) -> Any: ...
    def error(self, event: str, **values: Any) -> Any: ...
    def exception(self, event: str, **values: Any) -> Any: ...


@dataclass(frozen=True)
class Notice:
    """Something a person must hear about: a ``notify`` step, an escalation, traffic left cut."""

    service: str
    incident_id: str
    severity: Severity
    summary: str
    at: float


@dataclass(frozen=True)
class ServiceActions:
    """What a run on one service acts through; the agent builds it from the service's config."""

    service: str
    restart: RestartBackend | None
    traffic: TrafficBackend | None
    wait_healthy: Callable[[ActionContext], Awaitable[ActionResult]]
    pid: Callable[[], int | None]
    # The pid looked up afresh (the process may have been restarted since ``pid`` last learned it): PID_STEPS read it.
    current_pid: Callable[[], Awaitable[int | None]] | None = None
    # PromQL over the agent's store (healers.exprcheck): verify steps and restore guards read it.
    evaluate: ExprEvaluator | None = None


@dataclass(frozen=True)
class RunResult:
    incident_id: str
    outcome: str  # succeeded | aborted | escalated | blocked
    detail: str
    traffic_left_cut: bool


class Runner:
    """Executes playbook runs and records them in the journal.

    ``redact`` scrubs every step's detail and output before it is journaled, logged or notified:
    commands print what they like, and the journal is served by the API.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        notify: Callable[[Notice], None],
        log: Log,
        clock: Callable[[], float],
        redact: Callable[[str], str] = str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``sleep`` waits out ``sleep`` steps: the runtime passes its clock's, so a test steps them too."""
        self.journal = journal
        self._sleep = sleep
        self.redact = redact
        self._notify = notify
        self._log = log
        self._clock = clock

    async def run(
        self,
        spec: PlaybookSpec,
        actions: ServiceActions,
        *,
        incident_id: str,
        trigger: str,
        dry_run: bool = False,
        restart_blocked: str = "",
    ) -> RunResult:
        """Run ``spec`` against ``actions``; with ``restart_blocked`` only ``traffic: cut`` steps act."""
        dry_run = dry_run or spec.dry_run
        log = self._log.bind(incident_id=incident_id, service=spec.service, playbook=spec.name)
        self.journal.start_incident(incident_id, spec.service, spec.name, trigger, self._clock(), dry_run=dry_run)
        log.info("playbook started", trigger=trigger, dry_run=dry_run)
        self._tell(dry_run, spec.service, incident_id, "info", f"healing {spec.service} with {spec.name}: {trigger}")
        outcome, detail, ramp_failed = "succeeded", "", False
        rolled_back = False
        for step in spec.steps:
            index = self.journal.next_step_index(incident_id)
            if restart_blocked and not step.cuts_traffic():
                self._skip(incident_id, index, step, actions, restart_blocked)
                log.warning("step skipped", step=step.describe(), reason=restart_blocked)
                outcome, detail = "blocked", restart_blocked
                continue
            result = await self._step(incident_id, index, step, actions, dry_run, log)
            if not result.ok:
                self._tell(dry_run, spec.service, incident_id, "warning",
                           f"{spec.service}: step {step.describe()} failed: {result.detail}")
            if not result.ok and step.action == "verify" and spec.rollback and not rolled_back:
                rolled_back = True
                result = await self._roll_back(spec, step, actions, incident_id, dry_run, log)
                if not result.ok:
                    outcome, detail = "escalated", result.detail
                    break
            if result.ok or step.on_failure == "continue":
                continue
            outcome = "escalated" if step.on_failure == "escalate" else "aborted"
            detail = f"{step.describe()} failed: {result.detail}"
            ramp_failed = step.ramps()  # the ramp cut traffic again: it stays cut
            break
        left_cut = False
        if outcome in ("aborted", "escalated") and not dry_run:
            left_cut = await self._after_abort(spec, actions, incident_id, log, detail if ramp_failed else "")
        self.journal.finish_incident(incident_id, self._clock(), outcome, detail)
        log.info("playbook finished", outcome=outcome, detail=detail)
        if outcome == "succeeded":
            self._tell(dry_run, spec.service, incident_id, "info", f"{spec.service} recovered: {spec.name} succeeded")
        return RunResult(incident_id, outcome, detail, left_cut)

    def _tell(self, dry_run: bool, service: str, incident_id: str, severity: Severity, summary: str) -> None:
        """A healing event for people (started, step failed, recovered); a dry run tells no one."""
        if not dry_run:
            self._notify(Notice(service, incident_id, severity, summary, self._clock()))

    async def _roll_back(
        self, spec: PlaybookSpec, failed: StepSpec, actions: ServiceActions, incident_id: str, dry_run: bool, log: Log
    ) -> ActionResult:
        """Run the rollback steps, then the failed verify once more: its result, or the failed rollback step's."""
        log.warning("rolling back", steps=len(spec.rollback), after=failed.describe())
        for step in spec.rollback:
            index = self.journal.next_step_index(incident_id)
            result = await self._step(incident_id, index, step, actions, dry_run, log, f"rollback: {step.describe()}")
            if not result.ok and step.on_failure != "continue":
                return replace(result, detail=f"rollback {step.describe()} failed: {result.detail}")
        index = self.journal.next_step_index(incident_id)
        result = await self._step(incident_id, index, failed, actions, dry_run, log,
                                  f"{failed.describe()} after rollback")
        if result.ok:
            return result
        return replace(result, detail=f"{failed.describe()} failed again after the rollback: {result.detail}")

    async def _step(
        self, incident_id: str, index: int, step: StepSpec, actions: ServiceActions, dry_run: bool, log: Log,
        name: str = "",
    ) -> ActionResult:
        """Run one step, journaled as ``name`` (by default the step's own description)."""
        backend = _backend_name(step, actions)
        self.journal.start_step(incident_id, index, name or step.describe(), backend, self._clock())
        if step.cuts_traffic() and not dry_run:
            # Recorded before acting: if the agent dies during the cut, the next start restores traffic.
            self.journal.set_traffic_cut(actions.service, incident_id)
        log.info("step started", step=step.describe(), backend=backend, index=index)
        ctx = ActionContext(actions.service, incident_id, step.timeout_s, pid=actions.pid(), dry_run=dry_run)
        result, state = await self._execute(step, actions, ctx, incident_id)
        result = replace(result, detail=self.redact(result.detail), output_tail=self.redact(result.output_tail),
                         attachment=self.redact(result.attachment))
        if result.ok and not dry_run and step.restores_traffic():
            self.journal.set_traffic_cut(actions.service, None)
        self.journal.finish_step(
            incident_id, index, self._clock(), state, "" if result.ok else result.detail, result.output_tail,
            result.attachment,
        )
        if result.ok:
            log.info("step finished", step=step.describe(), result=state, detail=result.detail)
        else:
            log.warning("step failed", step=step.describe(), result=state, detail=result.detail,
                        on_failure=step.on_failure)
        return result

    async def _execute(
        self, step: StepSpec, actions: ServiceActions, ctx: ActionContext, incident_id: str
    ) -> tuple[ActionResult, str]:
        """The step's result and its journal state: ok, dry_run, failed or timeout."""
        try:
            async with asyncio.timeout(step.timeout_s):  # unlike wait_for, never swallows the agent's stop
                result = await self._act(step, actions, ctx, incident_id)
        except TimeoutError:
            return ActionResult(False, f"{step.describe()} timed out after {step.timeout_s:g}s"), "timeout"
        except Exception as exc:  # noqa: BLE001 - a crash barrier around every backend call
            # A backend bug is a failed step, not a dead runner: the journal and traffic stay consistent.
            self._log.error("step crashed", step=step.describe(), incident_id=incident_id, exc_info=True)
            return ActionResult(False, f"{step.describe()} crashed: {type(exc).__name__}: {exc}"), "failed"
        if not result.ok:
            return result, "failed"
        return result, "dry_run" if ctx.dry_run else "ok"

    async def _act(
        self, step: StepSpec, actions: ServiceActions, ctx: ActionContext, incident_id: str
    ) -> ActionResult:
        if step.action in PID_STEPS and actions.current_pid is not None:
            ctx = replace(ctx, pid=await actions.current_pid())
        if step.action == "traffic":
            if actions.traffic is None:
                return ActionResult(False, f"{actions.service} has no traffic backend configured")
            if step.cuts_traffic():
                return await actions.traffic.cut(ctx)
            if step.ramps():
                return await self._ramp(step, actions, ctx)
            return await actions.traffic.restore(ctx)
        if step.action == "restart":
            if actions.restart is None:
                return ActionResult(False, f"{actions.service} has no restart backend configured")
            return await actions.restart.restart(ctx)
        if step.action == "exec":
            return await run_command(step.args["command"], ctx, "exec step", step.args.get("env"))
        if step.action == "signal":
            return await SignalRestartBackend(str(step.args["signal"])).restart(ctx)
        if step.action == "capture":
            return await capture(step.args["command"], ctx, timeout_s=float(step.args["timeout_s"]),
                                 max_bytes=int(step.args["max_bytes"]), env=step.args.get("env"))
        if step.action == "verify":
            check: Verify = step.args["verify"]
            if ctx.dry_run:
                return ActionResult(True, f"dry run: would verify {check.describe()}")
            return await verify(check, actions.service, actions.evaluate, now=self._clock, sleep=self._sleep)
        if step.action == "wait_healthy":
            if ctx.dry_run:
                return ActionResult(True, f"dry run: would wait up to {step.timeout_s:g}s for the checks to pass")
            return await actions.wait_healthy(ctx)
        if step.action == "sleep":
            seconds = float(step.args["seconds"])
            if ctx.dry_run:
                return ActionResult(True, f"dry run: would sleep {seconds:g}s")
            await self._sleep(seconds)
            return ActionResult(True, f"slept {seconds:g}s")
        assert step.action == "notify", f"unknown action {step.action!r}"  # Action is a closed set
        summary = str(step.args.get("message", f"playbook step notification for {actions.service}"))
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would notify: {summary}")
        severity: Severity = step.args.get("severity", "warning")
        self._notify(Notice(actions.service, incident_id, severity, summary, self._clock()))
        return ActionResult(True, f"notified: {summary}")

    async def _ramp(self, step: StepSpec, actions: ServiceActions, ctx: ActionContext) -> ActionResult:
        ramp = step.args["ramp"]
        backend = weighing(actions.traffic)
        if backend is None:
            name = actions.traffic.name if actions.traffic is not None else "none"
            return ActionResult(False, f"the {name} traffic backend of {actions.service} cannot weigh traffic")
        if ctx.dry_run:
            stages = " -> ".join(f"{percent}%" for percent in ramp.stages)
            return ActionResult(True, f"dry run: would ramp traffic {stages}, holding each {ramp.hold_s:g}s")
        # Each backend command gets a traffic step's usual bound; the step's own timeout covers the holds.
        command_ctx = replace(ctx, timeout_s=min(ctx.timeout_s, DEFAULT_TRAFFIC_TIMEOUT_S))
        return await ramp_up(backend, command_ctx, ramp, actions.evaluate, now=self._clock, sleep=self._sleep)

    def _skip(self, incident_id: str, index: int, step: StepSpec, actions: ServiceActions, reason: str) -> None:
        now = self._clock()
        self.journal.start_step(incident_id, index, step.describe(), _backend_name(step, actions), now)
        self.journal.finish_step(incident_id, index, now, "skipped", reason)

    async def _after_abort(
        self, spec: PlaybookSpec, actions: ServiceActions, incident_id: str, log: Log, ramp_failed: str = ""
    ) -> bool:
        """Put traffic back after a failed run that cut it, or say loudly that it stays cut; True if it does.

        After a failed progressive restore (``ramp_failed`` says how) traffic stays cut: the ramp cut it again.
        """
        if self.journal.service_state(spec.service).traffic_cut_by != incident_id:
            return False
        if ramp_failed:
            log.error("traffic left cut", reason="the progressive restore failed")
            self._notify(Notice(spec.service, incident_id, "critical",
                                f"{spec.service} stays out of rotation: {ramp_failed}", self._clock()))
            return True
        if spec.traffic_on_abort == "keep":
            summary = f"{spec.service} stays out of rotation after a failed playbook {spec.name} (traffic_on_abort: keep)"
            log.error("traffic left cut", reason="traffic_on_abort: keep")
            self._notify(Notice(spec.service, incident_id, "critical", summary, self._clock()))
            return True
        restore = spec.restore_step()
        index = self.journal.next_step_index(incident_id)
        result = await self._step(incident_id, index, restore, actions, False, log)
        if result.ok:
            return False
        summary = f"{spec.service} is still out of rotation: restoring traffic after a failed playbook failed: {result.detail}"
        log.error("traffic restore after abort failed", detail=result.detail)
        self._notify(Notice(spec.service, incident_id, "critical", summary, self._clock()))
        return True

    async def recover_interrupted(
        self, playbooks: Mapping[str, PlaybookSpec], actions_of: Callable[[str], ServiceActions | None]
    ) -> list[str]:
        """Close the incidents a killed agent left running; restore their cut traffic or raise a critical notice.

        Returns the ids of the incidents now marked ``interrupted``.
        """
        closed = []
        for incident in self.journal.running_incidents():
            log = self._log.bind(incident_id=incident.id, service=incident.service, playbook=incident.playbook)
            detail = "the agent stopped in the middle of this run"
            self.journal.mark_interrupted(incident.id, self._clock(), detail)
            if self.journal.service_state(incident.service).traffic_cut_by == incident.id:
                detail += await self._recover_traffic(incident.id, playbooks.get(incident.playbook),
                                                      actions_of(incident.service), log)
                self.journal.finish_incident(incident.id, self._clock(), "interrupted", detail)
            log.warning("interrupted playbook closed", detail=detail)
            closed.append(incident.id)
        return closed

    async def _recover_traffic(
        self, incident_id: str, spec: PlaybookSpec | None, actions: ServiceActions | None, log: Log
    ) -> str:
        service = actions.service if actions is not None else "the service"
        policy = spec.traffic_on_abort if spec is not None else "restore"
        if policy == "restore" and actions is not None and actions.traffic is not None:
            restore = spec.restore_step() if spec is not None else StepSpec(
                "traffic", {"op": "restore"}, timeout_s=DEFAULT_TRAFFIC_TIMEOUT_S
            )
            result = await self._step(incident_id, self.journal.next_step_index(incident_id), restore, actions,
                                      False, log)
            if result.ok:
                return "; traffic restored"
            summary = f"{service} is out of rotation after an interrupted playbook: {result.detail}"
            outcome = f"; restoring traffic failed: {result.detail}"
        else:
            summary = f"{service} stays out of rotation after an interrupted playbook (traffic_on_abort: {policy})"
            outcome = f"; traffic left cut (traffic_on_abort: {policy})"
        log.error("traffic left cut after an interrupted playbook")
        self._notify(Notice(service, incident_id, "critical", summary, self._clock()))
        return outcome

def _backend_name(step: StepSpec, actions: ServiceActions) -> str:
    if step.action == "traffic":
        return actions.traffic.name if actions.traffic is not None else "none"
    if step.action == "restart":
        return actions.restart.name if actions.restart is not None else "none"
    return {"exec": "exec", "capture": "exec", "signal": "signal", "wait_healthy": "checks", "sleep": "clock",
            "notify": "notifier", "verify": "store"}[step.action]
