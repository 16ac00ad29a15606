"""`healwatch incidents|heal|traffic|maintenance|silence` against a real agent process healing a real service.

The CLI runs in-process (``agent.cli.main``) to keep the tests fast; the agent and the service are processes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.cli.main import main
from harness.agent import AgentProcess
from harness.processes import wait_for
from tests.parts.test_api_healing import Service, running_agent_process

TOKEN = "cli-heal-token"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("cli-healing")
    yield from running_agent_process(
        workdir, f"state_path: {workdir / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n", "", TOKEN
    )


def cli(
    agent: AgentProcess, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
    token: str | None = TOKEN,
) -> tuple[int, str, str]:
    """Run one command against ``agent``: exit code, stdout, stderr."""
    if token is None:
        monkeypatch.delenv("HEALWATCH_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HEALWATCH_TOKEN", token)
    capfd.readouterr()
    code = main([*args, "--url", agent.url])
    out, err = capfd.readouterr()
    return code, out, err


def test_heal_shows_progress_and_the_steps_and_incidents_lists_them(
    agent: AgentProcess, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`heal web --dry-run` then `heal web` print their steps with results; `incidents [ID]` shows them."""
    code, out, _ = cli(agent, capfd, monkeypatch, "heal", "web", "--dry-run")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "healing web (dry run)..."
    assert [line.split()[1] for line in lines[1:5]] == ["traffic", "restart", "wait_healthy", "traffic"]
    assert all(" dry_run " in line for line in lines[1:5])
    assert lines[5].startswith("web: succeeded in ")

    code, out, _ = cli(agent, capfd, monkeypatch, "heal", "web")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "healing web..."
    assert [line.split()[1] for line in lines[1:5]] == ["traffic", "restart", "wait_healthy", "traffic"]
    assert all(" ok " in line and line.endswith("s") for line in lines[1:5])
    assert lines[5].startswith("web: succeeded in ") and "(incident " in lines[5]
    healed_id = lines[5].split("(incident ")[1].rstrip(")")

    code, out, _ = cli(agent, capfd, monkeypatch, "incidents")
    table = out.splitlines()
    assert table[0].split()[:4] == ["ID", "SERVICE", "PLAYBOOK", "OUTCOME"]
    assert table[1].split()[:4] == [healed_id, "web", "autoheal-web", "succeeded"]
    assert table[2].split()[3:6] == ["succeeded", "(dry", "run)"]

    code, out, _ = cli(agent, capfd, monkeypatch, "incidents", healed_id, "--json")
    incident = json.loads(out)
    assert incident["id"] == healed_id and [s["result"] for s in incident["steps"]] == ["ok"] * 4


def test_maintenance_traffic_and_reset_commands(
    agent: AgentProcess, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maintenance blocks `heal` with the API's reason; `traffic cut|restore` flips readiness; `heal reset` works."""
    assert cli(agent, capfd, monkeypatch, "maintenance", "web", "on")[1] == "maintenance of web on\n"
    code, _, err = cli(agent, capfd, monkeypatch, "heal", "web", "--json")
    assert (code, err) == (1, "healwatch: 409: web is in maintenance\n")
    assert cli(agent, capfd, monkeypatch, "maintenance", "web", "off")[1] == "maintenance of web off\n"

    code, out, _ = cli(agent, capfd, monkeypatch, "traffic", "cut", "web")
    assert code == 0 and out.startswith("traffic of web cut: ")
    assert httpx.get(f"{agent.url}/-/ready/web").status_code == 503
    code, out, _ = cli(agent, capfd, monkeypatch, "traffic", "restore", "web")
    assert code == 0 and out.startswith("traffic of web restored: ")
    assert httpx.get(f"{agent.url}/-/ready/web").status_code == 200

    assert cli(agent, capfd, monkeypatch, "heal", "reset", "web") == (0, "auto-healing of web reset\n", "")


def test_silence_add_list_expire(
    agent: AgentProcess, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`silence add` prints the new id, `silence list` shows it active, `silence expire` ends it."""
    code, out, _ = cli(agent, capfd, monkeypatch, "silence", "add", 'alertname="DiskFull"', "service=~web|db",
                       "--duration", "2h", "--comment", "disk swap", "--author", "ops")
    silence_id = out.strip()
    assert code == 0 and silence_id

    code, out, _ = cli(agent, capfd, monkeypatch, "silence", "list")
    header, *rows = out.splitlines()  # maintenance switched on earlier in this module left its own silence
    (row,) = [line for line in rows if line.startswith(silence_id)]
    assert header.split() == ["ID", "STATE", "ENDS", "MATCHERS", "CREATED", "BY", "COMMENT"]
    assert row.split()[:2] == [silence_id, "active"]
    assert 'alertname="DiskFull", service=~"web|db"' in row and row.split()[-3:] == ["ops", "disk", "swap"]

    assert cli(agent, capfd, monkeypatch, "silence", "expire", silence_id)[1] == f"expired silence {silence_id}\n"
    listed = {s["id"]: s for s in json.loads(cli(agent, capfd, monkeypatch, "silence", "list", "--json")[1])["silences"]
              }[silence_id]
    assert listed["status"]["state"] == "expired"


def test_refusals_are_one_line_errors(
    agent: AgentProcess, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong token, an unknown service or playbook and an invalid matcher each give the API's reason and exit 1."""
    assert cli(agent, capfd, monkeypatch, "traffic", "cut", "web", token="wrong")[1:] == (
        "", "healwatch: 401: missing or wrong bearer token: send the header 'Authorization: Bearer <token>' "
            "(healwatch's CLI sends the token from HEALWATCH_TOKEN) (HEALWATCH_TOKEN is not the agent's token)\n")
    assert cli(agent, capfd, monkeypatch, "maintenance", "nope", "on")[2] == "healwatch: 404: unknown service 'nope'\n"
    assert cli(agent, capfd, monkeypatch, "heal", "web", "--playbook", "nope")[::2] == (
        1, "healwatch: 409: no playbook 'nope' heals 'web'; its playbooks: autoheal-web\n")
    code, _, err = cli(agent, capfd, monkeypatch, "silence", "add", "alertname")
    assert code == 1 and err.startswith("healwatch: 400: invalid silence: bad matcher format 'alertname'")
    assert "Traceback" not in err


BUDGET_OF_ONE = (
    "playbooks:\n  - name: heal-web\n    service: web\n    when: [{process_exited: {service: web}}]\n"
    "    steps: [{restart: {}}, {wait_healthy: {timeout: 20s}}]\n"
    "    budget: {max_runs: 1, within: 30m}\n    backoff: {initial: 100ms, max: 100ms}\n    cooldown: 100ms\n"
)


def _incidents(agent: AgentProcess) -> list[dict[str, object]]:
    """The web incidents the agent's API lists, newest first."""
    response = httpx.get(f"{agent.url}/api/v1/incidents?service=web", timeout=2)
    response.raise_for_status()
    return list(response.json()["data"]["incidents"])


def _ended(agent: AgentProcess, count: int) -> list[dict[str, object]] | None:
    """The web incidents once there are ``count`` of them and none is running, else None."""
    incidents = _incidents(agent)
    if len(incidents) < count or any(i["outcome"] == "running" for i in incidents):
        return None
    return incidents


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_heal_reset_survives_an_agent_restart(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the budget is used up, `heal reset` and a SIGTERM restart, the next kill is healed, not escalated."""
    service = Service(tmp_path)
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_path: {tmp_path / 'state.db'}\nhost: {{enabled: false}}\ndefault_rules: false\n"
                      "services:\n" + service.config().replace("    autoheal: true\n", "") + BUDGET_OF_ONE)
    monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)
    agents: list[AgentProcess] = []
    try:
        first = AgentProcess(config, tmp_path)
        agents.append(first)
        wait_for(lambda: httpx.get(f"{first.url}/-/ready/web", timeout=1).status_code == 200)
        service.kill()
        assert [i["outcome"] for i in wait_for(lambda: _ended(first, 1), timeout_s=30)] == ["succeeded"]
        wait_for(lambda: httpx.get(f"{first.url}/-/ready/web", timeout=1).status_code == 200, timeout_s=20)
        service.kill()
        incidents = wait_for(lambda: _ended(first, 2), timeout_s=30)
        assert [i["outcome"] for i in incidents] == ["escalated", "succeeded"]
        assert "budget exhausted" in str(incidents[0]["detail"])
        wait_for(lambda: first.value('healwatch_autoheal_suspended{service="web"}') == 1)  # /metrics lags up to 1 s

        assert cli(first, capfd, monkeypatch, "heal", "reset", "web") == (0, "auto-healing of web reset\n", "")
        subprocess.run(service.restart, check=True, timeout=10)  # the operator brings web back by hand
        first.stop()  # SIGTERM

        second = AgentProcess(config, tmp_path)
        agents.append(second)
        wait_for(lambda: httpx.get(f"{second.url}/-/ready/web", timeout=1).status_code == 200, timeout_s=20)
        assert second.value('healwatch_autoheal_suspended{service="web"}') == 0
        service.kill()
        incidents = wait_for(lambda: _ended(second, 3), timeout_s=30)
        assert [i["outcome"] for i in incidents] == ["succeeded", "escalated", "succeeded"], incidents[0]["detail"]
    finally:
        for agent in agents:
            agent.stop()
        service.kill()
