"""Crash safety end to end: SIGKILL the agent while a service is down and its playbook is mid-way, then restart it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.agent import ROOT, AgentProcess, WebApp
from harness.processes import free_port, wait_for

# Starts the app detached, but only after a pause longer than this test: the playbook stays in its restart step.
# Each run appends its pid, so the test can kill every one of them, also those of a run it did not expect.
SLOW_RESTART = """\
import os, subprocess, sys, time
with open(sys.argv[1], "a") as pids:
    pids.write(f"{os.getpid()}\\n")
time.sleep(float(sys.argv[2]))
subprocess.Popen(sys.argv[3:], start_new_session=True)
"""
RESTART_DELAY_S = 30

RULES = """\
groups:
- name: web
  rules:
  - alert: WebDown
    expr: healwatch_process_up{service="web"} == 0
    for: 2s
    labels: {severity: critical}
"""


@pytest.mark.timeout(60)
def test_a_killed_agent_resumes_alerts_notifications_journal_traffic_and_budget(tmp_path: Path) -> None:
    """After a SIGKILL mid-playbook the restarted agent keeps active-since, delivers the outbox, closes the run
    as interrupted, restores the cut traffic and still counts the interrupted run against the budget."""
    hook_port, web_pid, restart_pids = free_port(), tmp_path / "web.pid", tmp_path / "restart.pids"
    web = WebApp(web_pid)
    config = _write_config(tmp_path, web, hook_port)
    first: AgentProcess | None = None
    second: AgentProcess | None = None
    try:
        first = AgentProcess(config, _workdir(tmp_path, "first"))
        wait_for(lambda: _value(first, "healwatch_process_up", service="web") == 1)
        web.kill()
        wait_for(lambda: _value(first, "ALERTS", alertname="WebDown", alertstate="firing") == 1)
        incident_id = str(wait_for(lambda: _restarting_incident(first.url), timeout_s=10))
        active_since = _value(first, "ALERTS_FOR_STATE", alertname="WebDown")
        assert active_since is not None
        assert httpx.get(f"{first.url}/-/ready/web", timeout=2).status_code == 503
        wait_for(lambda: (_value(first, "healwatch_outbox_pending") or 0) >= 1)
        first.signal(signal.SIGKILL)
        first.process.wait(5)
        pending = _pending_notification_ids(tmp_path / "state.db", "WebDown")
        assert pending, "the undeliverable WebDown notification should wait in the outbox"

        with _recorder(hook_port) as received:
            second = AgentProcess(config, _workdir(tmp_path, "second"))
            wait_for(lambda: _value(second, "ALERTS_FOR_STATE", alertname="WebDown") == active_since)
            wait_for(lambda: pending <= {r["headers"].get("Idempotency-Key") for r in received})
            delivered = [r for r in received if r["headers"].get("Idempotency-Key") in pending]
            assert all(r["path"] == "/hook" and r["body"]["status"] == "firing" for r in delivered)
            assert {a["labels"]["alertname"] for r in delivered for a in r["body"]["alerts"]} == {"WebDown"}

            interrupted = _get(second.url, f"/api/v1/incidents/{incident_id}")
            assert interrupted["outcome"] == "interrupted" and "traffic restored" in interrupted["detail"]
            assert [(s["action"], s["result"]) for s in interrupted["steps"]] == [
                ("traffic cut", "ok"), ("restart", "interrupted"), ("traffic restore", "ok")]

            # The next WebDown trigger finds the budget (max_runs: 1) used up by the interrupted run.
            incidents = wait_for(lambda: _later_incidents(second.url, incident_id), timeout_s=10)
            assert [(i["outcome"], "budget exhausted" in i["detail"]) for i in incidents] == [("escalated", True)]
            # /metrics carries the agent's own families at most a second late.
            wait_for(lambda: _value(second, "healwatch_autoheal_suspended", service="web") == 1, timeout_s=5)

            assert httpx.get(f"{second.url}/-/ready/web", timeout=2).status_code == 200
            assert _value(second, "healwatch_traffic_cut", service="web") == 0
    finally:
        for agent in (first, second):
            if agent is not None:
                agent.stop()
        web.stop()
        _kill_detached(restart_pids, group=True)
        if web_pid.exists() and int(web_pid.read_text()) != web.process.pid:
            _kill_detached(web_pid, group=False)


def _workdir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def _write_config(tmp_path: Path, web: WebApp, hook_port: int) -> Path:
    """The agent's config: a down-alert on the web app, a slow-restart playbook with a budget of one run."""
    (tmp_path / "restart.py").write_text(SLOW_RESTART)
    (tmp_path / "web.rules.yaml").write_text(RULES)
    restart = [sys.executable, str(tmp_path / "restart.py"), str(tmp_path / "restart.pids"), str(RESTART_DELAY_S),
               sys.executable, str(ROOT / "examples/webapp/app.py"), "--port", str(web.port),
               "--pidfile", str(tmp_path / "web.pid")]
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"state_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n"
        f"rule_files: [{tmp_path / 'web.rules.yaml'}]\ninterval: 200ms\n"
        "evaluation: {interval: 200ms, for_grace_period: 1s}\n"
        "services:\n  web:\n"
        f"    process: {{pidfile: {tmp_path / 'web.pid'}}}\n"
        f"    restart: {{exec: {json.dumps(restart)}}}\n"
        "    traffic: {readiness: {}}\n"
        "playbooks:\n  - name: heal-web\n    service: web\n    when: [{alert: {alertname: WebDown}}]\n"
        "    steps: [{traffic: cut}, {restart: {}}, {wait_healthy: {timeout: 20s}}, {traffic: restore}]\n"
        "    budget: {max_runs: 1, within: 30m}\n"
        "notify:\n"
        f"  receivers: [{{name: hook, webhook: {{url: 'http://127.0.0.1:{hook_port}/hook'}}}}]\n"
        "  route: {receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}\n"
        "  outbox: {backoff_initial: 100ms, backoff_max: 500ms}\n"
    )
    return config


def _value(agent: AgentProcess, name: str, **labels: str) -> float | None:
    """The value of the first exposed sample named ``name`` whose labels include ``labels``."""
    for family in text_string_to_metric_families(agent.metrics()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def _get(url: str, path: str) -> Any:
    response = httpx.get(f"{url}{path}", timeout=2)
    response.raise_for_status()
    return response.json()["data"]


def _restarting_incident(url: str) -> str | None:
    """The id of the web incident whose traffic is cut and whose restart step is under way, if there is one."""
    for incident in _get(url, "/api/v1/incidents?service=web")["incidents"]:
        steps = _get(url, f"/api/v1/incidents/{incident['id']}")["steps"]
        if incident["outcome"] == "running" and [(s["action"], s["result"]) for s in steps] == [
                ("traffic cut", "ok"), ("restart", "running")]:
            return str(incident["id"])
    return None


def _later_incidents(url: str, incident_id: str) -> list[dict[str, Any]]:
    incidents = _get(url, "/api/v1/incidents?service=web")["incidents"]
    return [i for i in incidents if i["id"] != incident_id]


def _pending_notification_ids(state_db: Path, alertname: str) -> set[str]:
    """Ids (the Idempotency-Key sent) of outbox entries about ``alertname`` left in the killed agent's state."""
    conn = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, notification FROM outbox").fetchall()
    finally:
        conn.close()
    return {row_id for row_id, text in rows
            if any(a["labels"].get("alertname") == alertname for a in json.loads(text)["alerts"])}


@contextmanager
def _recorder(port: int) -> Iterator[list[dict[str, Any]]]:
    """A webhook receiver on ``port`` that answers 200 and records each request's path, headers and JSON body."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _kill_detached(pidfile: Path, *, group: bool) -> None:
    """SIGKILL the processes the agent started outside the test's process tree, by the pids in ``pidfile``."""
    if not pidfile.exists():
        return
    for pid in map(int, pidfile.read_text().split()):
        try:
            os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
