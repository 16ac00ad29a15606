"""Rules inside the running agent: alerts in /metrics, hot reload of rule files, `for` restored after SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from agent.config import parse_config
from agent.schedule.phase import offset_of
from agent.schedule.rules import build_rule_jobs
from agent.state import StateDB
from rules.model import Alert, AlertState, Labels
from rules.persistence import MIGRATIONS
from rules.promql import Engine
from rules.rulefile import parse_rules
from rules.store import SeriesStore
from harness.agent import AgentProcess, WebApp
from harness.processes import wait_for

WEB_RULES = """groups:
  - name: web
    rules:
      - alert: WebDown
        expr: healwatch_process_up{service="web"} == 0
        labels: {severity: critical}
        annotations: {summary: "{{ $labels.service }} is down"}
"""


def agent_config(tmp_path: Path, web: WebApp, extra: str = "") -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"state_path: {tmp_path / 'state.db'}\ninterval: 200ms\nhost: {{enabled: false}}\ndefault_rules: false\n"
        "rule_files: ['rules/*.yaml']\nevaluation: {interval: 200ms}\n"
        f"services:\n  web:\n    process: {{pidfile: {tmp_path / 'web.pid'}}}\n{extra}"
    )
    return config


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebApp]:
    app = WebApp(tmp_path / "web.pid")
    yield app
    app.stop()


def test_an_alert_fires_and_resolves_in_metrics(tmp_path: Path, web: WebApp) -> None:
    """Killing the service fires WebDown in ALERTS; bringing it back resolves it."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules/web.yaml").write_text(WEB_RULES)
    agent = AgentProcess(agent_config(tmp_path, web), tmp_path)
    firing = 'ALERTS{alertname="WebDown",alertstate="firing",service="web",severity="critical"}'
    try:
        wait_for(lambda: agent.value('healwatch_rule_group_rules{rule_group="' + str(tmp_path / "rules/web.yaml") + ';web"}') == 1)
        assert agent.value(firing) is None
        web.kill()
        wait_for(lambda: agent.value(firing) == 1)
        revived = WebApp(tmp_path / "web.pid", port=web.port)
        try:
            wait_for(lambda: agent.value(firing) is None)
        finally:
            revived.stop()
        states = [e["event"] for e in agent.logs() if "WebDown" in str(e.get("alert", ""))]
        assert states[:2] == ["alert firing", "alert inactive"]
    finally:
        agent.stop()


def test_rule_files_reload_on_change_and_a_broken_edit_keeps_the_old_rules(tmp_path: Path, web: WebApp) -> None:
    """Editing a rule file is picked up within seconds; a broken edit is reported and the old rules stay."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "web.yaml").write_text(WEB_RULES)
    agent = AgentProcess(agent_config(tmp_path, web), tmp_path)
    group = 'healwatch_rule_group_rules{rule_group="' + str(rules / "web.yaml") + ';web"}'
    try:
        wait_for(lambda: agent.value(group) == 1)
        (rules / "web.yaml").write_text(WEB_RULES + "      - record: web_up\n        expr: healwatch_process_up\n")
        wait_for(lambda: agent.value(group) == 2, timeout_s=10)
        (rules / "web.yaml").write_text(WEB_RULES + "      - record: broken\n        expr: rate(\n")
        wait_for(lambda: agent.value("healwatch_rules_last_reload_successful") == 0, timeout_s=10)
        errors = [e["error"] for e in agent.logs() if e["event"] == "rule reload failed; keeping the running rules"]
        assert any(f"{rules / 'web.yaml'}:9:19:" in str(error) for error in errors)
        assert agent.value(group) == 2
        assert agent.value('web_up{service="web"}') == 1
    finally:
        agent.stop()


def test_a_firing_alert_is_restored_after_sigkill(tmp_path: Path, web: WebApp) -> None:
    """SIGKILLed while an alert fires, the restarted agent keeps its active-since time and fires again at once."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules/web.yaml").write_text(WEB_RULES.replace("labels:", "for: 3s\n        labels:"))
    config = agent_config(tmp_path, web)
    config.write_text(config.read_text().replace("evaluation: {interval: 200ms}",
                                                 "evaluation: {interval: 200ms, for_grace_period: 1s}"))
    firing = 'ALERTS{alertname="WebDown",alertstate="firing",service="web",severity="critical"}'
    for_state = 'ALERTS_FOR_STATE{alertname="WebDown",service="web",severity="critical"}'
    web.kill()
    agent = AgentProcess(config, tmp_path)
    try:
        wait_for(lambda: agent.value(firing) == 1, timeout_s=15)
        active_since = agent.value(for_state)
        agent.signal(signal.SIGKILL)
        agent.process.wait(5)
    finally:
        agent.stop()
    restarted = AgentProcess(config, tmp_path)
    try:
        # Without the restore the alert would pend again for 3 s with a new active-since time.
        wait_for(lambda: restarted.value(firing) == 1, timeout_s=2.5)
        assert restarted.value(for_state) == active_since
    finally:
        restarted.stop()


def test_a_for_of_two_intervals_fires_at_the_second_evaluation_despite_jitter() -> None:
    """Runs a few milliseconds off their ticks evaluate at the ticks, so `for: 30s` every 15 s fires 30 s after the
    alert went pending, not 45 s (a run 4 ms late, then one 3 ms early, used to make it 29.993 s of the 30)."""
    (spec,) = parse_rules(WEB_RULES.replace("labels:", "for: 30s\n        labels:"), "web.yaml")
    evaluation = parse_config("evaluation: {interval: 15s}", "agent.yaml").evaluation
    store = SeriesStore(retention_s=None)
    (job,) = build_rule_jobs([spec], engine=Engine(), store=store, evaluation=evaluation, state=None,
                             on_alerts=lambda alerts: None, previous={}, phases={}).values()
    tick = 1_700_000_010.0 + offset_of(job.name, 15.0)  # 1_700_000_010 is a multiple of 15
    down = Labels.of("healwatch_process_up", {"service": "web"})
    states = []
    for n, jitter in enumerate((0.004, -0.002, -0.003)):
        store.append(down, round((tick + 15 * n) * 1000), 0.0)
        asyncio.run(job.observe(tick + 15 * n + jitter))
        (alert,) = job.group.alerting_rules()[0].active.values()
        states.append((alert.state, alert.active_at))
    assert states == [(AlertState.PENDING, tick), (AlertState.PENDING, tick), (AlertState.FIRING, tick)]


def test_restore_follows_prometheus_for_a_pending_alert() -> None:
    """A pending `for: 1h` alert saved 10 minutes into its wait resumes with the downtime added."""
    t0 = 1_700_000_040.0 + offset_of("rules:web.yaml;web", 60.0)  # a tick of the group's grid (agent.schedule.phase)
    (spec,) = parse_rules(WEB_RULES.replace("labels:", "for: 1h\n        labels:"), "web.yaml")
    evaluation = parse_config("evaluation: {interval: 60s}", "agent.yaml").evaluation
    state = StateDB(":memory:")
    state.migrate("rules", MIGRATIONS)
    down = Labels.of("healwatch_process_up", {"service": "web"})

    def run(store: SeriesStore, start: float, steps: int) -> dict[Labels, Alert]:
        jobs = build_rule_jobs([spec], engine=Engine(), store=store, evaluation=evaluation, state=state.conn,
                               on_alerts=lambda alerts: None, previous={}, phases={})
        (job,) = jobs.values()
        for step in range(steps):
            now = start + 60 * step
            store.append(down, round(now * 1000), 0.0)
            asyncio.run(job.observe(now))
        return job.group.alerting_rules()[0].active

    run(SeriesStore(retention_s=None), t0, 11)  # active at t0, last saved at t0 + 600
    restart = t0 + 900  # 5 minutes down
    alerts = run(SeriesStore(retention_s=None), restart, 2)
    (alert,) = alerts.values()
    assert alert.state == AlertState.PENDING
    assert alert.active_at == t0 + (restart + 60 - (t0 + 600))  # shifted by the time it was down


class SlowCounter(BaseHTTPRequestHandler):
    """A scrape target that answers 200 ms late with how many scrapes it has answered."""

    served = 0

    def do_GET(self) -> None:
        time.sleep(0.2)
        type(self).served += 1
        body = f"served {type(self).served}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_each_evaluation_reads_the_scrape_in_flight_at_its_tick(tmp_path: Path) -> None:
    """Evaluate on arrival: the group ticks 5 ms after its scrape and waits for it, though the target takes
    200 ms; every recorded sample equals the newest scrape at or before its timestamp, never the one before."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowCounter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules/seen.yaml").write_text("groups:\n  - name: seen\n    rules:\n      - record: seen\n"
                                             "        expr: served\n")
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"state_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n"
        "rule_files: ['rules/*.yaml']\nevaluation: {interval: 1s}\n"
        f"services:\n  slow:\n    scrape: {{url: 'http://127.0.0.1:{server.server_address[1]}/metrics', "
        "interval: 1s}\n")
    agent = AgentProcess(config, tmp_path)
    try:
        def raw(name: str) -> list[tuple[float, float]]:
            answer = httpx.get(f"{agent.url}/api/v1/query", params={"query": f"{name}[20s]"}, timeout=5).json()
            return [(float(t), float(v)) for result in answer["data"]["result"] for t, v in result["values"]]

        wait_for(lambda: len(raw("seen")) >= 6, timeout_s=20)
        served, seen = raw("served"), raw("seen")
    finally:
        agent.stop()
        server.shutdown()
    for at, value in seen[1:]:  # the first evaluation may run before the first scrape ever landed
        assert value == max((s for s in served if s[0] <= at), default=(0.0, 0.0))[1], (at, served, seen)
