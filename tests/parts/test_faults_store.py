"""One huge scrape target against the real agent: the scrape fails alone, the rest of the agent keeps working."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.daemon import Agent
from rules.matchers import Matcher, MatchOp
from harness.processes import free_port, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BIG_SERIES = 106_000  # about 9.5 MB: under the default max_bytes (10 MiB), far over the default sample_limit
SCRAPE_METRICS = {"healwatch_scrape_up", "healwatch_scrape_duration_seconds", "healwatch_scrape_samples"}
RULES = """\
groups:
  - name: agent
    interval: 200ms
    rules:
      - alert: BigScrapeDown
        expr: healwatch_scrape_up{service="big"} == 0
"""


@pytest.fixture
def big_target(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server process serving a 106k-series text exposition; yields its URL."""
    root = tmp_path / "www"
    root.mkdir()
    with (root / "metrics").open("w") as out:
        out.write("# TYPE app_requests_total counter\n")
        for i in range(BIG_SERIES):
            out.write(f'app_requests_total{{path="/api/v1/items/{i}",method="GET",code="200"}} {i}\n')
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: subprocess.run(
            [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=1)"],
            capture_output=True).returncode == 0, timeout_s=15)
        yield url
    finally:
        stop(server)


async def _max_loop_lag(stopping: asyncio.Event) -> float:
    """The longest the loop was late waking a 5 ms sleep, until ``stopping`` is set."""
    worst = 0.0
    while not stopping.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, time.perf_counter() - started - 0.005)
    return worst


async def _until(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_a_target_over_sample_limit_fails_alone_and_the_loop_stays_responsive(
    tmp_path: Path, big_target: str
) -> None:
    """The 106k-series scrape fails with up 0 and "sample_limit exceeded", none of it is stored, host series
    and a rule over the agent's own series still work, and the event loop is never held for long."""
    (tmp_path / "agent.rules.yaml").write_text(RULES)
    config_path = tmp_path / "agent.yaml"
    config_path.write_text(
        f"listen: 127.0.0.1:{free_port()}\nstate_path: ':memory:'\ndefault_rules: false\n"
        f"rule_files: [{tmp_path / 'agent.rules.yaml'}]\nhost: {{interval: 1s}}\n"
        f"services:\n  big:\n    scrape: {{url: '{big_target}', interval: 2s, timeout: 2s}}\n"
    )

    async def main() -> float:
        agent = Agent(parse_config(config_path.read_text(), str(config_path)), config_path=str(config_path))
        stopping = asyncio.Event()
        lag = asyncio.create_task(_max_loop_lag(stopping))
        await agent.start()
        try:
            job = agent.jobset.jobs["scrape:big"]
            await _until(lambda: job.target.last is not None, timeout_s=30)  # type: ignore[attr-defined]
            last = job.target.last  # type: ignore[attr-defined]
            assert not last.up and last.error.startswith("sample_limit exceeded"), last.error

            stored = {s.labels.name for s in agent.store.select([Matcher("service", MatchOp.EQ, "big")])}
            assert stored <= SCRAPE_METRICS
            firing = [Matcher("__name__", MatchOp.EQ, "ALERTS"), Matcher("alertname", MatchOp.EQ, "BigScrapeDown")]
            await _until(lambda: agent.store.select(firing), timeout_s=15)
            await _until(lambda: agent.store.select([Matcher("__name__", MatchOp.EQ, "node_load1")]), timeout_s=15)
        finally:
            stopping.set()
            await agent.stop()
        return await lag

    worst_lag_s = asyncio.run(main())
    print(f"worst event-loop lag during the scrape: {worst_lag_s * 1000:.1f} ms")
    assert worst_lag_s < 0.5  # generous for 2 shared cores; a parse or ingest on the loop took seconds
