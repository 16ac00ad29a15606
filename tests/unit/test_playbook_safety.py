"""The safety rules of healing, as pure logic on an explicit clock, and the budget history the journal keeps."""

from __future__ import annotations

from pathlib import Path

from agent.state import StateDB
from healers.journal import MIGRATIONS, Journal
from healers.playbook import Backoff, Budget, PlaybookSpec, StepSpec, Trigger
from healers.safety import RunRecord, Safety

T0 = 1_700_000_000.0


def playbook(*, max_runs: int = 3, within_s: float = 600.0, cooldown_s: float = 60.0) -> PlaybookSpec:
    return PlaybookSpec(
        name="heal-api",
        service="api",
        triggers=(Trigger("check_failed", "api"),),
        steps=(StepSpec("restart"),),
        budget=Budget(max_runs=max_runs, within_s=within_s),
        backoff=Backoff(initial_s=10.0, factor=2.0, max_s=25.0),
        cooldown_s=cooldown_s,
    )


def run(safety: Safety, spec: PlaybookSpec, start: float, duration: float, outcome: str) -> float:
    """Record one run; returns its end time."""
    safety.begin(spec.service, start)
    safety.finish(spec.service, start + duration, outcome)
    return start + duration


def test_backoff_grows_between_failed_runs_and_is_capped() -> None:
    """After each failed run the next waits 10 s, then 20 s, then the 25 s cap, counted from the run's end."""
    spec = playbook(max_runs=10)
    safety = Safety(resume_after_healthy_s=300)
    assert safety.decide(spec, T0).verdict == "run"
    end = run(safety, spec, T0, 2.0, "aborted")
    for expected_wait in (10.0, 20.0, 25.0):
        early = safety.decide(spec, end + expected_wait - 0.001)
        assert (early.verdict, early.not_before) == ("wait", end + expected_wait)
        assert safety.decide(spec, end + expected_wait).verdict == "run"
        end = run(safety, spec, end + expected_wait, 1.0, "aborted")


def test_cooldown_after_success_outlasts_a_short_backoff() -> None:
    """A successful run holds the next one back for the cooldown even though the backoff is shorter."""
    spec = playbook(cooldown_s=60.0)
    safety = Safety(resume_after_healthy_s=300)
    end = run(safety, spec, T0, 5.0, "succeeded")
    assert safety.decide(spec, end + 30).verdict == "wait"
    assert safety.decide(spec, end + 60).verdict == "run"


def test_one_run_at_a_time_per_service() -> None:
    """While a run holds the service's lock another trigger is refused, and allowed after it ends."""
    spec = playbook()
    safety = Safety(resume_after_healthy_s=300)
    safety.begin("api", T0)
    refused = safety.decide(spec, T0 + 1)
    assert refused.verdict == "refuse" and "already running" in refused.reason
    safety.finish("api", T0 + 2, "aborted")
    assert safety.decide(spec, T0 + 100).verdict == "run"


def test_budget_exhaustion_suspends_once_and_runs_outside_the_window_do_not_count() -> None:
    """The fourth trigger within the window suspends; suspend reports True only the first time."""
    spec = playbook(max_runs=3, within_s=600.0, cooldown_s=0.0)
    safety = Safety(resume_after_healthy_s=300)
    run(safety, spec, T0 - 700, 1.0, "succeeded")  # outside the window by the time it matters
    now = T0
    for _ in range(3):
        decision = safety.decide(spec, now)
        assert decision.verdict == "run"
        now = run(safety, spec, now, 1.0, "succeeded") + 30
    decision = safety.decide(spec, now)
    assert decision.verdict == "suspend" and "3 runs within 10m" in decision.reason
    assert safety.suspend("api", decision.reason) is True
    assert safety.suspend("api", decision.reason) is False
    refused = safety.decide(spec, now + 1)
    assert refused.verdict == "refuse" and "suspended" in refused.reason


def test_suspension_resumes_after_a_healthy_period_and_forgets_the_budget() -> None:
    """A suspended service resumes once healthy for the whole period; an unhealthy moment restarts the count."""
    spec = playbook(max_runs=1, cooldown_s=0.0)
    safety = Safety(resume_after_healthy_s=300)
    end = run(safety, spec, T0, 1.0, "aborted")
    safety.suspend("api", "budget")
    assert safety.note_health("api", True, end + 10) is False
    assert safety.note_health("api", False, end + 200) is False
    assert safety.note_health("api", True, end + 250) is False
    assert safety.note_health("api", True, end + 549) is False
    assert safety.note_health("api", True, end + 550) is True
    assert safety.decide(spec, end + 551).verdict == "run"


def test_operator_reset_lifts_the_suspension_at_once() -> None:
    """``reset`` makes a suspended service healable again without any healthy period."""
    spec = playbook(max_runs=1)
    safety = Safety(resume_after_healthy_s=300)
    run(safety, spec, T0, 1.0, "aborted")
    safety.suspend("api", "budget")
    safety.reset("api")
    assert safety.decide(spec, T0 + 2).verdict == "run"


def test_maintenance_refuses_every_run_even_manual_ones() -> None:
    """A service in maintenance is never healed, not even on a manual request, until maintenance ends."""
    spec = playbook()
    safety = Safety(resume_after_healthy_s=300)
    safety.set_maintenance("api", True)
    assert safety.decide(spec, T0).verdict == "refuse"
    assert safety.decide(spec, T0, manual=True).verdict == "refuse"
    safety.set_maintenance("api", False)
    assert safety.decide(spec, T0).verdict == "run"


def test_unhealthy_dependency_blocks_restarts_but_not_the_run() -> None:
    """With its dependency down a run may only cut traffic, says why, and is exempt from budget and backoff."""
    spec = playbook(max_runs=1)
    safety = Safety(resume_after_healthy_s=300)
    run(safety, spec, T0, 1.0, "aborted")
    decision = safety.decide(spec, T0 + 2, unhealthy_dependencies=["db"])
    assert decision.verdict == "run"
    assert decision.restart_blocked == "not restarting api: its dependency db is unhealthy"
    safety.begin("api", T0 + 2)
    safety.finish("api", T0 + 3, "blocked")
    assert [r.outcome for r in safety.state("api").runs] == ["aborted"]


def test_manual_run_bypasses_suspension_and_backoff() -> None:
    """An operator's explicit run is allowed while suspended or backing off."""
    spec = playbook(max_runs=1)
    safety = Safety(resume_after_healthy_s=300)
    run(safety, spec, T0, 1.0, "aborted")
    safety.suspend("api", "budget")
    assert safety.decide(spec, T0 + 2, manual=True).verdict == "run"


def test_restored_history_counts_against_the_budget() -> None:
    """Runs and a suspension loaded from the journal after a restart apply as if the agent never stopped."""
    spec = playbook(max_runs=2, cooldown_s=0.0)
    safety = Safety(resume_after_healthy_s=300)
    safety.restore(
        "api",
        [RunRecord(T0, T0 + 1, "interrupted"), RunRecord(T0 + 50, T0 + 51, "succeeded"),
         RunRecord(T0 + 60, T0 + 61, "blocked")],
        suspended_reason=None,
        maintenance=False,
    )
    assert safety.decide(spec, T0 + 100).verdict == "suspend"
    safety.restore("api", [], suspended_reason="budget", maintenance=False)
    assert safety.decide(spec, T0 + 100).verdict == "refuse"


def journal_with_runs(tmp_path: Path) -> Journal:
    """A journal on a real state DB file holding one run of each kind for ``api``."""
    db = StateDB(str(tmp_path / "state.db"))
    db.migrate("healers", MIGRATIONS)
    journal = Journal(db.conn)
    journal.start_incident("acted", "api", "heal-api", "check failed", T0, dry_run=False)
    journal.start_step("acted", 0, "restart", "exec", T0)
    journal.finish_step("acted", 0, T0 + 1, "ok")
    journal.finish_incident("acted", T0 + 1, "succeeded")
    journal.start_incident("dry", "api", "heal-api", "manual", T0 + 2, dry_run=True)
    journal.start_step("dry", 0, "restart", "exec", T0 + 2)
    journal.finish_step("dry", 0, T0 + 2, "dry_run")
    journal.finish_incident("dry", T0 + 2, "succeeded")
    journal.record_incident("exhausted", "api", "heal-api", "check failed", T0 + 3, "escalated",
                            "restart budget exhausted: 1 runs within 10m")
    journal.record_incident("denied", "api", "heal-api", "check failed", T0 + 4, "denied", "waiting for a fleet slot")
    return journal


def test_the_journal_counts_only_runs_that_acted(tmp_path: Path) -> None:
    """A budget-exhausted escalation, a fleet denial and a dry run are journaled but use up no budget."""
    journal = journal_with_runs(tmp_path)
    assert journal.runs("api", T0 - 600) == [RunRecord(T0, T0 + 1, "succeeded")]


def test_a_saved_budget_reset_forgets_earlier_runs_after_a_restart(tmp_path: Path) -> None:
    """After ``reset_budget`` a fresh Safety restored from the journal may run again; later runs count again."""
    spec = playbook(max_runs=1, cooldown_s=0.0)
    journal = journal_with_runs(tmp_path)
    journal.set_suspended("api", "restart budget exhausted")
    journal.reset_budget("api", T0 + 5)

    restored = Safety(resume_after_healthy_s=300)
    state = journal.service_state("api")
    restored.restore("api", journal.runs("api", T0 - 600), suspended_reason=state.suspended_reason,
                     maintenance=state.maintenance)
    assert restored.decide(spec, T0 + 6).verdict == "run"

    journal.start_incident("after", "api", "heal-api", "check failed", T0 + 6, dry_run=False)
    journal.start_step("after", 0, "restart", "exec", T0 + 6)
    journal.finish_incident("after", T0 + 7, "aborted")
    assert journal.runs("api", T0 - 600) == [RunRecord(T0 + 6, T0 + 7, "aborted")]
