"""The ``verify`` step: a heal proves itself on the service's own series before the playbook goes on.

``verify: {expr, for, timeout}`` passes once the expression (``healers.exprcheck``: the agent's
engine over its store, scoped to the service) has returned a non-empty result continuously for
``for``; with ``absent: true`` once it has been empty that long (a guard such as "no 5xx"). A
result of the other kind starts the ``for`` over; the step fails when ``timeout`` passes first. An
evaluation that errors counts as not passing. Every evaluation's result goes to the step's
journal attachment, bounded: consecutive evaluations with the same result share one line, and
past ``MAX_LINES`` lines the middle ones are dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from healers.backends.base import ActionResult
from healers.exprcheck import ExprEvaluator, describe
from rules.promql import PromQLError

MAX_LINES = 60


@dataclass(frozen=True)
class Verify:
    """What a verify step checks: ``expr`` non-empty (empty with ``absent``) for ``for_s``, within ``timeout_s``."""

    expr: str
    for_s: float = 0.0
    timeout_s: float = 120.0
    absent: bool = False
    interval_s: float = 1.0

    def describe(self) -> str:
        wanted = "empty" if self.absent else "non-empty"
        return f"{' '.join(self.expr.split())} {wanted} for {self.for_s:g}s"


@dataclass
class _Run:
    """Consecutive evaluations with the same result: their first and last offsets and how many."""

    first: float
    last: float
    count: int
    text: str


class _Evaluations:
    """The bounded record of one step's evaluations: runs of equal results as one line each."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.runs: list[_Run] = []
        self.dropped = 0

    def add(self, at: float, text: str) -> None:
        offset = at - self.start
        if self.runs and self.runs[-1].text == text:
            self.runs[-1].last = offset
            self.runs[-1].count += 1
            return
        self.runs.append(_Run(offset, offset, 1, text))
        if len(self.runs) > MAX_LINES:
            del self.runs[MAX_LINES // 2]  # keep how it began and how it ended
            self.dropped += 1

    def text(self) -> str:
        out = []
        for index, run in enumerate(self.runs):
            if self.dropped and index == MAX_LINES // 2:
                out.append(f"... {self.dropped} changes of result left out ...")
            span = f"+{run.first:.1f}s" if run.count == 1 else \
                f"+{run.first:.1f}s..+{run.last:.1f}s ({run.count} evaluations)"
            out.append(f"{span}: {run.text}")
        return "\n".join(out)


async def verify(
    check: Verify, service: str, evaluate: ExprEvaluator | None, *,
    now: Callable[[], float], sleep: Callable[[float], Awaitable[None]],
) -> ActionResult:
    """Evaluate ``check`` every ``interval_s`` until it has held for ``for_s`` (passed) or ``timeout_s`` passed."""
    if evaluate is None:
        return ActionResult(False, "no local store to evaluate the expression over")
    start = now()
    record = _Evaluations(start)
    held_since: float | None = None
    while True:
        at = now()
        try:
            samples = evaluate(check.expr, service, at)
        except PromQLError as exc:
            record.add(at, f"error: {exc}")
            held_since = None
        else:
            record.add(at, describe(samples))
            if (not samples) == check.absent:
                held_since = at if held_since is None else held_since
            else:
                held_since = None
        if held_since is not None and at - held_since >= check.for_s:
            return ActionResult(True, f"verified after {at - start:.1f}s: {check.describe()}",
                                attachment=record.text())
        if at - start >= check.timeout_s:
            return ActionResult(False, f"not verified within {check.timeout_s:g}s: {check.describe()}",
                                attachment=record.text())
        await sleep(min(check.interval_s, check.timeout_s - (at - start)))
