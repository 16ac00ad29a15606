"""A signal step reaches the service's current process, restarted outside the agent since healing last saw it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import structlog

from agent.collectors.process import ProcessTracker
from agent.config import CheckConfig, ProcessMatch
from agent.health.checks import Check
from agent.health.results import ProbeResult
from agent.healing import WatchedService
from agent.state import StateDB
from harness.processes import wait_for
from healers.clock import SystemClock
from healers.journal import MIGRATIONS, Journal
from healers.plan import HealingPlan, ServiceBackends
from healers.playbook import PlaybookSpec, StepSpec, Trigger
from healers.runtime import HealingRuntime
from tests.unit.test_heal_runtime import Metrics

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_check_failure_signals_the_process_running_now_not_the_one_tracked_before(tmp_path: Path) -> None:
    """The tracker learned process A; A is replaced by B outside the agent; the playbook's SIGTERM reaches B."""
    pidfile, down = tmp_path / "api.pid", tmp_path / "down"
    first = subprocess.Popen(SLEEPER)
    second: subprocess.Popen[bytes] | None = None
    journal_db = StateDB(str(tmp_path / "state.db"))
    journal_db.migrate("healers", MIGRATIONS)
    journal = Journal(journal_db.conn)
    try:
        pidfile.write_text(str(first.pid))
        tracker = ProcessTracker(ProcessMatch(pidfile=str(pidfile)))
        assert tracker.alive() and tracker.pid == first.pid

        async def probe() -> ProbeResult:
            return ProbeResult(False, 0.0, error="down") if down.exists() else ProbeResult(True, 0.0)

        spec = PlaybookSpec("term-api", "api", (Trigger("check_failed", "api"),),
                            (StepSpec("signal", {"signal": "SIGTERM"}),), cooldown_s=0.0)
        runtime: HealingRuntime | None = None
        check = Check("api", CheckConfig.model_validate({"name": "up", "exec": {"command": ["true"]},
                                                         "failure_threshold": 1}),
                      probe, lambda event: runtime.on_check_changed(event) if runtime is not None else None,
                      started_at=0.0)
        plan = HealingPlan(specs=(spec,), backends={"api": ServiceBackends()},
                           health={"api": WatchedService([check], tracker)})
        runtime = HealingRuntime(plan, journal, clock=SystemClock(), metrics=Metrics(),
                                 log=structlog.get_logger("test"))

        first.terminate()  # restarted outside the agent: A gone, B in the pidfile
        first.wait(5)
        second = subprocess.Popen(SLEEPER)
        pidfile.write_text(str(second.pid))
        assert tracker.pid == first.pid  # nothing refreshed the tracker since

        async def scenario() -> None:
            await runtime.start()
            try:
                await check.run(1.0)
                down.touch()
                await check.run(2.0)
                await asyncio.to_thread(wait_for, lambda: bool(journal.incidents())
                                        and journal.incidents()[0].outcome != "running", 10)
            finally:
                await runtime.stop()

        asyncio.run(scenario())
        [incident] = journal.incidents()
        [step] = journal.steps(incident.id)
        assert (incident.outcome, step.action, step.result, step.error) == ("succeeded", "signal SIGTERM", "ok", "")
        assert second.wait(5) == -signal.SIGTERM
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
                process.wait()
