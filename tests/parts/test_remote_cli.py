"""`healwatch status|alerts|reload` against a real running agent."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.agent import ROOT, AgentProcess
from harness.processes import wait_for


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentProcess]:
    monkeypatch.setenv("HEALWATCH_TOKEN", "cli-token")
    (tmp_path / "r.yaml").write_text(
        "groups:\n- name: g\n  rules:\n  - alert: Always\n    expr: vector(1)\n    annotations: {summary: always on}\n"
    )
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"state_path: {tmp_path / 's.db'}\nhost: {{enabled: false}}\ndefault_rules: false\nrule_files: [r.yaml]\n"
        "evaluation: {interval: 200ms}\n"
        "services:\n  db:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 200ms, timeout: 200ms,"
        " failure_threshold: 1}\n"
    )
    process = AgentProcess(config, tmp_path)
    yield process
    process.stop()


def cli(agent: AgentProcess, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HEALWATCH_TOKEN", None)
    if token is not None:
        env["HEALWATCH_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--url", agent.url],
                          capture_output=True, text=True, env=env, timeout=30)


def test_status_prints_a_readable_table(agent: AgentProcess) -> None:
    """`healwatch status` shows each service's readiness and checks, then the active alerts."""
    wait_for(lambda: "FAILING" in cli(agent, "status").stdout and "Always" in cli(agent, "status").stdout)
    lines = cli(agent, "status").stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "READY", "PROCESS", "CHECKS", "SCRAPE", "HEALING"]
    assert lines[1].split() == ["db", "NO", "-", "port", "FAILING", "-", "-"]
    assert "1 active alert:" in lines
    assert any(line.strip().startswith("FIRING   Always {} since") and line.endswith(": always on") for line in lines)


def test_status_says_why_a_check_fails_and_what_holds_healing_back(agent: AgentProcess) -> None:
    """`healwatch status` gives a failing check's reason and shows maintenance in the table and in a note."""
    wait_for(lambda: "FAILING" in cli(agent, "status").stdout)
    assert cli(agent, "maintenance", "db", "on", token="cli-token").returncode == 0
    lines = cli(agent, "status").stdout.splitlines()
    assert lines[1].split()[-1] == "maintenance"
    assert any(line.startswith("db: check port failing (") and "refused" in line for line in lines), lines
    assert "db: in maintenance: no healing, alerts silenced" in lines


def test_alerts_shows_which_silence_mutes_an_alert(agent: AgentProcess) -> None:
    """A silenced alert is listed as firing with the silence that mutes it, in the table and in --json."""
    wait_for(lambda: "Always" in cli(agent, "alerts").stdout)
    silence_id = cli(agent, "silence", "add", "alertname=Always", token="cli-token").stdout.strip()
    (line,) = cli(agent, "alerts").stdout.splitlines()
    assert line.startswith("FIRING   Always {} since ") and line.endswith(f" [silenced by {silence_id}]: always on")
    (alert,) = json.loads(cli(agent, "alerts", "--json").stdout)["alerts"]
    assert alert["silencedBy"] == [silence_id]


def test_json_output_is_the_apis_data(agent: AgentProcess) -> None:
    """--json prints the API's data for scripts."""
    wait_for(lambda: json.loads(cli(agent, "alerts", "--json").stdout)["alerts"])
    (alert,) = json.loads(cli(agent, "alerts", "--json").stdout)["alerts"]
    assert alert["labels"] == {"alertname": "Always"}


def test_reload_needs_the_token(agent: AgentProcess) -> None:
    """Without the token reload says to set HEALWATCH_TOKEN; a wrong one gets the 401 and says so; the right one reloads."""
    refused = cli(agent, "reload")
    assert refused.returncode == 1 and "needs the agent's API token: set HEALWATCH_TOKEN" in refused.stderr
    wrong = cli(agent, "reload", token="not-it")
    assert wrong.returncode == 1 and "401: missing or wrong bearer token" in wrong.stderr
    assert wrong.stderr.rstrip().endswith("(HEALWATCH_TOKEN is not the agent's token)")
    done = cli(agent, "reload", token="cli-token")
    assert (done.returncode, done.stdout.strip()) == (0, "reloaded")


def test_an_unreachable_agent_is_a_clear_error(tmp_path: Path) -> None:
    """Nothing listening: one line on stderr and exit 1, no traceback."""
    result = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--url", "http://127.0.0.1:1"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("healwatch: cannot reach the agent at http://127.0.0.1:1")
    assert "Traceback" not in result.stderr


def test_a_silence_names_its_author_without_user_in_the_environment(agent: AgentProcess) -> None:
    """With neither $USER nor $LOGNAME (cron, containers) a silence is created by the process' login name."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HEALWATCH_TOKEN="cli-token")
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        env.pop(name, None)
    added = subprocess.run([sys.executable, "-m", "agent.cli", "silence", "add", "alertname=Always", "--url", agent.url],
                           capture_output=True, text=True, env=env, timeout=30)
    assert added.returncode == 0, added.stderr
    (silence,) = json.loads(cli(agent, "silence", "list", "--json").stdout)["silences"]
    assert silence["createdBy"] == pwd.getpwuid(os.getuid()).pw_name
