"""The real agent watching a real service: metrics follow the service dying and coming back,
reloads keep a good config, and signals stop it promptly."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.agent import AgentProcess, WebApp
from harness.processes import wait_for


def write_config(path: Path, web_port: int, pidfile: Path, extra: str = "") -> None:
    path.write_text(
        f"""
state_path: {path.parent / "state.db"}
interval: 200ms
host: {{interval: 1s}}
services:
  web:
    process: {{pidfile: {pidfile}}}
    checks:
      - name: http
        http: {{url: "http://127.0.0.1:{web_port}/health", expect_status: [200]}}
        interval: 200ms
        timeout: 500ms
        failure_threshold: 1
    scrape: {{url: "http://127.0.0.1:{web_port}/metrics", interval: 300ms, timeout: 300ms}}
{extra}"""
    )


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebApp]:
    app = WebApp(tmp_path / "web.pid")
    yield app
    app.stop()


@pytest.fixture
def agent(tmp_path: Path, web: WebApp) -> Iterator[AgentProcess]:
    config = tmp_path / "agent.yaml"
    write_config(config, web.port, tmp_path / "web.pid")
    process = AgentProcess(config, tmp_path)
    yield process
    process.stop()


def test_metrics_follow_a_service_that_dies_and_comes_back(tmp_path: Path, web: WebApp, agent: AgentProcess) -> None:
    """SIGKILL flips process_up and probe_success to 0; a restart with a new pid flips them back and counts the change."""
    up = 'healwatch_process_up{service="web"}'
    probe = 'probe_success{check="http",service="web"}'
    wait_for(lambda: agent.value(up) == 1 and agent.value(probe) == 1)
    wait_for(lambda: agent.value('healwatch_scrape_up{service="web"}') == 1)
    assert agent.value("node_load1") is not None
    changes_before = agent.value('healwatch_process_pid_changes_total{service="web"}')

    web.kill()
    wait_for(lambda: agent.value(up) == 0 and agent.value(probe) == 0)
    wait_for(lambda: agent.value('healwatch_check_healthy{check="http",service="web"}') == 0)
    assert httpx.get(f"{agent.url}/-/ready/web").status_code == 503

    revived = WebApp(tmp_path / "web.pid", port=web.port)
    try:
        wait_for(lambda: agent.value(up) == 1 and agent.value(probe) == 1)
        changes_after = agent.value('healwatch_process_pid_changes_total{service="web"}')
        assert changes_before is not None and changes_after is not None and changes_after > changes_before
        assert httpx.get(f"{agent.url}/-/ready/web").status_code == 200
    finally:
        revived.stop()
    changes = [(e["level"], e["healthy"]) for e in agent.logs() if e["event"] == "check_state_changed"]
    assert ("warning", False) in changes and ("info", True) in changes


def test_a_bad_reload_keeps_the_running_config(tmp_path: Path, web: WebApp, agent: AgentProcess) -> None:
    """SIGHUP with a broken file logs every error with its position and changes nothing; a good file then applies."""
    wait_for(lambda: agent.value('probe_success{check="http",service="web"}') == 1)
    config = tmp_path / "agent.yaml"
    config.write_text("services:\n  web: {checks: [{name: x}]}\nbogus: 1\n")
    agent.signal(signal.SIGHUP)
    wait_for(lambda: any(e["event"] == "config reload failed; keeping the running config" for e in agent.logs()))
    errors = [e["error"] for e in agent.logs() if e["event"] == "config reload failed; keeping the running config"]
    assert any(str(error).startswith(f"{config}:3:1: bogus: unknown key 'bogus'") for error in errors)
    wait_for(lambda: agent.value("healwatch_config_last_reload_successful") == 0)
    assert agent.value('probe_success{check="http",service="web"}') == 1
    assert agent.process.poll() is None

    write_config(config, web.port, tmp_path / "web.pid", extra=(
        "  db:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 200ms, timeout: 200ms}\n"
    ))
    agent.signal(signal.SIGHUP)
    wait_for(lambda: agent.value('probe_success{check="port",service="db"}') == 0)
    wait_for(lambda: agent.value("healwatch_config_last_reload_successful") == 1)
    assert agent.value('probe_success{check="http",service="web"}') == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_end_the_agent_within_two_seconds(agent: AgentProcess, sig: signal.Signals) -> None:
    """SIGTERM and SIGINT stop the agent cleanly in under 2 s."""
    started = time.monotonic()
    agent.signal(sig)
    assert agent.process.wait(2.5) == 0
    assert time.monotonic() - started < 2.0
