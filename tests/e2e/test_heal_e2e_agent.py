"""The real agent heals a SIGKILLed service with the default playbook, and readiness follows the cut."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx

from harness.agent import ROOT, AgentProcess
from harness.processes import free_port, wait_for


def test_the_default_playbook_restarts_a_killed_service(tmp_path: Path) -> None:
    """autoheal: pidfd sees the SIGKILL, the exec backend starts the service again, traffic is restored."""
    port, pidfile = free_port(), tmp_path / "web.pid"
    start = ["setsid", "-f", sys.executable, str(ROOT / "examples/webapp/app.py"), "--port", str(port),
             "--pidfile", str(pidfile)]
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"state_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\ninterval: 200ms\n"
        "services:\n  web:\n"
        f"    process: {{pidfile: {pidfile}}}\n"
        f"    checks:\n      - {{name: http, http: {{url: 'http://127.0.0.1:{port}/health'}}, interval: 200ms,"
        " timeout: 500ms, failure_threshold: 1}\n"
        f"    restart: {{exec: {start!r}}}\n"
        "    traffic: {readiness: {}}\n"
        "    autoheal: true\n"
    )
    agent: AgentProcess | None = None
    try:
        os.spawnvp(os.P_WAIT, start[0], start)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200)
        agent = AgentProcess(config, tmp_path)
        wait_for(lambda: httpx.get(f"{agent.url}/-/ready/web").status_code == 200)
        first_pid = int(pidfile.read_text())
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: agent.value('healwatch_playbook_runs_total{outcome="succeeded",playbook="autoheal-web"}') == 1,
                 timeout_s=20)
        assert int(pidfile.read_text()) != first_pid
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        assert httpx.get(f"{agent.url}/-/ready/web").status_code == 200
        assert agent.value('healwatch_traffic_cut{service="web"}') == 0
        events = [e for e in agent.logs() if e.get("incident_id")]
        assert events and len({e["incident_id"] for e in events}) == 1
    finally:
        if agent is not None:
            agent.stop()
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
