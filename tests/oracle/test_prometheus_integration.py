"""A real Prometheus scrapes the agent and ingests its series; promtool accepts its exposition."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.agent import AgentProcess
from harness.processes import free_port, require_binary, stop, wait_for


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    config = tmp_path / "agent.yaml"
    config.write_text(f"state_path: {tmp_path / 'state.db'}\nhost: {{interval: 1s}}\n")
    process = AgentProcess(config, tmp_path)
    yield process
    process.stop()


def query(url: str, promql: str) -> list[dict[str, object]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    response.raise_for_status()
    result: list[dict[str, object]] = response.json()["data"]["result"]
    return result


def test_prometheus_ingests_the_agents_series(tmp_path: Path, agent: AgentProcess) -> None:
    """Prometheus scraping /metrics sees the target up and holds node-style and healwatch series."""
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: healwatch\n    static_configs: [{{targets: ['127.0.0.1:{agent.port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: query(url, 'up{job="healwatch"} == 1'), timeout_s=30)
        wait_for(lambda: query(url, 'node_cpu_seconds_total{job="healwatch",mode="idle"}'), timeout_s=10)
        (build,) = query(url, "healwatch_build_info")
        assert build["value"][1] == "1"  # type: ignore[index]
        (count,) = query(url, 'count({job="healwatch"})')
        assert int(count["value"][1]) > 50  # type: ignore[index]
    finally:
        stop(prometheus)


def test_promtool_accepts_the_exposition(agent: AgentProcess) -> None:
    """``promtool check metrics`` parses /metrics and lints nothing but node_exporter's own meminfo names.

    node_exporter names meminfo fields as the kernel does (``node_memory_MemAvailable_bytes``);
    we keep those names so existing dashboards work, and promtool lints them as camelCase.
    """
    promtool = require_binary("promtool")
    wait_for(lambda: agent.value('node_load1') is not None)
    result = subprocess.run([promtool, "check", "metrics"], input=agent.metrics().encode(),
                            capture_output=True, timeout=30)
    problems = (result.stdout + result.stderr).decode().splitlines()
    assert result.returncode in (0, 3), problems  # 3: lint findings only; 1 would be a parse error
    unexpected = [
        line for line in problems
        if not (line.startswith("node_memory_") and line.endswith("should be written in 'snake_case' not 'camelCase'"))
    ]
    assert unexpected == []
