"""restart_dependents (issue #17, part 6): a healed dependency restarts what depends on it, real processes throughout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.daemon import Agent
from harness.processes import free_port, until
from tests.parts.test_check_roles import SlowApp


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[dict[str, SlowApp]]:
    started: dict[str, SlowApp] = {}
    try:
        for name in ("db", "api"):
            (tmp_path / name).mkdir()
            started[name] = SlowApp(tmp_path / name)
        yield started
    finally:
        for app in started.values():
            app.kill()


def service(name: str, app: SlowApp, extra: str) -> str:
    return (
        f"  {name}:\n"
        f"    process: {{pidfile: {app.workdir / 'app.pid'}}}\n"
        f"    restart: {{exec: {app.restart!r}}}\n"
        f"    checks: [{{name: http, http: {{url: 'http://127.0.0.1:{app.port}/health'}}, interval: 200ms,"
        " failure_threshold: 1}]\n" + extra
    )


def playbook(name: str, max_runs: int) -> str:
    return (
        f"  - name: restart-{name}\n    service: {name}\n    when: [{{process_exited: {{service: {name}}}}}]\n"
        "    steps: [{restart: {}}, {wait_healthy: {timeout: 10s}}]\n"
        f"    budget: {{max_runs: {max_runs}, within: 30m}}\n    backoff: {{initial: 0s}}\n    cooldown: 0s\n"
    )


def incidents(agent: Agent, name: str) -> list[tuple[str, str]]:
    """(trigger, outcome) of the service's incidents, oldest first."""
    assert agent.healing is not None
    return [(i.trigger, i.outcome) for i in reversed(agent.healing.runtime.journal.incidents(service=name))]


def test_a_healed_dependency_restarts_its_dependents_within_their_budget(
    tmp_path: Path, apps: dict[str, SlowApp]
) -> None:
    """db heals, then api restarts as triggered by db's recovery; api's budget of one run refuses the second."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\nhost: {{enabled: false}}\ndefault_rules: false\n"
        "services:\n" + service("db", apps["db"], "    restart_dependents: true\n")
        + service("api", apps["api"], "    depends_on: [db]\n")
        + "playbooks:\n" + playbook("db", 5) + playbook("api", 1)
    )
    recovered = ("dependency db recovered (restart_dependents)", "succeeded")

    async def main() -> None:
        agent = Agent(parse_config(config.read_text(), str(config)), config_path=str(config))
        await agent.start()
        try:
            async with asyncio.timeout(40):
                await until(lambda: agent.ready("db") and agent.ready("api"), timeout_s=15)
                api_pid, db_pid = apps["api"].pid(), apps["db"].pid()
                apps["db"].kill()
                await until(lambda: incidents(agent, "api") == [recovered], timeout_s=15)
                assert incidents(agent, "db") == [(f"process {db_pid} of db exited", "succeeded")]
                assert apps["api"].pid() != api_pid
                await until(lambda: agent.ready("api"), timeout_s=10)

                db_pid = apps["db"].pid()
                apps["db"].kill()
                await until(lambda: len(incidents(agent, "db")) == 2 and len(incidents(agent, "api")) == 2,
                            timeout_s=15)
                assert incidents(agent, "db")[1] == (f"process {db_pid} of db exited", "succeeded")
                trigger, outcome = incidents(agent, "api")[1]
                assert (trigger, outcome) == (recovered[0], "escalated")
                assert agent.healing is not None and agent.healing.runtime.suspended("api")
        finally:
            await agent.stop()

    asyncio.run(main())
