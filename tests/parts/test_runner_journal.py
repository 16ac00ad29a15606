"""The playbook runner and its journal, acting through real commands and a real flag-file traffic backend."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import structlog
from structlog.testing import capture_logs

from agent.state import StateDB
from healers.backends.base import ActionContext, ActionResult
from healers.backends.restart import ExecRestartBackend
from healers.backends.traffic import FileTrafficBackend
from healers.journal import MIGRATIONS, Journal
from healers.playbook import PlaybookSpec, StepSpec, Trigger
from healers.runner import Notice, Runner, ServiceActions
from harness.processes import wait_for

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock that advances one second per reading, so journal times are ordered and exact."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def open_journal(path: Path) -> Journal:
    db = StateDB(str(path))
    db.migrate("healers", MIGRATIONS)
    return Journal(db.conn)


async def healthy(ctx: ActionContext) -> ActionResult:
    return ActionResult(True, "checks passed")


def touch_argv(path: Path) -> list[str]:
    """A real command that records that it ran, with the incident id it was given."""
    code = "import os, sys; open(sys.argv[1], 'a').write(os.environ['HEALWATCH_INCIDENT_ID'] + '\\n')"
    return [sys.executable, "-c", code, str(path)]


def spec(*steps: StepSpec, traffic_on_abort: str = "restore", dry_run: bool = False) -> PlaybookSpec:
    return PlaybookSpec(
        name="heal-api", service="api", triggers=(Trigger("check_failed", "api"),), steps=steps,
        dry_run=dry_run, traffic_on_abort=traffic_on_abort,  # type: ignore[arg-type]
    )


CUT = StepSpec("traffic", {"op": "cut"}, timeout_s=5)
RESTORE = StepSpec("traffic", {"op": "restore"}, timeout_s=5)
WAIT = StepSpec("wait_healthy", timeout_s=5)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.journal = open_journal(tmp_path / "state.db")
        self.flag = tmp_path / "api.down"
        self.restarted = tmp_path / "restarted"
        self.notices: list[Notice] = []
        self.runner = Runner(self.journal, notify=self.notices.append, log=structlog.get_logger("test"), clock=Clock())
        self.actions = ServiceActions(
            "api", ExecRestartBackend(touch_argv(self.restarted)), FileTrafficBackend(str(self.flag)), healthy, lambda: None
        )

    def run(self, playbook: PlaybookSpec, **kwargs: object) -> object:
        return asyncio.run(self.runner.run(playbook, self.actions, incident_id="inc1", trigger="test", **kwargs))  # type: ignore[arg-type]

    def steps(self) -> list[tuple[str, str, str]]:
        return [(s.action, s.backend, s.result) for s in self.journal.steps("inc1")]


def test_full_run_acts_in_order_and_journals_every_step_with_the_incident_id(tmp_path: Path) -> None:
    """cut -> restart -> wait_healthy -> restore really runs, is journaled, and every log line names the incident."""
    setup = Setup(tmp_path)
    with capture_logs() as logs:
        result = setup.run(spec(CUT, StepSpec("restart", timeout_s=10), WAIT, RESTORE))
    assert result.outcome == "succeeded"  # type: ignore[attr-defined]
    assert setup.restarted.read_text() == "inc1\n"
    assert not setup.flag.exists()
    assert setup.steps() == [
        ("traffic cut", "file", "ok"), ("restart", "exec", "ok"), ("wait_healthy", "checks", "ok"),
        ("traffic restore", "file", "ok"),
    ]
    incident = setup.journal.incident("inc1")
    assert incident is not None and incident.outcome == "succeeded" and incident.ended_at is not None
    assert setup.journal.service_state("api").traffic_cut_by is None
    assert logs and all(line.get("incident_id") == "inc1" for line in logs)


def test_abort_after_cut_restores_traffic(tmp_path: Path) -> None:
    """A failing restart aborts the run, and the traffic it cut is restored as an extra journaled step."""
    setup = Setup(tmp_path)
    failing = StepSpec("exec", {"command": [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]}, timeout_s=10)
    result = setup.run(spec(CUT, failing, RESTORE))
    assert result.outcome == "aborted" and not result.traffic_left_cut  # type: ignore[attr-defined]
    assert not setup.flag.exists()
    assert setup.steps() == [("traffic cut", "file", "ok"), ("exec", "exec", "failed"), ("traffic restore", "file", "ok")]
    failed = setup.journal.steps("inc1")[1]
    assert "exited with status 3" in failed.error and "boom" in failed.output_tail


def test_abort_with_keep_leaves_traffic_cut_and_raises_a_critical_notice(tmp_path: Path) -> None:
    """``traffic_on_abort: keep`` never leaves a service out of rotation silently: one critical notice says so."""
    setup = Setup(tmp_path)
    failing = StepSpec("exec", {"command": [sys.executable, "-c", "raise SystemExit(1)"]}, timeout_s=10)
    result = setup.run(spec(CUT, failing, RESTORE, traffic_on_abort="keep"))
    assert result.traffic_left_cut  # type: ignore[attr-defined]
    assert setup.flag.exists()
    assert [(n.severity, n.incident_id) for n in setup.notices] == [
        ("info", "inc1"), ("warning", "inc1"), ("critical", "inc1")]  # started, step failed, left out of rotation
    assert setup.journal.service_state("api").traffic_cut_by == "inc1"


def test_step_timeout_kills_the_command_and_continue_goes_on(tmp_path: Path) -> None:
    """A step over its timeout is journaled as timeout; with on_failure continue the next steps still run."""
    setup = Setup(tmp_path)
    slow = StepSpec("exec", {"command": [sys.executable, "-c", "import time; time.sleep(30)"]}, timeout_s=0.3,
                    on_failure="continue")
    result = setup.run(spec(slow, StepSpec("restart", timeout_s=10)))
    assert result.outcome == "succeeded"  # type: ignore[attr-defined]
    assert [s[2] for s in setup.steps()] in (["timeout", "ok"], ["failed", "ok"])
    assert setup.restarted.exists()


def test_escalating_step_ends_the_run_as_escalated(tmp_path: Path) -> None:
    """A failed step with on_failure escalate stops the run with outcome escalated, and later steps never run."""
    setup = Setup(tmp_path)
    failing = StepSpec("exec", {"command": [sys.executable, "-c", "raise SystemExit(2)"]}, timeout_s=10,
                       on_failure="escalate")
    result = setup.run(spec(failing, StepSpec("restart", timeout_s=10)))
    assert result.outcome == "escalated"  # type: ignore[attr-defined]
    assert not setup.restarted.exists()
    assert setup.steps() == [("exec", "exec", "failed")]


def test_dry_run_executes_nothing_but_journals_every_step(tmp_path: Path) -> None:
    """In dry run no command runs and no flag file appears, yet every step is journaled as dry_run."""
    setup = Setup(tmp_path)
    exec_step = StepSpec("exec", {"command": touch_argv(tmp_path / "exec-ran")}, timeout_s=10)
    result = setup.run(spec(CUT, StepSpec("restart", timeout_s=10), exec_step, WAIT, RESTORE, dry_run=True))
    assert result.outcome == "succeeded"  # type: ignore[attr-defined]
    assert not setup.restarted.exists() and not (tmp_path / "exec-ran").exists() and not setup.flag.exists()
    assert [s[2] for s in setup.steps()] == ["dry_run"] * 5
    incident = setup.journal.incident("inc1")
    assert incident is not None and incident.dry_run
    assert all(s.error == "" for s in setup.journal.steps("inc1"))


def test_blocked_restart_only_cuts_traffic_and_journals_why(tmp_path: Path) -> None:
    """With a dependency down the run cuts traffic, restarts nothing, and each skipped step names the reason."""
    setup = Setup(tmp_path)
    reason = "not restarting api: its dependency db is unhealthy"
    result = setup.run(spec(CUT, StepSpec("restart", timeout_s=10), WAIT, RESTORE), restart_blocked=reason)
    assert result.outcome == "blocked"  # type: ignore[attr-defined]
    assert setup.flag.exists() and not setup.restarted.exists()
    assert [s[2] for s in setup.steps()] == ["ok", "skipped", "skipped", "skipped"]
    assert {s.error for s in setup.journal.steps("inc1")[1:]} == {reason}


# A playbook run in its own process, so the test can SIGKILL it mid-run like a crashing agent.
AGENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time, structlog
    from healers.backends.traffic import FileTrafficBackend
    from healers.playbook import StepSpec
    from healers.runner import Runner, ServiceActions
    from tests.parts.test_runner_journal import open_journal, spec, healthy, CUT, RESTORE

    async def main():
        journal = open_journal(sys.argv[1])
        runner = Runner(journal, notify=print, log=structlog.get_logger(), clock=time.time)
        hang = StepSpec("exec", {"command": [sys.executable, "-c", "import time; time.sleep(60)"]}, timeout_s=60)
        actions = ServiceActions("api", None, FileTrafficBackend(sys.argv[2]), healthy, lambda: None)
        await runner.run(spec(CUT, hang, RESTORE, traffic_on_abort=sys.argv[3]), actions,
                         incident_id="killed", trigger="test")

    asyncio.run(main())
    """
)


def run_and_kill_after_cut(tmp_path: Path, traffic_on_abort: str) -> Path:
    """Start a playbook in a child process and SIGKILL it once traffic is cut and the next step is running."""
    db, flag = tmp_path / "state.db", tmp_path / "api.down"
    child = subprocess.Popen(
        [sys.executable, "-c", AGENT_SCRIPT, str(db), str(flag), traffic_on_abort],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: flag.exists() and db.exists() and [s.result for s in open_journal(db).steps("killed")]
                 == ["ok", "running"], timeout_s=15)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(5)
    return flag


def recover(tmp_path: Path, traffic_on_abort: str) -> tuple[Journal, list[Notice], list[str]]:
    journal = open_journal(tmp_path / "state.db")
    notices: list[Notice] = []
    runner = Runner(journal, notify=notices.append, log=structlog.get_logger("test"), clock=Clock())
    actions = ServiceActions("api", None, FileTrafficBackend(str(tmp_path / "api.down")), healthy, lambda: None)
    playbooks = {"heal-api": spec(CUT, RESTORE, traffic_on_abort=traffic_on_abort)}
    closed = asyncio.run(runner.recover_interrupted(playbooks, lambda service: actions))
    return journal, notices, closed


def test_agent_killed_after_cut_is_marked_interrupted_and_traffic_restored(tmp_path: Path) -> None:
    """SIGKILL mid-playbook leaves a running incident; the next start marks it interrupted and restores traffic."""
    flag = run_and_kill_after_cut(tmp_path, "restore")
    assert flag.exists()
    journal, notices, closed = recover(tmp_path, "restore")
    assert closed == ["killed"]
    assert not flag.exists()
    incident = journal.incident("killed")
    assert incident is not None and incident.outcome == "interrupted" and "traffic restored" in incident.detail
    assert [(s.action, s.result) for s in journal.steps("killed")] == [
        ("traffic cut", "ok"), ("exec", "interrupted"), ("traffic restore", "ok")
    ]
    assert journal.service_state("api").traffic_cut_by is None and notices == []
    assert journal.running_incidents() == []


def test_agent_killed_after_cut_with_keep_escalates_loudly(tmp_path: Path) -> None:
    """With traffic_on_abort keep, recovery leaves the flag in place and sends one critical notice."""
    flag = run_and_kill_after_cut(tmp_path, "keep")
    journal, notices, closed = recover(tmp_path, "keep")
    assert closed == ["killed"] and flag.exists()
    assert [(n.severity, n.incident_id) for n in notices] == [("critical", "killed")]
    incident = journal.incident("killed")
    assert incident is not None and incident.outcome == "interrupted" and "left cut" in incident.detail
