"""Notification latency and burst delivery: healwatch's Notifying runtime next to a real Alertmanager.

Run from the repository root: ``python3 -m bench.notify_latency``. A webhook sink
(aiohttp, its own thread and event loop) on 127.0.0.1 records when each
notification arrives.

- latency: 1,000 alerts published one at a time on the agent's event channel,
  each its own group (``group_by: [alertname, instance]``, ``group_wait: 0s``);
  time from ``publish`` to the sink receiving its webhook. Target p99 <= 50 ms.
- burst: 10,000 alerts in 100 groups published in one batch, in a fresh
  interpreter (so its memory is its own): time until every group's notification
  with all 100 alerts arrived, and the peak RSS growth (VmHWM after - VmRSS before).
- the same burst pushed to a real Alertmanager (``POST /api/v2/alerts``, the same
  grouping and timers) that notifies the same sink: the same time and the
  Alertmanager process's peak RSS growth.

Prints a table and writes bench/results/notify_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from agent.config import parse_config
from agent.notifying import NOTIFY_MIGRATIONS, Notifying
from agent.state import StateDB
from exporters.notification import AlertPayload, Notification
from exporters.receivers.alertmanager import AlertmanagerReceiver, AlertmanagerSettings
from harness.processes import free_port
from rules.model import Alert, AlertState, Labels

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "notify_latency.json"
GROUPS = 100
ALERTS_PER_GROUP = 100
DEADLINE_S = 120.0

CONFIG = """
notify:
  receivers:
    - name: sink
      webhook: {{url: "{url}/hook"}}
  route:
    receiver: sink
    group_by: [{group_by}]
    group_wait: 0s
    group_interval: 1s
    repeat_interval: 1h
"""

AM_CONFIG = """
route:
  receiver: sink
  group_by: [alertname, service]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: {url}/hook
        send_resolved: true
"""


class Sink:
    """A webhook receiver in its own thread; records per group when its first and its complete notification came."""

    def __init__(self, complete_at: int = 1) -> None:
        self.complete_at = complete_at
        self.arrivals: list[float] = []
        self.first: dict[str, float] = {}
        self.complete: dict[str, float] = {}
        self.lock = threading.Lock()
        self.on_arrival: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, complete_at: int) -> None:
        with self.lock:
            self.complete_at = complete_at
            self.arrivals, self.first, self.complete = [], {}, {}

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=256 << 20)
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._started.set()
        self._loop.run_forever()

    async def _hook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        now = time.perf_counter()
        with self.lock:
            self.arrivals.append(now)
            key = payload["groupKey"]
            self.first.setdefault(key, now)
            if len(payload["alerts"]) >= self.complete_at:
                self.complete.setdefault(key, now)
            waiters = list(self.on_arrival)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)
        return web.Response(text="ok")


def firing(now: float, **labels: str) -> Alert:
    return Alert(Labels({"alertname": "BenchAlert", "severity": "warning", **labels}),
                 {"summary": "benchmark alert", "description": "x" * 100}, 1.0, AlertState.FIRING,
                 active_at=now - 60, fired_at=now - 30, valid_until=now + 240)


def burst_alerts(now: float) -> list[Alert]:
    return [firing(now, service=f"svc-{g:03d}", instance=f"host-{i:03d}:9100")
            for g in range(GROUPS) for i in range(ALERTS_PER_GROUP)]


def new_notifying(tmp: Path, sink_url: str, group_by: str) -> tuple[Notifying, StateDB]:
    db = StateDB(str(tmp / "state.db"))
    for namespace, migrations in NOTIFY_MIGRATIONS.items():
        db.migrate(namespace, migrations)
    config = parse_config(CONFIG.format(url=sink_url, group_by=group_by), "bench.yaml")
    return Notifying(config, db.conn), db


async def measure_latency(sink: Sink, count: int) -> dict[str, Any]:
    """Publish one alert at a time; latency is publish -> the sink has it."""
    sink.reset(complete_at=1)
    arrived = asyncio.Event()
    sink.on_arrival.append((asyncio.get_running_loop(), arrived))
    with tempfile.TemporaryDirectory() as tmp:
        notifying, db = new_notifying(Path(tmp), sink.url, "alertname, instance")
        await notifying.start()
        latencies = []
        try:
            for i in range(count + 50):  # the first 50 warm up connections and caches
                before = len(sink.arrivals)
                started = time.perf_counter()
                notifying.on_alerts([firing(time.time(), instance=f"host-{i}")])
                async with asyncio.timeout(10):
                    while len(sink.arrivals) == before:
                        arrived.clear()
                        await arrived.wait()
                if i >= 50:
                    latencies.append(sink.arrivals[before] - started)
        finally:
            await notifying.stop()
            db.close()
            sink.on_arrival.clear()
    latencies.sort()
    return {
        "alerts": count,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p90_ms": round(latencies[int(0.90 * len(latencies)) - 1] * 1000, 2),
        "p99_ms": round(latencies[int(0.99 * len(latencies)) - 1] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def memory_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


async def burst_child(sink_url: str) -> dict[str, Any]:
    """In a fresh interpreter: publish the burst, wait until the outbox delivered every group."""
    with tempfile.TemporaryDirectory() as tmp:
        notifying, db = new_notifying(Path(tmp), sink_url, "alertname, service")
        await notifying.start()
        alerts = burst_alerts(time.time())
        rss_before = memory_kib("self", "VmRSS")
        started = time.perf_counter()
        notifying.on_alerts(alerts)
        try:
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    await asyncio.sleep(0.005)
                    delivered = notifying.registry.get_sample_value(
                        "healwatch_notifications_total", {"receiver": "sink", "outcome": "ok"})
                    if delivered == GROUPS and notifying.outbox.pending() == 0:
                        break
            elapsed = time.perf_counter() - started
        finally:
            await notifying.stop()
            db.close()
    return {"wall_s": round(elapsed, 3), "rss_before_kib": rss_before,
            "peak_growth_kib": memory_kib("self", "VmHWM") - rss_before}


def measure_burst(sink: Sink) -> dict[str, Any]:
    sink.reset(complete_at=ALERTS_PER_GROUP)
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "bench.notify_latency", "--burst-child", sink.url],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=DEADLINE_S + 30, check=True)
    report: dict[str, Any] = json.loads(child.stdout)
    with sink.lock:
        assert len(sink.complete) == GROUPS, f"{len(sink.complete)} of {GROUPS} groups complete"
        report["sink_last_complete_s"] = round(max(sink.complete.values()) - started, 3)
    return report


async def measure_alertmanager(sink: Sink) -> dict[str, Any] | None:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        return None
    sink.reset(complete_at=ALERTS_PER_GROUP)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "am.yml"
        config.write_text(AM_CONFIG.format(url=sink.url))
        url = f"http://127.0.0.1:{free_port()}"
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={tmp}/data", "--cluster.listen-address=",
             f"--web.listen-address={url.removeprefix('http://')}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            async with httpx.AsyncClient() as client:
                async with asyncio.timeout(15):
                    while True:
                        try:
                            if (await client.get(url + "/-/ready")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass  # not listening yet
                        await asyncio.sleep(0.05)
                rss_before = memory_kib(process.pid, "VmRSS")
                now = time.time()
                payloads = [
                    AlertPayload.of(a.labels.as_dict(), starts_at=now - 30, ends_at=now + 240,
                                    annotations=a.annotations)
                    for a in burst_alerts(now)
                ]
                push = Notification("bench", "am", "push", {}, tuple(payloads), now)
                receiver = AlertmanagerReceiver("am", AlertmanagerSettings(urls=[url], timeout_s=60))
                started = time.perf_counter()
                outcome = await receiver.send(client, push, now)
                assert outcome.kind.value == "ok", outcome.detail
                pushed_s = time.perf_counter() - started
                async with asyncio.timeout(DEADLINE_S):
                    while len(sink.complete) < GROUPS:
                        await asyncio.sleep(0.01)
                with sink.lock:
                    first_all = max(sink.first.values()) - started
                    complete_all = max(sink.complete.values()) - started
                    notifications = len(sink.arrivals)
                return {"push_s": round(pushed_s, 3), "first_of_every_group_s": round(first_all, 3),
                        "wall_s": round(complete_all, 3), "notifications": notifications,
                        "rss_before_kib": rss_before,
                        "peak_growth_kib": memory_kib(process.pid, "VmHWM") - rss_before}
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--burst-child", metavar="SINK_URL", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(RESULTS_PATH))
    args = parser.parse_args()
    if args.burst_child:
        print(json.dumps(asyncio.run(burst_child(args.burst_child))))
        return
    sink = Sink()
    latency = asyncio.run(measure_latency(sink, args.alerts))
    burst = measure_burst(sink)
    alertmanager = asyncio.run(measure_alertmanager(sink))
    results = {
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "latency": latency,
        "burst_healwatch": burst,
        "burst_alertmanager": alertmanager,
    }
    print(f"latency over {latency['alerts']} alerts, group_wait 0s: p50 {latency['p50_ms']} ms, "
          f"p90 {latency['p90_ms']} ms, p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms")
    print(f"burst {GROUPS * ALERTS_PER_GROUP} alerts / {GROUPS} groups, healwatch: all delivered in "
          f"{burst['wall_s']} s, peak RSS growth {burst['peak_growth_kib'] / 1024:.1f} MiB")
    if alertmanager is not None:
        print(f"burst through Alertmanager: complete groups in {alertmanager['wall_s']} s "
              f"(first of each group {alertmanager['first_of_every_group_s']} s, push {alertmanager['push_s']} s, "
              f"{alertmanager['notifications']} notifications), peak RSS growth "
              f"{alertmanager['peak_growth_kib'] / 1024:.1f} MiB")
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
