"""Load on the real agent's HTTP server: 200 requests/s to /metrics and /api/v1/status for 60 s,
while ~50 rules evaluate every second and a playbook heals a SIGKILLed service.

Run with ``-s`` to see the measured numbers; with HEALWATCH_KEEP_ARTIFACTS set they are also written to
``bench/results/api_load.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.agent import ROOT, AgentProcess, WebApp
from harness.processes import free_port, wait_for

pytestmark = pytest.mark.timeout(110)

RATE_PER_S = 200
LOAD_S = 60.0
KILL_AT_S = 15.0  # into the load: the playbook runs while requests keep coming
CONNECTIONS = 32
REQUEST_TIMEOUT_S = 5.0
LAG_P99_BOUND_S = 0.5
RULES_INTERVAL_S = 1.0
RESULTS = ROOT / "bench/results/api_load.json"
TOKEN = "load-test-token"
# What Prometheus 2.x sends when it scrapes a target.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def load_rules() -> str:
    """One group of 50 rules every second over host and scraped series: 40 recording, 10 alerting."""
    exprs = [
        'sum by (mode) (rate(node_cpu_seconds_total[{w}s]))',
        'avg_over_time(node_load1[{w}s])',
        'max_over_time(node_memory_MemAvailable_bytes[{w}s]) / node_memory_MemTotal_bytes',
        'sum(rate(http_requests_total[{w}s]))',
        'avg_over_time(webapp_up[{w}s])',
    ]
    lines = ["groups:", "  - name: load", f"    interval: {RULES_INTERVAL_S:g}s", "    rules:"]
    for i in range(40):
        expr = exprs[i % len(exprs)].format(w=10 + i)
        lines += [f"      - record: load:series_{i}", f"        expr: '{expr}'"]
    for i in range(10):
        lines += [f"      - alert: LoadAlert{i}", f"        expr: 'load:series_{i} < -{i + 1}'", "        for: 5s"]
    return "\n".join(lines) + "\n"


def agent_config(tmp_path: Path, port: int, pidfile: Path, restart: list[str]) -> Path:
    """Host collector at 1 s, default rules plus the load rules, one autohealed service."""
    (tmp_path / "load.rules.yaml").write_text(load_rules())
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"state_path: {tmp_path / 'state.db'}\nhost: {{interval: 1s}}\ninterval: 1s\n"
        "rule_files: [load.rules.yaml]\n"
        "services:\n  web:\n"
        f"    process: {{pidfile: {pidfile}}}\n"
        f"    checks:\n      - {{name: http, http: {{url: 'http://127.0.0.1:{port}/health'}}, interval: 500ms,"
        " timeout: 400ms, failure_threshold: 1}\n"
        f"    scrape: {{url: 'http://127.0.0.1:{port}/metrics', interval: 1s, timeout: 1s}}\n"
        f"    restart: {{exec: {restart!r}}}\n"
        "    traffic: {readiness: {}}\n"
        "    autoheal: true\n"
    )
    return config


@dataclass
class LoadResult:
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: {"/metrics": [], "/api/v1/status": []})
    failures: list[str] = field(default_factory=list)
    ungzipped_metrics: int = 0
    duration_s: float = 0.0


async def request(session: aiohttp.ClientSession, base_url: str, path: str, headers: dict[str, str], due: float,
                  result: LoadResult) -> None:
    """One request; latency counts from its scheduled time, so queueing behind slow ones shows."""
    loop, url = asyncio.get_running_loop(), base_url + path
    try:
        async with session.get(url, headers=headers) as response:
            await response.read()
            if response.status != 200:
                result.failures.append(f"{url}: HTTP {response.status}")
                return
            if path == "/metrics" and response.headers.get("Content-Encoding") != "gzip":
                result.ungzipped_metrics += 1
    except (TimeoutError, aiohttp.ClientError) as exc:
        result.failures.append(f"{url}: {exc!r}")
        return
    result.latencies_s[path].append(loop.time() - due)


async def paced_load(base_url: str, kill_at_s: float, kill: Callable[[], None]) -> LoadResult:
    """RATE_PER_S requests per second on a fixed schedule, alternating the two paths, over a bounded pool."""
    result = LoadResult()
    targets = [
        ("/metrics", {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}),
        ("/api/v1/status", {"Authorization": f"Bearer {TOKEN}"}),
    ]
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = loop.time() + 0.05
        loop.call_at(start + kill_at_s, kill)
        tasks = []
        for i in range(int(RATE_PER_S * LOAD_S)):
            due = start + i / RATE_PER_S
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            path, headers = targets[i % 2]
            tasks.append(asyncio.create_task(request(session, base_url, path, headers, due, result)))
        await asyncio.gather(*tasks)
        result.duration_s = loop.time() - start
    return result


Snapshot = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Snapshot:
    """Every sample of an exposition, by name and label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def histogram_quantile(q: float, before: Snapshot, after: Snapshot, name: str) -> float:
    """Prometheus' histogram_quantile over the increase of a histogram's buckets between two snapshots."""
    buckets = sorted(
        (float(dict(labels)["le"]), value - before.get((n, labels), 0.0))
        for (n, labels), value in after.items() if n == f"{name}_bucket"
    )
    total = buckets[-1][1]
    assert total > 0, f"no {name} observations in the window"
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    raise AssertionError("unreachable: the +Inf bucket holds every observation")


def group_values(snapshot: Snapshot, name: str) -> dict[str, float]:
    """A per-group series by group name (the ``rule_group`` label is ``file;name``)."""
    return {dict(labels)["rule_group"].rpartition(";")[2]: v for (n, labels), v in snapshot.items() if n == name}


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(latencies_s, [50, 99])
    return {"p50": round(p50 * 1e3, 1), "p99": round(p99 * 1e3, 1), "max": round(max(latencies_s) * 1e3, 1)}


def test_api_serves_200_requests_per_second_while_rules_and_a_playbook_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request answers 200 at >= 190/s, the playbook heals, and rule groups keep their schedule."""
    port, pidfile = free_port(), tmp_path / "web.pid"
    restart = ["setsid", "-f", sys.executable, str(ROOT / "examples/webapp/app.py"), "--port", str(port),
               "--pidfile", str(pidfile)]
    config = agent_config(tmp_path, port, pidfile, restart)
    monkeypatch.setenv("HEALWATCH_TOKEN", TOKEN)  # AgentProcess passes our environment on to the agent
    web = agent = None
    try:
        web = WebApp(pidfile, port=port)
        agent = AgentProcess(config, tmp_path)
        wait_for(lambda: httpx.get(f"{agent.url}/-/ready/web", timeout=1).status_code == 200)
        wait_for(lambda: group_values(samples(agent.metrics()), "healwatch_rule_group_rules"), timeout_s=5)

        cpu = psutil.Process(agent.process.pid)
        before, started, cpu_before = samples(agent.metrics()), time.time(), cpu.cpu_times()
        load = asyncio.run(paced_load(agent.url, KILL_AT_S, web.process.kill))
        after, window_s, cpu_after = samples(agent.metrics()), time.time() - started, cpu.cpu_times()

        def healed() -> list[dict[str, object]]:
            body = httpx.get(f"{agent.url}/api/v1/incidents", params={"service": "web"}, timeout=2).json()
            return [i for i in body["data"]["incidents"] if i["outcome"] != "running"]
        incidents = wait_for(healed, timeout_s=10)
    finally:
        if agent is not None:
            agent.stop()
        if web is not None:
            web.stop()
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    lag_p99_s = histogram_quantile(0.99, before, after, "healwatch_scheduler_lag_seconds")
    rules = group_values(after, "healwatch_rule_group_rules")
    intervals = group_values(after, "healwatch_rule_group_interval_seconds")
    evaluated = {g: (v - group_values(before, "healwatch_rule_evaluations_total").get(g, 0.0)) / rules[g]
                 for g, v in group_values(after, "healwatch_rule_evaluations_total").items()}
    expected = {g: window_s / intervals[g] for g in rules}
    last_eval_before = group_values(before, "healwatch_rule_group_last_evaluation_timestamp_seconds")
    last_eval_after = group_values(after, "healwatch_rule_group_last_evaluation_timestamp_seconds")
    answered = [latency for per_path in load.latencies_s.values() for latency in per_path]
    agent_cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    numbers: dict[str, Any] = {
        "requests": int(RATE_PER_S * LOAD_S),
        "failed": len(load.failures),
        "rate_per_s": round(len(answered) / load.duration_s, 1),
        "latency_ms": percentiles_ms(answered),
        "latency_ms_by_path": {path: percentiles_ms(values) for path, values in load.latencies_s.items()},
        "scheduler_lag_p99_ms": round(lag_p99_s * 1e3, 1),
        "agent_cpu_percent": round(100 * agent_cpu_s / window_s, 1),
        "rule_group_iterations": {g: [round(evaluated[g]), math.floor(expected[g])] for g in sorted(evaluated)},
        "incident": {k: incidents[0][k] for k in ("outcome", "trigger", "durationSeconds")},
        "connections": CONNECTIONS,
        "duration_s": LOAD_S,
    }
    if os.environ.get("HEALWATCH_KEEP_ARTIFACTS"):
        RESULTS.write_text(json.dumps(numbers, indent=2) + "\n")
    print(f"\napi load: {json.dumps(numbers)}")

    assert load.failures == [], f"{len(load.failures)} failed, e.g. {load.failures[:5]}"
    assert load.ungzipped_metrics == 0
    assert numbers["rate_per_s"] >= 190
    assert incidents[0]["outcome"] == "succeeded", incidents[0]
    assert RULES_INTERVAL_S in intervals.values()
    for group in rules:
        assert last_eval_after[group] > last_eval_before[group], group
        assert evaluated[group] >= math.floor(0.9 * expected[group]), (group, evaluated[group], expected[group])
    assert lag_p99_s < LAG_P99_BOUND_S
