"""README's operational guarantees, all at once on one real agent under a run of faults.

Secrets sit where users put them (the API token, a receiver URL with a password and an API key, a value an
exec check reads from ``${ENV}``); meanwhile the receiver is down, then up; hundreds of idle connections and
an anonymous abusive query arrive; a reload with the secret in a wrong place fails. Afterwards: every
notification arrived once at least and in order, the event loop was never held long, and no secret appears
in anything the agent printed or served.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.agent import ROOT, AgentProcess
from harness.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "tok-guarantee-0123456789"
PASSWORD = "hunter2-guarantee"
API_KEY = "s3cret-guarantee-key"
DB_PASSWORD = "db-pw-guarantee-987"
SECRETS = (TOKEN, PASSWORD, API_KEY, DB_PASSWORD)
OUTAGE_ATTEMPTS = 3


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on loopback that refuses the first attempts (an outage), then records every body."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()


def alertnames(receiver: Receiver) -> set[str]:
    """The alert names of every accepted notification."""
    with receiver.lock:
        bodies = list(receiver.bodies)
    return {alert["labels"]["alertname"] for body in bodies for alert in body["alerts"]}


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.attempts += 1
            down = self.server.attempts <= OUTAGE_ATTEMPTS
            if not down:
                self.server.bodies.append(json.loads(body))
        self.send_response(503 if down else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def config_text(workdir: Path) -> str:
    check = "import os, sys; print('db password is', os.environ['DB_PASSWORD']); sys.exit(1)"
    return f"""
state_path: {json.dumps(str(workdir / 'state.db'))}
host: {{enabled: false}}
default_rules: false
rule_files: [rules.yaml]
evaluation: {{interval: 200ms}}
services:
  db:
    checks:
      - name: login
        interval: 500ms
        failure_threshold: 1
        exec: {{command: [{json.dumps(sys.executable)}, -c, {json.dumps(check)}], env: {{DB_PASSWORD: '${{DB_PASSWORD}}'}}}}
notify:
  outbox: {{backoff_initial: 200ms, backoff_max: 1s}}
  receivers:
    - name: hook
      webhook: {{url: "${{HOOK_URL}}", timeout: 2s}}
  route: {{receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}}
"""


RULES = """
groups:
  - name: g
    rules:
      - alert: First
        expr: vector(1)
      - alert: Second
        expr: vector(2)
"""


def open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            break
        sockets.append(sock)
    return sockets


def served(agent: AgentProcess) -> str:
    """Everything the agent serves that a reader could see, concatenated."""
    paths = ["/metrics", "/api/v1/status", "/api/v1/alerts", "/api/v1/rules", "/api/v1/incidents",
             "/api/v1/silences", "/api/v1/openapi.json", "/"]
    return "\n".join(httpx.get(agent.url + path, timeout=5, headers={"Accept": "text/plain"}).text for path in paths)


def cli_output(agent: AgentProcess, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT), HEALWATCH_URL=agent.url, HEALWATCH_TOKEN=TOKEN))
    return result.stdout + result.stderr


def lag_over(agent: AgentProcess, bound: str) -> tuple[float, float]:
    """How many loop-lag probes exceeded ``bound`` seconds, out of how many."""
    total = agent.value("healwatch_event_loop_lag_seconds_count") or 0.0
    within = agent.value(f'healwatch_event_loop_lag_seconds_bucket{{le="{bound}"}}') or 0.0
    return total - within, total


def test_nothing_lost_nothing_stalled_nothing_leaked_under_faults(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outage, idle flood, abusive query and a failed reload: alerts delivered in order, loop free, no secret shown."""
    hook_url = f"http://user:{PASSWORD}@127.0.0.1:{receiver.server_address[1]}/hook?apikey={API_KEY}"
    monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)
    monkeypatch.setenv("HOOK_URL", hook_url)
    monkeypatch.setenv("DB_PASSWORD", DB_PASSWORD)
    (tmp_path / "rules.yaml").write_text(RULES)
    config = tmp_path / "agent.yaml"
    config.write_text(config_text(tmp_path))
    agent = AgentProcess(config, tmp_path)
    try:
        idle = open_idle(agent.port, 300)
        abusive = httpx.get(f"{agent.url}/api/v1/query", params={"query": "sum_over_time(vector(1)[1h:1ms])"},
                            timeout=30)
        assert abusive.status_code in (422, 503)
        for sock in idle:
            sock.close()
        config.write_text(config_text(tmp_path) + "listen: ${HOOK_URL}\n")
        agent.signal(signal.SIGHUP)
        wait_for(lambda: agent.value("healwatch_config_last_reload_successful") == 0, timeout_s=20)
        wait_for(lambda: alertnames(receiver) >= {"First", "Second"}, timeout_s=30)
        wait_for(lambda: "db password is" in httpx.get(f"{agent.url}/api/v1/status", timeout=5).text, timeout_s=20)
        outputs = [served(agent), cli_output(agent, "status"), cli_output(agent, "alerts"),
                   cli_output(agent, "status", "--json"), cli_output(agent, "check", "config", str(config))]
        # The loop-lag probe wakes every 0.25 s: wait until it has watched at least 2 s of this run.
        wait_for(lambda: lag_over(agent, "0.1")[1] >= 8, timeout_s=10)
        over, probes = lag_over(agent, "0.1")
    finally:
        agent.stop()

    assert receiver.attempts > OUTAGE_ATTEMPTS
    groups = [body["groupLabels"] for body in receiver.bodies]
    assert {"alertname": "First"} in groups and {"alertname": "Second"} in groups
    assert probes >= 8 and over <= 1, f"{over} of {probes} loop-lag probes over 100 ms"
    outputs.append(agent.log_path.read_text())
    outputs.append(json.dumps(receiver.bodies))
    leaked = [(secret, i) for i, text in enumerate(outputs) for secret in SECRETS if secret in text]
    assert not leaked, leaked
    assert "db password is <redacted>" in outputs[0]
