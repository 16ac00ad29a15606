"""A real agent ramps a real HAProxy server back in, its guard reading the web app's scraped error counter."""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.cli.main import main
from harness.agent import AgentProcess, WebApp
from harness.processes import free_port, require_binary, stop, wait_for

pytestmark = pytest.mark.timeout(90)

TOKEN = "ramp-e2e-token"
GUARD = 'sum(rate(http_requests_total{service="$service",code="500"}[2s])) > 0'

HAPROXY_CONF = """
global
  stats socket {socket} level admin

defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s

frontend web
  bind 127.0.0.1:{frontend}
  default_backend api

backend api
  balance roundrobin
  http-response set-header X-Server %s
  server s1 127.0.0.1:{s1} weight 100
  server s2 127.0.0.1:{s2} weight 100
"""


class Clients:
    """Requests through HAProxy without pause from a thread, counted by the server that answered and its status."""

    def __init__(self, frontend: str) -> None:
        self.frontend = frontend
        self.answers: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Clients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with httpx.Client(base_url=self.frontend, headers={"Connection": "close"}, timeout=2) as client:
            while not self._stop.is_set():
                response = client.get("/")
                self.answers.append((time.monotonic(), response.headers.get("X-Server", "?"), response.status_code))

    def since(self, moment: float) -> collections.Counter[str]:
        return collections.Counter(server for at, server, _ in list(self.answers) if at >= moment)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AgentProcess, WebApp, str]]:
    """Two web apps behind HAProxy (s1 is the healed service ``web``), and an agent scraping s1 every 300 ms."""
    binary = require_binary("haproxy")
    web1, web2 = WebApp(tmp_path / "web1.pid"), WebApp(tmp_path / "web2.pid")
    socket, frontend = tmp_path / "admin.sock", free_port()
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(socket=socket, frontend=frontend, s1=web1.port, s2=web2.port))
    haproxy = None
    agent = None
    try:
        with open(tmp_path / "haproxy.log", "wb") as log:
            haproxy = subprocess.Popen([binary, "-f", str(conf), "-db"], stdout=log, stderr=log)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{frontend}/health", timeout=1).status_code == 200)
        config = tmp_path / "agent.yaml"
        config.write_text(
            f"state_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n"
            "services:\n  web:\n"
            f"    scrape: {{url: 'http://127.0.0.1:{web1.port}/metrics', interval: 300ms, timeout: 300ms}}\n"
            f"    traffic: {{haproxy: {{socket: {socket}, backend: api, server: s1}}}}\n"
            "playbooks:\n  - name: ramp-web\n    service: web\n    steps:\n"
            "      - traffic: cut\n"
            f"      - traffic: {{restore: {{ramp: [10, 50, 100], hold: 1500ms, guard: '{GUARD}'}}}}\n"
        )
        monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)
        agent = AgentProcess(config, tmp_path)
        yield agent, web1, f"http://127.0.0.1:{frontend}"
    finally:
        if agent is not None:
            agent.stop()
        if haproxy is not None:
            stop(haproxy)
        web1.stop()
        web2.stop()


def heal(agent: AgentProcess, capfd: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], float]:
    """``healwatch heal web``: its exit code, the incident as the API shows it, and how long the heal took."""
    capfd.readouterr()
    started = time.monotonic()
    code = main(["heal", "web", "--url", agent.url])
    took = time.monotonic() - started
    capfd.readouterr()
    incident_id = httpx.get(f"{agent.url}/api/v1/incidents").json()["data"]["incidents"][0]["id"]
    incident = httpx.get(f"{agent.url}/api/v1/incidents/{incident_id}").json()["data"]
    return code, incident, took


def test_a_healthy_service_is_ramped_back_in_stage_by_stage(
    setup: tuple[AgentProcess, WebApp, str], capfd: pytest.CaptureFixture[str]
) -> None:
    """No 5xx in the scraped series: 10%, 50%, 100% are each held 1.5 s and s1 ends with its share of requests."""
    agent, _, frontend = setup
    with Clients(frontend) as clients:
        code, incident, took = heal(agent, capfd)
        after = time.monotonic()
        wait_for(lambda: sum(clients.since(after).values()) >= 40)
    steps = incident["steps"]
    assert code == 0 and incident["outcome"] == "succeeded", incident
    assert [step["action"] for step in steps] == ["traffic cut", "traffic ramp 10/50/100%"]
    ramp = steps[1]
    assert "at 10%: weight 10 (initial 100)" in ramp["attachment"] and "guard empty" in ramp["attachment"]
    assert 4.5 <= ramp["durationSeconds"] < 9.0
    assert 0.3 <= clients.since(after)["s1"] / sum(clients.since(after).values()) <= 0.7
    print(f"healthy ramp through the agent: heal took {took:.2f}s, ramp step {ramp['durationSeconds']:.2f}s")


def test_errors_at_the_first_stage_fire_the_guard_and_traffic_is_cut_again(
    setup: tuple[AgentProcess, WebApp, str], capfd: pytest.CaptureFixture[str]
) -> None:
    """s1 answers 500 once it gets its 10%: the scraped rate fires the guard, s1 is cut again and the run escalates."""
    agent, web1, frontend = setup
    assert httpx.post(f"{web1.url}/control/sick?mode=errors").status_code == 200
    with Clients(frontend) as clients:
        code, incident, took = heal(agent, capfd)
        after = time.monotonic()
        wait_for(lambda: sum(clients.since(after).values()) >= 40)
        assert clients.since(after)["s1"] == 0
    assert code != 0 and incident["outcome"] == "escalated", incident
    ramp = incident["steps"][1]
    assert ramp["result"] == "failed" and "the guard fired at 10%" in ramp["error"], ramp
    assert "guard 1 series" in ramp["attachment"] and "set to maint" in ramp["attachment"].splitlines()[-1]
    assert any(server == "s1" and status == 500 for _, server, status in clients.answers)
    status = httpx.get(f"{agent.url}/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()["data"]
    healing = status["services"]["web"]["healing"]
    assert healing["trafficCutBy"] == incident["id"] and "escalated" in healing["suspendedReason"], healing
    print(f"guard case through the agent: heal took {took:.2f}s, ramp step {ramp['durationSeconds']:.2f}s")
