"""Check roles against a real app that takes seconds to start, restarted by the real exec backend (issue #17)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent.config import parse_config
from agent.daemon import Agent
from agent.health.checks import Check
from harness.processes import free_port, until, wait_for

# The app: writes its pidfile at once, sleeps for the seconds in ./delay (if any), then answers HTTP;
# /ready answers 503 while ./unready exists.
APP = """\
import http.server, os, pathlib, sys, time
port, workdir = int(sys.argv[1]), pathlib.Path(sys.argv[2])
(workdir / "app.pid").write_text(str(os.getpid()))
delay = workdir / "delay"
time.sleep(float(delay.read_text()) if delay.exists() else 0)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if self.path == "/ready" and (workdir / "unready").exists() else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

# The exec restart backend's command: kill the app the pidfile names, start a new one detached and name it
# in the pidfile before returning, as a supervisor does.
RESTART = """\
import os, pathlib, signal, subprocess, sys
app, port, workdir = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
try:
    os.kill(int((workdir / "app.pid").read_text()), signal.SIGKILL)
except (FileNotFoundError, ValueError, ProcessLookupError):
    pass
child = subprocess.Popen([sys.executable, app, port, str(workdir)], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
(workdir / "app.pid").write_text(str(child.pid))
"""


class SlowApp:
    """The app in ``workdir``, started once fast; ``delay`` makes every later start slow."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        (workdir / "app.py").write_text(APP)
        (workdir / "restart.py").write_text(RESTART)
        self.restart = [sys.executable, str(workdir / "restart.py"), str(workdir / "app.py"), str(self.port),
                        str(workdir)]
        subprocess.run(self.restart, check=True, timeout=10)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200)

    def pid(self) -> int:
        return int((self.workdir / "app.pid").read_text())

    def delay(self, seconds: float) -> None:
        (self.workdir / "delay").write_text(str(seconds))

    def kill(self) -> None:
        try:
            os.kill(self.pid(), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


@pytest.fixture
def app(tmp_path: Path) -> Iterator[SlowApp]:
    started = SlowApp(tmp_path)
    yield started
    started.kill()


def run_agent(tmp_path: Path, app: SlowApp, checks: str, body: Callable[[Agent], Awaitable[None]]) -> None:
    """An in-process agent watching ``app`` with ``checks``; a playbook restarts it on an exit or a failed check."""
    url = f"http://127.0.0.1:{app.port}"
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\nhost: {{enabled: false}}\ndefault_rules: false\n"
        "services:\n  web:\n"
        f"    process: {{pidfile: {tmp_path / 'app.pid'}}}\n"
        f"    restart: {{exec: {app.restart!r}}}\n"
        "    checks:\n" + checks.replace("URL", url) +
        "playbooks:\n  - name: restart-web\n    service: web\n"
        "    when: [{process_exited: {service: web}}, {check_failed: {service: web}}]\n"
        "    steps: [{restart: {}}]\n"
        "    budget: {max_runs: 3, within: 30m}\n    backoff: {initial: 0s}\n    cooldown: 0s\n"
    )

    async def main() -> None:
        agent = Agent(parse_config(config.read_text(), str(config)), config_path=str(config))
        await agent.start()
        try:
            async with asyncio.timeout(40):
                await until(lambda: agent.ready("web"), timeout_s=15)
                await body(agent)
        finally:
            await agent.stop()

    asyncio.run(main())


def check(agent: Agent, name: str) -> Check:
    return next(check for check in agent.jobset.checks["web"] if check.name == name)


def incidents(agent: Agent) -> list[tuple[str, str]]:
    """(trigger, outcome) of each incident, oldest first."""
    assert agent.healing is not None
    return [(i.trigger, i.outcome) for i in reversed(agent.healing.runtime.journal.incidents(service="web"))]


STARTUP = "      - {name: boot, role: startup, http: {url: 'URL/health'}, interval: 200ms, failure_threshold: %d}\n"
LIVENESS = "      - {name: live, role: liveness, http: {url: 'URL/health'}, interval: 200ms, failure_threshold: 3}\n"


def test_a_slow_start_after_a_restart_is_not_restarted_again(tmp_path: Path, app: SlowApp) -> None:
    """Killed, the app is restarted once; its 2 s start fails no liveness probe, as the startup check gates them."""

    async def body(agent: Agent) -> None:
        app.delay(2)
        first = app.pid()
        app.kill()
        await until(lambda: incidents(agent) == [(f"process {first} of web exited", "succeeded")], timeout_s=10)
        restarted = app.pid()
        live = check(agent, "live")
        # Answering, the startup check passed and the liveness check probed the new process three times.
        await until(lambda: live.probed and live.consecutive_successes >= 3, timeout_s=15)
        assert check(agent, "boot").runs_total["failure"] >= 5  # the start was slow: a second of failed probes
        assert app.pid() == restarted and live.healthy
        assert incidents(agent) == [(f"process {first} of web exited", "succeeded")]

    run_agent(tmp_path, app, STARTUP % 50 + LIVENESS, body)


def test_a_start_that_never_answers_heals_after_the_startup_budget(tmp_path: Path, app: SlowApp) -> None:
    """A restarted app that never answers: failure_threshold x interval (5 x 200 ms) later the startup check heals."""

    async def body(agent: Agent) -> None:
        app.delay(3600)
        first = app.pid()
        app.kill()
        assert agent.healing is not None
        journal = agent.healing.runtime.journal
        await until(lambda: len(incidents(agent)) >= 2, timeout_s=10)
        exited, boot = list(reversed(journal.incidents(service="web")))[:2]
        assert exited.trigger == f"process {first} of web exited"
        assert boot.trigger.startswith("check web/boot failed: ")
        assert exited.ended_at is not None
        waited = boot.started_at - exited.ended_at
        # Five failed probes 200 ms apart: at least 0.8 s after the restart; on a busy machine a little more.
        assert 0.8 <= waited <= 4.0, waited
        assert not check(agent, "live").probed  # the gate never let it probe the process that does not answer

    run_agent(tmp_path, app, STARTUP % 5 + LIVENESS, body)


def test_a_readiness_failure_makes_the_service_unready_and_heals_nothing(tmp_path: Path, app: SlowApp) -> None:
    """/ready answering 503 turns /-/ready/web 503 and starts no playbook; it is ready again once /ready answers."""
    readiness = "      - {name: ready, role: readiness, http: {url: 'URL/ready'}, interval: 200ms, failure_threshold: 1}\n"

    async def body(agent: Agent) -> None:
        assert agent.server is not None
        ready_url = f"http://127.0.0.1:{agent.server.port}/-/ready/web"
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(ready_url)).status_code == 200
            (tmp_path / "unready").touch()
            began = time.monotonic()
            await until(lambda: check(agent, "ready").runs_total["failure"] >= 5, timeout_s=10)
            assert (await client.get(ready_url)).status_code == 503
            assert incidents(agent) == [] and time.monotonic() - began >= 0.8
            (tmp_path / "unready").unlink()
            await until(lambda: agent.ready("web"), timeout_s=10)
            assert (await client.get(ready_url)).status_code == 200 and incidents(agent) == []

    run_agent(tmp_path, app, STARTUP % 5 + LIVENESS + readiness, body)
