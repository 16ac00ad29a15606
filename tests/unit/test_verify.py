"""Verify steps and rollback on a manual clock, over a real store and engine; their config; heal --playbook."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import structlog

from agent.config import parse_config
from agent.healing import HealingMetrics, StoreEvaluator
from agent.state import StateDB
from healers.backends.base import ActionContext, ActionResult
from healers.clock import ManualClock, settle
from healers.journal import MIGRATIONS, Journal
from healers.plan import HealingError, HealingPlan, ServiceBackends
from healers.playbook import PlaybookSpec, StepSpec
from healers.runner import Runner, RunResult, ServiceActions
from healers.runtime import HealingRuntime
from healers.verify import MAX_LINES, Verify, verify
from rules.errors import SourceError
from rules.model import Labels
from rules.promql import Engine, PromQLEvalError
from rules.store import SeriesStore

START = 1000.0
RATIO = 'error_ratio{service="$service"} < 0.05'


class Feed:
    """The web service's error ratio in a real store, set by the test (and by the rollback)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.store = SeriesStore(retention_s=None)

    def ratio(self, value: float) -> None:
        self.store.ingest("scrape:web", [(Labels.of("error_ratio", {"service": "web"}), value),
                                         (Labels.of("error_ratio", {"service": "db"}), 0.0)],
                          round(self.clock.now() * 1000))


class RollbackRestart:
    """A restart backend standing for "put the good version back": the error ratio falls to ``after``."""

    name = "rollback"

    def __init__(self, feed: Feed, after: float) -> None:
        self.feed = feed
        self.after = after
        self.calls: list[float] = []

    async def restart(self, ctx: ActionContext) -> ActionResult:
        self.calls.append(self.feed.clock.now())
        self.feed.ratio(self.after)
        return ActionResult(True, "restarted")


def _wait(ctx: ActionContext) -> Awaitable[ActionResult]:
    raise AssertionError("no wait_healthy step here")


def runner_for(clock: ManualClock) -> Runner:
    db = StateDB(":memory:")
    db.migrate("healers", MIGRATIONS)
    return Runner(Journal(db.conn), notify=lambda notice: None, log=structlog.get_logger(), clock=clock.now,
                  sleep=clock.sleep)


def run_on_clock(clock: ManualClock, work: Callable[[], Coroutine[Any, Any, RunResult]], seconds: float) -> RunResult:
    """Run ``work`` while the clock steps ``seconds`` a tenth at a time; it must have finished by then."""

    async def scenario() -> RunResult:
        task = asyncio.create_task(work())
        for _ in range(round(seconds * 10)):
            await settle()
            if task.done():
                break
            await clock.advance(0.1)
        assert task.done(), "the run did not finish"
        return task.result()

    began = time.monotonic()
    result = asyncio.run(scenario())
    assert time.monotonic() - began < 10.0  # healing time is stepped, not waited
    return result


def verify_step(check: Verify) -> StepSpec:
    return StepSpec("verify", {"verify": check}, timeout_s=check.timeout_s + 5.0)


def test_verify_passes_once_the_expression_held_for_its_for() -> None:
    clock = ManualClock(START)
    feed = Feed(clock)
    feed.ratio(0.01)
    runner = runner_for(clock)
    spec = PlaybookSpec("check", "web", (), (verify_step(Verify(RATIO, for_s=10.0, timeout_s=30.0)),))
    actions = ServiceActions("web", None, None, _wait, lambda: None, evaluate=StoreEvaluator(Engine(), feed.store))
    result = run_on_clock(clock, lambda: runner.run(spec, actions, incident_id="i1", trigger="manual"), 40)
    assert result.outcome == "succeeded"
    [step] = runner.journal.steps("i1")
    assert (step.action, step.backend, step.result, step.ended_at) == ("verify", "store", "ok", START + 10.0)
    assert step.attachment == '+0.0s..+10.0s (11 evaluations): 1 series: error_ratio{service="web"} 0.01'


def test_a_result_of_the_other_kind_starts_for_over_and_timeout_fails() -> None:
    """absent: the guard form; a non-empty result at +2 s restarts its 3 s; never 3 s empty within 4 s: failed."""
    clock = ManualClock(START)
    feed = Feed(clock)
    feed.ratio(0.0)
    runner = runner_for(clock)
    check = Verify('error_ratio{service="$service"} > 0.05', for_s=3.0, timeout_s=4.0, absent=True)
    spec = PlaybookSpec("guard", "web", (), (verify_step(check),))
    actions = ServiceActions("web", None, None, _wait, lambda: None, evaluate=StoreEvaluator(Engine(), feed.store))

    async def bad_at_two() -> RunResult:
        async def flip() -> None:
            await clock.sleep(1.5)
            feed.ratio(0.5)
            await clock.sleep(1.0)
            feed.ratio(0.0)
        flipping = asyncio.create_task(flip())
        result = await runner.run(spec, actions, incident_id="i2", trigger="manual")
        await flipping
        return result

    result = run_on_clock(clock, bad_at_two, 10)
    assert result.outcome == "aborted"
    assert result.detail == ('verify failed: not verified within 4s: error_ratio{service="$service"} > 0.05 '
                             "empty for 3s")
    [step] = runner.journal.steps("i2")
    assert step.result == "failed" and step.ended_at == START + 4.0
    assert step.attachment == (
        "+0.0s..+1.0s (2 evaluations): empty\n"
        '+2.0s: 1 series: error_ratio{service="web"} 0.5\n'
        "+3.0s..+4.0s (2 evaluations): empty"
    )


def test_a_failed_verify_rolls_back_then_verifies_again() -> None:
    """Bad from the start: verify fails at its 20 s, the rollback restarts, verify passes 5 s later; journaled."""
    clock = ManualClock(START)
    feed = Feed(clock)
    feed.ratio(0.3)
    rollback = RollbackRestart(feed, after=0.0)
    runner = runner_for(clock)
    spec = PlaybookSpec("deploy-guard", "web", (), (verify_step(Verify(RATIO, 5.0, 20.0)), StepSpec("notify")),
                        rollback=(StepSpec("restart"),))
    actions = ServiceActions("web", rollback, None, _wait, lambda: None,
                             evaluate=StoreEvaluator(Engine(), feed.store))
    result = run_on_clock(clock, lambda: runner.run(spec, actions, incident_id="i3", trigger="manual"), 60)
    assert result.outcome == "succeeded" and rollback.calls == [START + 20.0]
    steps = runner.journal.steps("i3")
    assert [(s.index, s.action, s.result, s.ended_at) for s in steps] == [
        (0, "verify", "failed", START + 20.0),
        (1, "rollback: restart", "ok", START + 20.0),
        (2, "verify after rollback", "ok", START + 25.0),
        (3, "notify", "ok", START + 25.0),
    ]
    assert steps[0].attachment == "+0.0s..+20.0s (21 evaluations): empty"
    assert steps[2].attachment.startswith("+0.0s..+5.0s (6 evaluations): 1 series: ")


def test_a_verify_failing_again_after_the_rollback_escalates() -> None:
    clock = ManualClock(START)
    feed = Feed(clock)
    feed.ratio(0.3)
    rollback = RollbackRestart(feed, after=0.2)  # the old version is bad too
    runner = runner_for(clock)
    spec = PlaybookSpec("deploy-guard", "web", (), (verify_step(Verify(RATIO, 0.0, 10.0)), StepSpec("notify")),
                        rollback=(StepSpec("restart"),))
    actions = ServiceActions("web", rollback, None, _wait, lambda: None,
                             evaluate=StoreEvaluator(Engine(), feed.store))
    result = run_on_clock(clock, lambda: runner.run(spec, actions, incident_id="i4", trigger="manual"), 60)
    assert result.outcome == "escalated"
    assert result.detail.startswith("verify failed again after the rollback: not verified within 10s")
    assert [(s.action, s.result) for s in runner.journal.steps("i4")] == [
        ("verify", "failed"), ("rollback: restart", "ok"), ("verify after rollback", "failed")]


def test_a_failed_rollback_step_escalates_without_verifying_again() -> None:
    clock = ManualClock(START)
    feed = Feed(clock)
    feed.ratio(0.3)
    runner = runner_for(clock)
    spec = PlaybookSpec("deploy-guard", "web", (), (verify_step(Verify(RATIO, 0.0, 2.0)),),
                        rollback=(StepSpec("restart"),))
    actions = ServiceActions("web", None, None, _wait, lambda: None, evaluate=StoreEvaluator(Engine(), feed.store))
    result = run_on_clock(clock, lambda: runner.run(spec, actions, incident_id="i5", trigger="manual"), 10)
    assert (result.outcome, result.detail) == (
        "escalated", "rollback restart failed: web has no restart backend configured")
    assert [s.action for s in runner.journal.steps("i5")] == ["verify", "rollback: restart"]


def test_evaluation_errors_count_as_not_passing_and_are_journaled() -> None:
    clock = ManualClock(START)

    def broken(expr: str, service: str, now: float) -> list[tuple[Labels, float]]:
        raise PromQLEvalError("query timed out")  # what a query over its budget raises

    async def scenario() -> ActionResult:
        task = asyncio.create_task(verify(Verify("up", 0.0, 3.0), "web", broken, now=clock.now, sleep=clock.sleep))
        await settle()
        await clock.advance(5.0)
        return await task

    result = asyncio.run(scenario())
    assert not result.ok and result.attachment == "+0.0s..+3.0s (4 evaluations): error: query timed out"
    no_store = asyncio.run(verify(Verify("up"), "web", None, now=clock.now, sleep=clock.sleep))
    assert (no_store.ok, no_store.detail) == (False, "no local store to evaluate the expression over")


def test_the_journal_keeps_a_bounded_record_of_evaluations() -> None:
    """A result changing at every evaluation: the first and last lines are kept, the middle is counted."""
    clock = ManualClock(START)
    values = iter(range(1000))

    def counting(expr: str, service: str, now: float) -> list[tuple[Labels, float]]:
        return [(Labels.of("n"), float(next(values)))]

    async def scenario() -> ActionResult:
        task = asyncio.create_task(verify(Verify("n", 0.0, 99.0, absent=True), "web", counting,
                                          now=clock.now, sleep=clock.sleep))
        await settle()
        await clock.advance(100.0)
        return await task

    lines = asyncio.run(scenario()).attachment.splitlines()
    assert len(lines) == MAX_LINES + 1 and "... 40 changes of result left out ..." in lines
    assert lines[0] == "+0.0s: 1 series: n 0" and lines[-1] == "+99.0s: 1 series: n 99"


def test_a_dry_run_evaluates_nothing() -> None:
    clock = ManualClock(START)
    runner = runner_for(clock)
    spec = PlaybookSpec("check", "web", (), (verify_step(Verify(RATIO, 30.0)),), rollback=(StepSpec("restart"),))
    actions = ServiceActions("web", None, None, _wait, lambda: None, evaluate=None)
    result = run_on_clock(clock, lambda: runner.run(spec, actions, incident_id="i6", trigger="manual", dry_run=True),
                          1)
    assert result.outcome == "succeeded"
    [step] = runner.journal.steps("i6")
    assert step.result == "dry_run"


# -- config ------------------------------------------------------------------------------

SERVICE = "services:\n  web:\n    process: {pidfile: /run/web.pid}\n    restart: {signal: TERM}\n"


def playbook(steps: str, rollback: str = "") -> str:
    return SERVICE + f"playbooks:\n  - name: deploy-guard\n    service: web\n    steps:\n{steps}{rollback}"


def errors_of(text: str) -> list[str]:
    with pytest.raises(SourceError) as info:
        parse_config(text, "agent.yaml")
    return [str(issue) for issue in info.value.issues]


def test_verify_and_rollback_config() -> None:
    text = playbook("      - verify: {expr: 'up == 1', for: 30s}\n", "    rollback:\n      - restart: {}\n")
    spec = parse_config(text, "agent.yaml").playbooks[0].spec(False)
    assert spec.steps[0].args["verify"] == Verify("up == 1", 30.0, 120.0, False, 1.0)
    assert spec.steps[0].timeout_s == 125.0 and spec.steps[0].on_failure == "abort"
    assert [step.action for step in spec.rollback] == ["restart"] and spec.disrupts()


def test_bad_verify_config_is_a_positioned_error() -> None:
    assert errors_of(playbook("      - verify: {expr: 'rate(up[1m]'}\n")) == [
        "agent.yaml:9:24: playbooks -> 0 -> steps -> 0 -> verify -> expr: could not use the verify expression: "
        "1:5: parse error: unclosed left parenthesis"
    ]
    assert errors_of(playbook("      - verify: {expr: 'up[1m]'}\n")) == [
        "agent.yaml:9:24: playbooks -> 0 -> steps -> 0 -> verify -> expr: could not use the verify expression: "
        "the expression must return an instant vector, not a range vector"
    ]
    assert errors_of(playbook("      - {verify: {expr: up}, timeout: 5s}\n")) == [
        "agent.yaml:9:9: playbooks -> 0 -> steps -> 0: a verify step has its own timeout: write it inside verify:"
    ]
    assert errors_of(playbook("      - restart: {}\n", "    rollback:\n      - restart: {}\n")) == [
        "agent.yaml:6:5: playbooks -> 0: rollback runs when a verify step fails, but no step verifies"
    ]


# -- heal SERVICE --playbook NAME ---------------------------------------------------------


class Counting:
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    async def restart(self, ctx: ActionContext) -> ActionResult:
        self.calls += 1
        return ActionResult(True, "restarted")


def test_heal_now_runs_the_named_playbook() -> None:
    db = StateDB(":memory:")
    db.migrate("healers", MIGRATIONS)
    specs = (PlaybookSpec("notify-web", "web", (), (StepSpec("notify"),)),
             PlaybookSpec("restart-web", "web", (), (StepSpec("restart"),)))
    restart = Counting()
    plan = HealingPlan(specs=specs, backends={"web": ServiceBackends(restart=restart)})
    runtime = HealingRuntime(plan, Journal(db.conn), clock=ManualClock(START),
                             metrics=HealingMetrics(), log=structlog.get_logger())

    async def scenario() -> None:
        await runtime.start()
        try:
            result = await runtime.heal_now("web", playbook="restart-web")
            assert runtime.journal.incident(result.incident_id).playbook == "restart-web"  # type: ignore[union-attr]
            assert restart.calls == 1
            with pytest.raises(HealingError, match="no playbook 'other' heals 'web'; its playbooks: notify-web, "
                                                   "restart-web"):
                await runtime.heal_now("web", playbook="other")
        finally:
            await runtime.stop()

    asyncio.run(scenario())
