"""The daemon in-process: scheduling isolates slow jobs, check transitions reach subscribers,
and a crashing collector is contained."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from structlog.testing import capture_logs

from agent.config import parse_config
from agent.daemon import Agent
from agent.schedule.jobs import Observation
from healers.events import CheckStateChanged
from harness.processes import free_port


def config_text(services: str) -> str:
    return f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\nhost: {{enabled: false}}\nservices:\n{services}"


def run_agent(text: str, body: Callable[[Agent], Awaitable[None]]) -> None:
    async def main() -> None:
        agent = Agent(parse_config(text, "agent.yaml"))
        await agent.start()
        try:
            await body(agent)
        finally:
            await agent.stop()

    asyncio.run(main())


async def exposed(agent: Agent, series: str) -> float | None:
    body, _, _ = await agent.exposition.response("text/plain", "")
    for line in body.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def test_a_hung_probe_neither_overlaps_itself_nor_delays_other_jobs() -> None:
    """A probe slower than its interval skips its own next runs while a fast check keeps its pace."""
    sleeper = f"[{sys.executable!r}, '-c', 'import time; time.sleep(30)']"
    text = config_text(
        f"  slow:\n    checks:\n      - {{name: hang, exec: {{command: {sleeper}}}, interval: 100ms, timeout: 1s}}\n"
        "  fast:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 100ms, timeout: 100ms}\n"
    )

    async def body(agent: Agent) -> None:
        await asyncio.sleep(1.5)
        fast_runs = await exposed(agent, 'healwatch_check_runs_total{check="port",result="failure",service="fast"}')
        assert fast_runs is not None and fast_runs >= 10
        skipped = await exposed(agent, 'healwatch_scheduler_skipped_runs_total{job="check:slow/hang"}')
        assert skipped is not None and skipped >= 5
        assert await exposed(agent, 'probe_success{check="hang",service="slow"}') == 0

    run_agent(text, body)


def test_check_transitions_reach_the_healing_hook() -> None:
    """A failing check calls the healing runtime's on_check_changed once, with CheckStateChanged(healthy=False)."""
    text = config_text(
        "  db:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 100ms, timeout: 100ms,"
        " failure_threshold: 2}\n"
    )

    async def body(agent: Agent) -> None:
        assert agent.healing is not None
        changes: asyncio.Queue[CheckStateChanged] = asyncio.Queue()
        agent.healing.runtime.on_check_changed = changes.put_nowait  # type: ignore[method-assign,assignment]
        event = await asyncio.wait_for(changes.get(), 5)
        assert (event.service, event.check, event.healthy) == ("db", "port", False)
        assert "refused" in event.reason.lower()
        assert agent.ready("db") is False and agent.ready("nope") is None

    run_agent(text, body)


def test_each_check_transition_is_logged_once_at_its_severity() -> None:
    """A check that fails logs one warning and, once it recovers, one info line: no second line from the daemon."""
    port = free_port()
    text = config_text(
        f"  db:\n    checks:\n      - {{name: port, tcp: {{address: '127.0.0.1:{port}'}}, interval: 100ms,"
        " timeout: 100ms}\n"
    )

    async def body(agent: Agent) -> None:
        (check,) = agent.jobset.checks["db"]
        await until(lambda: not check.healthy)
        server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", port)
        async with server:
            await until(lambda: check.healthy)

    with capture_logs() as logs:
        run_agent(text, body)
    transitions = [(e["event"], e["log_level"], e.get("healthy")) for e in logs if e.get("check") == "port"]
    assert transitions == [("check_state_changed", "warning", False), ("check_state_changed", "info", True)]


def test_a_crashing_job_is_contained_and_counted() -> None:
    """An exception inside one job is counted in healwatch_collector_errors_total; other jobs go on."""
    text = config_text(
        "  a:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 100ms, timeout: 100ms}\n"
    )

    async def body(agent: Agent) -> None:
        broken = agent.jobset.jobs["check:a/port"]

        async def explode(now: float) -> Observation:
            raise RuntimeError("boom")

        broken.observe = explode  # type: ignore[method-assign]

        def errors() -> float | None:
            return agent.metrics.registry.get_sample_value(
                "healwatch_collector_errors_total", {"collector": "check:a/port"}
            )

        await until(lambda: (errors() or 0) >= 2)
        assert await exposed(agent, "healwatch_build_info{version=\"0.1.0\"}") == 1

    run_agent(text, body)
