"""The healing runtime in-process against real HTTP service processes that really die."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from agent.health.checks import Check
from agent.health.probes import make_probe
from agent.httpclient import new_http_client
from agent.config import AgentConfig
from agent.healing import Healing
from agent.state import StateDB
from healers.events import CheckStateChanged
from healers.journal import MIGRATIONS, IncidentRecord, StepRecord
from healers.plan import HealingError
from healers.runner import Notice
from rules.model import Alert, AlertState, Labels
from harness.processes import free_port, until

pytestmark = pytest.mark.timeout(60)

# The service: answers /health, writes its pidfile, and exits by itself after CRASH_AFTER seconds if given.
SERVICE = """
import http.server, os, sys, threading
port, pidfile, crash_after = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
with open(pidfile + ".tmp", "w") as f: f.write(str(os.getpid()))
os.replace(pidfile + ".tmp", pidfile)
if crash_after > 0: threading.Timer(crash_after, lambda: os._exit(1)).start()
server.serve_forever()
"""

# The restart command: counts its runs, starts the service detached and returns at once.
STARTER = """
import subprocess, sys, time
service, port, pidfile, crash_after, count_file = sys.argv[1:6]
with open(count_file, "a") as f: f.write(f"{time.time()}\\n")
subprocess.Popen([sys.executable, service, port, pidfile, crash_after], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


class Service:
    """A real HTTP service on a free port, restarted through STARTER by the exec backend."""

    def __init__(self, tmp_path: Path, name: str, crash_after: float = 0.0) -> None:
        (tmp_path / "service.py").write_text(SERVICE)
        (tmp_path / "starter.py").write_text(STARTER)
        self.port = free_port()
        self.pidfile = tmp_path / f"{name}.pid"
        self.starts = tmp_path / f"{name}.starts"
        self.start_argv = [sys.executable, str(tmp_path / "starter.py"), str(tmp_path / "service.py"),
                           str(self.port), str(self.pidfile), str(crash_after), str(self.starts)]

    def start_count(self) -> int:
        return len(self.starts.read_text().splitlines()) if self.starts.exists() else 0

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None

    async def answers(self) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def service_config(service: Service, **extra: Any) -> dict[str, Any]:
    return {
        "process": {"pidfile": str(service.pidfile)},
        "checks": [{"name": "http", "http": {"url": f"http://127.0.0.1:{service.port}/"}, "interval": "100ms",
                    "timeout": "500ms", "failure_threshold": 1}],
        "restart": {"exec": service.start_argv},
        **extra,
    }


class Harness:
    """Healing wired as the daemon wires it: state DB, real checks calling the runtime's hook on each change."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.config = AgentConfig.model_validate(config)
        self.db = StateDB(str(tmp_path / "state.db"))
        self.db.migrate("healers", MIGRATIONS)
        self.client = new_http_client()
        self.checks = {
            name: [Check(name, check, make_probe(check, http_client=self.client), self.check_changed, started_at=0.0)
                   for check in svc.checks]
            for name, svc in self.config.services.items()
        }
        self.notices: list[Notice] = []
        self.healing = Healing(self.config, self.db.conn, self.checks, notify=self.notices.append)
        self.runtime = self.healing.runtime

    def check_changed(self, event: CheckStateChanged) -> None:
        self.healing.runtime.on_check_changed(event)

    def metric(self, name: str, **labels: str) -> float | None:
        for family in self.healing.families():
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    async def first_run(self, service: str) -> tuple[IncidentRecord, list[StepRecord]]:
        """The service's first journaled run, once it has ended, and its steps."""
        journal = self.runtime.journal
        await until(lambda: journal.incidents(service=service))
        first = journal.incidents(service=service)[0]
        await until(lambda: (journal.incident(first.id) or first).outcome != "running")
        return journal.incident(first.id) or first, journal.steps(first.id)

    async def close(self) -> None:
        await self.healing.stop()
        await self.client.aclose()
        self.db.close()


def test_sigkilled_service_is_detected_at_once_restarted_and_healthy_again(tmp_path: Path) -> None:
    """SIGKILL is noticed through the pidfd within 50 ms, the exec backend restarts it, and HTTP answers again."""
    service = Service(tmp_path, "web")
    playbook = {"name": "heal-web", "when": [{"process_exited": {"service": "web"}}],
                "steps": [{"restart": {}}, {"wait_healthy": {"timeout": "10s"}}], "cooldown": "1s"}
    harness = Harness(tmp_path, {"services": {"web": service_config(service)}, "playbooks": [playbook]})

    async def scenario() -> None:
        await asyncio.create_subprocess_exec(*service.start_argv)
        await until(service.answers)
        await harness.healing.start()
        try:
            old_pid = service.pid()
            watcher = harness.healing.services["web"].watcher
            assert watcher is not None
            await until(lambda: watcher.watching == old_pid)
            killed_at = time.time()
            service.kill()
            await until(lambda: harness.runtime.journal.incidents(service="web"), timeout_s=5)
            incident, steps = await harness.first_run("web")
            assert incident.started_at - killed_at < 0.05
            assert incident.outcome == "succeeded"
            assert await service.answers() and service.pid() != old_pid
            assert [(s.action, s.result) for s in steps] == [("restart", "ok"), ("wait_healthy", "ok")]
            assert harness.metric("healwatch_playbook_runs_total", playbook="heal-web", outcome="succeeded") == 1
        finally:
            await harness.close()
            service.kill()

    asyncio.run(scenario())


def test_crash_looping_service_stops_at_the_budget_with_one_escalation(tmp_path: Path) -> None:
    """A service dying 0.3 s after each start is restarted 3 times, then suspended with exactly one critical notice."""
    service = Service(tmp_path, "loop", crash_after=0.3)
    playbook = {
        "name": "heal-loop", "when": [{"process_exited": {"service": "loop"}}],
        "steps": [{"restart": {}}, {"wait_healthy": {"timeout": "5s"}}],
        "budget": {"max_runs": 3, "within": "10m"}, "backoff": {"initial": "100ms", "factor": 2, "max": "1s"},
        "cooldown": "100ms",
    }
    harness = Harness(tmp_path, {"services": {"loop": service_config(service)}, "playbooks": [playbook]})

    async def scenario() -> None:
        await harness.healing.start()
        try:
            await asyncio.create_subprocess_exec(*service.start_argv)
            await until(lambda: harness.metric("healwatch_autoheal_suspended", service="loop") == 1, timeout_s=30)
            critical = [n for n in harness.notices if n.severity == "critical"]
            assert [(n.severity, n.service) for n in critical] == [("critical", "loop")]
            assert "restart budget exhausted: 3 runs within 10m" in critical[0].summary
            recovered = [n for n in harness.notices if n.summary == "loop recovered: heal-loop succeeded"]
            assert len(recovered) == 3
            assert service.start_count() == 1 + 3
            outcomes = [i.outcome for i in harness.runtime.journal.incidents(service="loop")]
            assert outcomes == ["escalated", "succeeded", "succeeded", "succeeded"]
            # Suspended: the next crash is not healed and raises no further notice.
            notices_before = len(harness.notices)
            await until(lambda: not psutil.pid_exists(service.pid() or 0)
                        or psutil.Process(service.pid()).status() == psutil.STATUS_ZOMBIE, timeout_s=5)
            await asyncio.sleep(0.3)  # give a wrongful restart the time it would take to show up
            assert service.start_count() == 4 and len(harness.notices) == notices_before
            assert harness.runtime.journal.service_state("loop").suspended_reason is not None
        finally:
            await harness.close()
            service.kill()

    asyncio.run(scenario())


def test_service_whose_dependency_is_down_is_not_restarted(tmp_path: Path) -> None:
    """With its dependency's check failing, api's failing check cuts traffic but never runs the restart."""
    api, db = Service(tmp_path, "api"), Service(tmp_path, "db")
    flag = tmp_path / "api.down"
    config = {
        "services": {
            "api": service_config(api, depends_on=["db"], traffic={"file": {"path": str(flag)}}, autoheal=True),
            "db": service_config(db),
        },
    }
    harness = Harness(tmp_path, config)

    async def scenario() -> None:
        await harness.healing.start()
        try:
            for check in [*harness.checks["db"], *harness.checks["api"]]:  # neither service runs: both fail
                await check.run(time.time())
            incident, steps = await harness.first_run("api")
            assert incident.outcome == "blocked"
            assert [(s.action, s.result) for s in steps] == [
                ("traffic cut", "ok"), ("restart", "skipped"), ("wait_healthy", "skipped"), ("traffic restore", "skipped")
            ]
            assert steps[1].error == "not restarting api: its dependency db is unhealthy"
            assert flag.exists() and api.start_count() == 0
            assert harness.metric("healwatch_traffic_cut", service="api") == 1
        finally:
            await harness.close()

    asyncio.run(scenario())


def test_maintenance_is_persisted_and_manual_dry_run_only_journals(tmp_path: Path) -> None:
    """Maintenance survives a new runtime and blocks even a manual run; after it, a manual dry run acts on nothing."""
    service = Service(tmp_path, "web")
    config = {"services": {"web": service_config(service, autoheal=True)}}
    first = Harness(tmp_path, config)
    first.runtime.set_maintenance("web", True)

    async def scenario() -> None:
        second = Harness(tmp_path, config)
        await second.healing.start()
        try:
            with pytest.raises(HealingError, match="web is in maintenance"):
                await second.runtime.heal_now("web")
            second.runtime.set_maintenance("web", False)
            result = await second.runtime.heal_now("web", dry_run=True)
            assert result.outcome == "succeeded" and service.start_count() == 0
            incident = second.runtime.journal.incident(result.incident_id)
            assert incident is not None and incident.dry_run and incident.trigger == "manual"
            assert [s.result for s in second.runtime.journal.steps(result.incident_id)] == ["dry_run", "dry_run"]
            assert second.metric("healwatch_playbook_runs_total", playbook="autoheal-web", outcome="dry_run") == 1
        finally:
            await second.close()
            await first.close()

    asyncio.run(scenario())


def test_an_alert_heal_deferred_by_cooldown_is_dropped_once_the_alert_resolved(tmp_path: Path) -> None:
    """Firing again during the cooldown defers a heal; the alert resolving before the retry cancels it."""
    service = Service(tmp_path, "web")
    playbook = {"name": "heal-web", "when": [{"alert": {"alertname": "WebDown", "service": "web"}}],
                "steps": [{"restart": {}}, {"wait_healthy": {"timeout": "10s"}}], "cooldown": "1s",
                "backoff": {"initial": "100ms", "factor": 1}}
    harness = Harness(tmp_path, {"services": {"web": service_config(service)}, "playbooks": [playbook]})
    labels = Labels({"alertname": "WebDown", "service": "web"})

    def alert(resolved: bool) -> Alert:
        now = time.time()
        state = AlertState.INACTIVE if resolved else AlertState.FIRING
        return Alert(labels, {}, 1.0, state, now, fired_at=now, resolved_at=now if resolved else None)

    async def scenario() -> None:
        await harness.healing.start()
        try:
            harness.runtime.on_alerts([alert(resolved=False)])
            await until(lambda: any(i.outcome == "succeeded" for i in harness.runtime.journal.incidents(service="web")))
            harness.runtime.on_alerts([alert(resolved=False)])  # resent while firing, inside the cooldown: deferred
            await until(lambda: harness.runtime.deferrals.pending("web"))
            harness.runtime.on_alerts([alert(resolved=True)])
            await until(lambda: not harness.runtime.deferrals.pending("web"), timeout_s=5)
            await asyncio.sleep(0.3)  # the dropped retry would have started its run by now
            assert service.start_count() == 1
            assert len(harness.runtime.journal.incidents(service="web")) == 1
        finally:
            await harness.close()
            service.kill()

    asyncio.run(scenario())
