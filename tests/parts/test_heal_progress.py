"""`healwatch heal SERVICE` prints each step while the playbook still runs, against a real agent and service."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from agent.cli.main import main
from harness.agent import AgentProcess
from tests.parts.test_api_healing import running_agent_process

TOKEN = "heal-progress-token"
PLAYBOOK = (
    "playbooks:\n"
    "  - name: slow-heal\n"
    "    service: web\n"
    "    steps:\n"
    "      - traffic: cut\n"
    "      - restart: {}\n"
    "      - sleep: 1500ms   # long enough for three polls, so the first steps must show before the end\n"
    "      - wait_healthy: {timeout: 10s}\n"
    "      - traffic: restore\n"
)


class TimedLines(io.StringIO):
    """A non-terminal output that remembers the wall-clock time each line was completed."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> int:
        self.times.extend(time.time() for _ in range(text.count("\n")))
        return super().write(text)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    yield from running_agent_process(
        tmp_path_factory.mktemp("heal-progress"),
        "state_path: ':memory:'\nhost: {enabled: false}\ndefault_rules: false\n", PLAYBOOK, TOKEN,
    )


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_steps_are_printed_while_the_heal_runs(agent: AgentProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first two steps are printed before the incident ends; every step is printed once, then the result."""
    monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)
    out = TimedLines()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["heal", "web", "--url", agent.url]) == 0

    lines = out.getvalue().splitlines()
    assert lines[0] == "healing web..."
    assert [line.split()[:-1] for line in lines[1:6]] == [  # the last word is the step's duration
        ["1.", "traffic", "cut", "ok"], ["2.", "restart", "ok"], ["3.", "sleep", "ok"], ["4.", "wait_healthy", "ok"],
        ["5.", "traffic", "restore", "ok"],
    ]
    assert lines[6].startswith("web: succeeded in ") and len(lines) == 7
    incident_id = lines[6].split("(incident ")[1].rstrip(")")
    incident = httpx.get(f"{agent.url}/api/v1/incidents/{incident_id}", timeout=2).json()["data"]
    sleep_ended = _epoch(incident["steps"][2]["endedAt"])
    assert out.times[2] < sleep_ended, "the restart step was printed only after the playbook had moved on"
    assert out.times[6] >= _epoch(incident["endedAt"])


def test_json_output_has_no_progress_lines(agent: AgentProcess, capfd: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With --json the output is the API's incident document alone, as before."""
    monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)
    capfd.readouterr()
    assert main(["heal", "web", "--dry-run", "--json", "--url", agent.url]) == 0
    out = capfd.readouterr().out
    assert out.startswith("{") and '"outcome": "succeeded"' in out and "healing web" not in out
