"""The capture step against real processes: /proc status and a log tail, bounds, redaction, and the held triggers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog

from agent.cli.main import main
from agent.state import StateDB
from exporters.redact import REDACTED, Redactor
from healers.backends.base import ActionContext, ActionResult
from healers.backends.restart import ExecRestartBackend
from healers.capture import capture
from healers.clock import SystemClock
from healers.events import CheckStateChanged
from healers.health import HealthCheck
from healers.journal import MIGRATIONS, Journal
from healers.plan import HealingError, HealingPlan, ServiceBackends
from healers.playbook import PlaybookSpec, StepSpec, Trigger
from healers.runner import Runner, ServiceActions
from healers.runtime import HealingRuntime
from harness.processes import wait_for
from tests.parts.test_api_healing import running_agent_process

SECRET = "s3cr3t-token-value"


def open_journal(path: Path) -> Journal:
    db = StateDB(str(path))
    db.migrate("healers", MIGRATIONS)
    return Journal(db.conn)


def capture_step(argv: Sequence[str], *, timeout_s: float = 5.0, max_bytes: int = 64 << 10) -> StepSpec:
    return StepSpec("capture", {"command": tuple(argv), "env": {}, "timeout_s": timeout_s, "max_bytes": max_bytes},
                    timeout_s=timeout_s + 5.0, on_failure="continue")


def spec(*steps: StepSpec) -> PlaybookSpec:
    return PlaybookSpec("diagnose-api", "api", (Trigger("process_exited", "api"), Trigger("check_failed", "api")),
                        steps, cooldown_s=0.0)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real Python process that writes a log line (holding a secret) every 50 ms."""
    log = tmp_path / "app.log"
    code = ("import itertools, sys, time\n"
            "with open(sys.argv[1], 'a', buffering=1) as log:\n"
            "    for n in itertools.count():\n"
            f"        log.write(f'request {{n}} token={SECRET}\\n'); time.sleep(0.05)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(log)])
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 3, timeout_s=10)
    yield process, log
    process.kill()
    process.wait()


async def _healthy(ctx: ActionContext) -> ActionResult:
    return ActionResult(True, "checks passed")


def test_capture_attaches_the_process_status_and_a_redacted_log_tail(
    tmp_path: Path, app: tuple[subprocess.Popen[bytes], Path]
) -> None:
    """``$PID`` names the real process in /proc; the log tail is kept with the secret redacted, in the journal."""
    process, log = app
    journal = open_journal(tmp_path / "state.db")
    runner = Runner(journal, notify=lambda notice: None, log=structlog.get_logger("test"), clock=time.time,
                    redact=Redactor([SECRET]))
    actions = ServiceActions("api", None, None, _healthy, lambda: process.pid)
    playbook = spec(capture_step(["cat", "/proc/$PID/status"]), capture_step(["tail", "-n", "3", str(log)]),
                    capture_step([sys.executable, "-c", "import os; print(os.environ['HEALWATCH_PID'])"]))
    result = asyncio.run(runner.run(playbook, actions, incident_id="inc1", trigger="test"))
    assert result.outcome == "succeeded", result
    status, tail, env = journal.steps("inc1")
    assert status.result == "ok" and f"Pid:\t{process.pid}\n" in status.attachment
    assert "State:" in status.attachment and "VmRSS:" in status.attachment
    assert tail.result == "ok" and tail.attachment.count("\n") == 3 and "request " in tail.attachment
    assert SECRET not in tail.attachment and f"token={REDACTED}" in tail.attachment
    assert env.attachment.strip() == str(process.pid)


def test_a_capture_naming_pid_fails_when_the_pid_is_unknown(tmp_path: Path) -> None:
    """Without a known pid the command is not run against nothing: the step fails and the run goes on."""
    journal = open_journal(tmp_path / "state.db")
    runner = Runner(journal, notify=lambda notice: None, log=structlog.get_logger("test"), clock=time.time)
    actions = ServiceActions("api", None, None, _healthy, lambda: None)
    playbook = spec(capture_step(["cat", "/proc/$PID/status"]), StepSpec("wait_healthy", timeout_s=5))
    result = asyncio.run(runner.run(playbook, actions, incident_id="inc1", trigger="test"))
    steps = journal.steps("inc1")
    assert result.outcome == "succeeded" and steps[0].result == "failed" and "pid of api is unknown" in steps[0].error
    assert steps[1].result == "ok"


def test_a_command_that_sleeps_forever_is_killed_at_the_timeout_and_keeps_its_output() -> None:
    """The command prints, then hangs: it is killed (with its child) at 0.5 s and its first line is kept."""
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "print('dumping', child.pid, flush=True); time.sleep(600)\n")
    ctx = ActionContext("api", "inc1", 5.5)
    started = time.monotonic()
    result = asyncio.run(capture([sys.executable, "-c", code], ctx, timeout_s=0.5, max_bytes=4096))
    elapsed = time.monotonic() - started
    assert not result.ok and "timed out after 0.5s" in result.detail, result
    assert result.attachment.startswith("dumping ")
    assert 0.5 <= elapsed < 3.0
    child = int(result.attachment.split()[1])
    wait_for(lambda: not Path(f"/proc/{child}").exists() or "State:\tZ" in Path(f"/proc/{child}/status").read_text(),
             timeout_s=5)


def test_a_command_that_prints_forever_is_cut_at_max_bytes() -> None:
    """``yes`` never stops: it is killed once 4096 bytes are kept, long before the timeout."""
    started = time.monotonic()
    result = asyncio.run(capture(["yes", "dump"], ActionContext("api", "inc1", 15.0), timeout_s=10.0, max_bytes=4096))
    assert result.ok and "killed at max_bytes 4096" in result.detail, result
    assert len(result.attachment.encode()) == 4096 and result.attachment.startswith("dump\ndump\n")
    assert time.monotonic() - started < 3.0


@dataclass
class RealService:
    """The health of one real process: alive while it runs, no checks of its own."""

    process: subprocess.Popen[bytes]
    checks: Sequence[HealthCheck] = ()

    def pid(self) -> int | None:
        return self.process.pid

    async def alive(self) -> bool:
        return self.process.poll() is None

    def rearm(self) -> None:
        pass


class Metrics:
    def run_finished(self, playbook: str, outcome: str, duration_s: float | None) -> None:
        pass

    def fleet_denied(self, group: str) -> None:
        pass

    def fleet_store_error(self) -> None:
        pass


def test_triggers_of_the_service_are_held_while_a_capture_runs(
    tmp_path: Path, app: tuple[subprocess.Popen[bytes], Path]
) -> None:
    """A failing check, a process exit and an operator's heal during a 1 s dump start nothing and kill nothing."""
    process, _ = app
    started, restarts = tmp_path / "dump-started", tmp_path / "restarts"
    dump = ("import sys, time\n"
            "open(sys.argv[1], 'w').close()\n"
            "print('dump part 1', flush=True); time.sleep(1.0); print('dump complete', flush=True)\n")
    restart = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write('restart\\n')", str(restarts)]
    playbook = spec(capture_step([sys.executable, "-c", dump, str(started)]), StepSpec("restart", timeout_s=10))
    journal = open_journal(tmp_path / "state.db")
    plan = HealingPlan(specs=(playbook,), backends={"api": ServiceBackends(restart=ExecRestartBackend(restart))},
                       health={"api": RealService(process)})
    runtime = HealingRuntime(plan, journal, clock=SystemClock(), metrics=Metrics(), log=structlog.get_logger("test"))

    async def scenario() -> None:
        await runtime.start()
        try:
            runtime.on_process_exit("api", process.pid)
            while not started.exists():
                await asyncio.sleep(0.01)
            runtime.on_check_changed(CheckStateChanged("api", "http", False, time.time(), "connection refused"))
            runtime.on_process_exit("api", process.pid)
            with pytest.raises(HealingError, match="already running"):
                await runtime.heal_now("api")
            for _ in range(1000):  # bounded: the dump takes 1 s
                await asyncio.sleep(0.01)
                incidents = journal.incidents()
                if incidents and incidents[0].outcome != "running":
                    break
        finally:
            await runtime.stop()

    asyncio.run(scenario())
    incidents = journal.incidents()
    assert len(incidents) == 1 and incidents[0].outcome == "succeeded", incidents
    capture_record, restart_record = journal.steps(incidents[0].id)
    assert capture_record.result == "ok" and capture_record.attachment == "dump part 1\ndump complete\n"
    assert restart_record.result == "ok" and restarts.read_text() == "restart\n"


def test_the_agent_shows_a_capture_in_incidents_and_the_api(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real agent captures the web app's /proc status before restarting it; CLI and API show it, token redacted."""
    token = "capture-api-token-1234"
    printer = [sys.executable, "-c", "import sys; print('dumping with', sys.argv[1])", token]
    playbooks = (
        "playbooks:\n"
        "  - name: diagnose-web\n    service: web\n    steps:\n"
        "      - capture: {exec: [cat, /proc/$PID/status], timeout: 5s, max_bytes: 8KiB}\n"
        f"      - capture: {{exec: {printer!r}}}\n"
        "      - restart: {}\n"
    )
    settings = f"state_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n"
    for agent in running_agent_process(tmp_path, settings, playbooks, token):
        pid = int((tmp_path / "web.pid").read_text())
        monkeypatch.setenv("HEALWATCH_TOKEN", token)
        capfd.readouterr()
        assert main(["heal", "web", "--url", agent.url]) == 0
        healed = capfd.readouterr().out.splitlines()[-1]
        incident_id = healed.split("(incident ")[1].rstrip(")")
        assert main(["incidents", incident_id, "--url", agent.url]) == 0
        shown = capfd.readouterr().out
        assert f"     | Pid:\t{pid}" in shown and "captured output (" in shown
        assert f"     | dumping with {REDACTED}" in shown and token not in shown
        status = httpx.get(f"{agent.url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}).json()
        steps = status["data"]["incidents"][0]["steps"]
        assert [step["action"] for step in steps] == ["capture", "capture", "restart"]
        assert f"Pid:\t{pid}\n" in steps[0]["attachment"] and steps[1]["attachment"] == f"dumping with {REDACTED}\n"


def test_py_spy_dumps_the_real_process_stacks(tmp_path: Path, app: tuple[subprocess.Popen[bytes], Path]) -> None:
    """``py-spy dump --pid $PID`` (the test extra installs it) attaches the app's Python stack to the incident."""
    process, _ = app
    py_spy = Path(sys.executable).with_name("py-spy")
    journal = open_journal(tmp_path / "state.db")
    runner = Runner(journal, notify=lambda notice: None, log=structlog.get_logger("test"), clock=time.time)
    actions = ServiceActions("api", None, None, _healthy, lambda: process.pid)
    playbook = spec(capture_step([str(py_spy), "dump", "--pid", "$PID"], timeout_s=20.0))
    assert asyncio.run(runner.run(playbook, actions, incident_id="inc1", trigger="test")).outcome == "succeeded"
    dump = journal.steps("inc1")[0]
    assert dump.result == "ok", dump
    assert f"Process {process.pid}:" in dump.attachment and f"Thread {process.pid} " in dump.attachment
    assert "<module> (<string>:" in dump.attachment
