"""Progressive traffic restore: raise a service's share of traffic stage by stage while a guard stays empty.

Each stage sets the share through a traffic backend that can weigh traffic (``WeightedTraffic``),
then holds it for ``hold_s`` while the guard expression (``healers.exprcheck``: the agent's engine
over its store, scoped to the service) is evaluated at the stage's start, every ``GUARD_EVERY_S``
and at its end. When the guard returns anything (or cannot be evaluated), or a stage cannot be
set, the service's traffic is cut again and the ramp fails; the runner then keeps it cut and
escalates. Every stage and every guard result goes to the step's journal attachment, equal
results in a row as one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from healers.backends.base import ActionContext, ActionResult, TrafficBackend
from healers.exprcheck import ExprEvaluator, Samples, describe
from rules.promql import PromQLError

GUARD_EVERY_S = 1.0


@dataclass(frozen=True)
class Ramp:
    """The shares (percent, ascending, ending at 100), how long each is held, and the guard (None: hold only)."""

    stages: tuple[int, ...]
    hold_s: float
    guard: str | None = None


@runtime_checkable
class WeightedTraffic(Protocol):
    """A traffic backend that can give the service a share of traffic (``weighs`` says whether it is set up to)."""

    name: str
    weighs: bool

    async def set_share(self, ctx: ActionContext, percent: int) -> ActionResult: ...

    async def cut(self, ctx: ActionContext) -> ActionResult: ...


def weighing(backend: TrafficBackend | None) -> WeightedTraffic | None:
    """``backend`` when it can weigh traffic, else None (the readiness gate is in or out, nothing between)."""
    candidate: object = backend  # a TrafficBackend need not weigh: check the object, not its declared type
    if isinstance(candidate, WeightedTraffic) and candidate.weighs:
        return candidate
    return None


class _Record:
    """The ramp's journal text: a line per stage change, equal guard results in a row folded into one."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.lines: list[str] = []
        self._first = ""
        self._last = ""
        self._count = 0

    def add(self, at: float, text: str) -> None:
        offset = f"+{at - self.start:.1f}s"
        if text == self._last:
            self._count += 1
            self.lines[-1] = f"{self._first}..{offset} ({self._count} evaluations): {text}"
            return
        self._first, self._last, self._count = offset, text, 1
        self.lines.append(f"{offset}: {text}")

    def text(self) -> str:
        return "\n".join(self.lines)


async def ramp_up(
    backend: WeightedTraffic, ctx: ActionContext, ramp: Ramp, evaluate: ExprEvaluator | None, *,
    now: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
) -> ActionResult:
    """Run ``ramp`` through ``backend``, reading its guard through ``evaluate``."""
    if ramp.guard is not None and evaluate is None:
        return ActionResult(False, "no local store to evaluate the guard over")
    record = _Record(now())
    for percent in ramp.stages:
        share = await backend.set_share(ctx, percent)
        record.add(now(), share.detail)
        if not share.ok:
            return await _cut_again(backend, ctx, f"setting {percent}% failed: {share.detail}", record, now)
        fired = await _hold(ramp, ctx.service, evaluate, record, now, sleep)
        if fired:
            return await _cut_again(backend, ctx, f"the guard fired at {percent}%: {fired}", record, now)
    stages = " -> ".join(f"{percent}%" for percent in ramp.stages)
    guarded = ", the guard empty throughout" if ramp.guard is not None else ""
    return ActionResult(True, f"traffic ramped {stages}, each held {ramp.hold_s:g}s{guarded}",
                        attachment=record.text())


async def _hold(
    ramp: Ramp, service: str, evaluate: ExprEvaluator | None, record: _Record, now: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> str:
    """Hold the stage; what the guard returned (described) as soon as it returns anything, else ""."""
    end = now() + ramp.hold_s
    while True:
        if ramp.guard is not None and evaluate is not None:
            at = now()
            try:
                samples: Samples = evaluate(ramp.guard, service, at)
            except PromQLError as exc:  # a guard that cannot be read does not vouch for the service
                record.add(at, f"guard error: {exc}")
                return f"the guard could not be evaluated: {exc}"
            record.add(at, f"guard {describe(samples)}")
            if samples:
                return describe(samples)
        remaining = end - now()
        if remaining <= 0:
            return ""
        await sleep(min(GUARD_EVERY_S, remaining))


async def _cut_again(
    backend: WeightedTraffic, ctx: ActionContext, reason: str, record: _Record, now: Callable[[], float]
) -> ActionResult:
    cut = await backend.cut(ctx)
    record.add(now(), cut.detail)
    outcome = "traffic cut again" if cut.ok else f"cutting traffic again failed: {cut.detail}"
    return ActionResult(False, f"{reason}; {outcome}", attachment=record.text())
