"""Alert firing -> webhook received, end to end: the healwatch agent next to Prometheus 2.42 -> Alertmanager.

Run from the repository root: ``python3 -m bench.alert_latency [--rounds 30] [--quick]``.
One loopback HTTP server in this process is both the scrape target and the webhook
receiver. The target exposes one gauge, ``flip{round="k"}``; a round sets it to 1 at a
recorded instant t0 (a fresh series per round, so each round's alert is a new alert
group on both sides) and back to 0 once both webhooks arrived.

- healwatch: the real agent (``python3 -m agent.cli run``) scrapes the target every
  1 s, evaluates ``flip > 0`` (``for: 0s``) every 1 s and notifies its webhook
  receiver (``group_wait: 0s``).
- peer: Prometheus scrapes the same target every 1 s, evaluates the same rule file
  every 1 s and sends to Alertmanager, whose webhook receiver (``group_wait: 0s``)
  posts to the same server.

Two measures per notification: t0 -> webhook arrival (the scrape and evaluation
phase included), and the alert's own ``startsAt`` in the payload (the moment the
system says it started firing) -> arrival. Prints a table and writes
bench/results/alert_latency.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench.output import write_json
from bench.scrape_latency import listening_port, version_number
from harness.processes import free_port, stop

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "alert_latency.json"
PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "prometheus-alertmanager"
HEALWATCH_HOOK = "/hook/healwatch"
PEER_HOOK = "/hook/alertmanager"
SYSTEMS = {HEALWATCH_HOOK: "healwatch", PEER_HOOK: "prometheus"}
ROUND_TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 30.0
FULL_ROUNDS = 30
QUICK_ROUNDS = 6

RULES = """groups:
  - name: flip
    interval: 1s
    rules:
      - alert: Flipped
        expr: flip > 0
        for: 0s
"""

HEALWATCH_CONFIG = """state_path: {state}
host: {{enabled: false}}
default_rules: false
rule_files: [{rules}]
evaluation: {{interval: 1s, resend_delay: 1s}}
services:
  flip:
    scrape: {{url: "{target}/metrics", interval: 1s, timeout: 900ms}}
notify:
  receivers:
    - name: sink
      webhook: {{url: "{receiver}{hook}"}}
  route:
    receiver: sink
    group_by: [alertname, round]
    group_wait: 0s
    group_interval: 1s
    repeat_interval: 1h
    resolve_wait: 0s
"""

PROMETHEUS_CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["{alertmanager}"]}}]
scrape_configs:
  - job_name: flip
    static_configs: [{{targets: ["{target}"]}}]
"""

ALERTMANAGER_CONFIG = """route:
  receiver: sink
  group_by: [alertname, round]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: "{receiver}{hook}"
        send_resolved: true
"""


@dataclass(frozen=True)
class Arrival:
    """One webhook notification as the receiver got it."""

    system: str
    at: float
    status: str
    round: str
    starts_at: float


@dataclass
class Bench:
    """The scrape target and the webhook receiver: what is exposed, when it changed, what arrived."""

    exposed: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def expose(self, round_id: int, value: int) -> float:
        """Serve ``flip{round=round_id} value`` from now on; returns the instant it changed."""
        text = (
            "# HELP flip Set to 1 by the benchmark at a recorded instant.\n# TYPE flip gauge\n"
            f'flip{{round="{round_id}"}} {value}\n'
        )
        with self.changed:
            self.exposed = text
            return time.time()

    def received(self, system: str, payload: dict[str, Any], at: float) -> None:
        with self.changed:
            for alert in payload["alerts"]:
                self.arrivals.append(
                    Arrival(system, at, payload["status"], alert["labels"].get("round", ""), rfc3339_s(alert["startsAt"]))
                )
            self.changed.notify_all()

    def wait_for(self, round_id: int, status: str, timeout_s: float) -> dict[str, Arrival]:
        """The first ``status`` notification of round ``round_id`` from each system, waiting (bounded) for both."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                found: dict[str, Arrival] = {}
                for arrival in self.arrivals:
                    if arrival.round == str(round_id) and arrival.status == status:
                        found.setdefault(arrival.system, arrival)
                if len(found) == len(SYSTEMS):
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(SYSTEMS.values()) - set(found))
                    raise RuntimeError(f"round {round_id}: no {status} notification from {', '.join(missing)} "
                                       f"within {timeout_s:.0f} s")
                self.changed.wait(left)


def rfc3339_s(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time with any number of fraction digits (Go writes up to 9)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return seconds + (float("0." + fraction) if fraction else 0.0)


def serve(bench: Bench) -> ThreadingHTTPServer:
    """Start the target (GET /metrics) and receiver (POST /hook/...) on a 127.0.0.1 ephemeral port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as both systems' HTTP clients expect

        def do_GET(self) -> None:
            with bench.changed:
                body = bench.exposed.encode()
            self._answer(200 if self.path == "/metrics" else 404, body, "text/plain; version=0.0.4")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            at = time.time()
            system = SYSTEMS.get(self.path)
            if system is None:
                self._answer(404, b"", "text/plain")
                return
            bench.received(system, json.loads(body), at)
            self._answer(200, b"ok", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: one line per scrape would drown the table."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_ready(client: httpx.Client, url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode} while starting")
        try:
            if client.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.1)
    raise RuntimeError(f"{name} was not ready within {STARTUP_TIMEOUT_S:.0f} s")


def start_systems(workdir: Path, base: str, alertmanager_bin: str) -> list[tuple[str, subprocess.Popen[bytes], str]]:
    """Start healwatch, Alertmanager and Prometheus; (name, process, readiness URL) of each."""
    rules = workdir / "flip.rules.yml"
    rules.write_text(RULES)
    target = base.removeprefix("http://")
    ports = {name: free_port() for name in ("healwatch", "alertmanager")}
    (workdir / "healwatch.yml").write_text(HEALWATCH_CONFIG.format(
        state=workdir / "state.db", rules=rules, target=base, receiver=base, hook=HEALWATCH_HOOK))
    (workdir / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG.format(receiver=base, hook=PEER_HOOK))
    (workdir / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(
        rules=rules, alertmanager=f"127.0.0.1:{ports['alertmanager']}", target=target))
    argvs = {
        "healwatch": [sys.executable, "-m", "agent.cli", "run", "-c", str(workdir / "healwatch.yml"),
                      "--listen", f"127.0.0.1:{ports['healwatch']}", "--log-level", "warning"],
        "alertmanager": [alertmanager_bin, f"--config.file={workdir / 'alertmanager.yml'}",
                         f"--storage.path={workdir / 'am-data'}", "--cluster.listen-address=",
                         f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--log.level=warn"],
        "prometheus": [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
                       f"--storage.tsdb.path={workdir / 'prom-data'}", "--web.listen-address=127.0.0.1:0",
                       "--rules.alert.resend-delay=1s", "--log.level=warn"],
    }
    started: list[tuple[str, subprocess.Popen[bytes], str]] = []
    try:
        for name, argv in argvs.items():
            with open(workdir / f"{name}.log", "wb") as log:
                process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=log)
            port = ports.get(name) or listening_port(process)
            started.append((name, process, f"http://127.0.0.1:{port}/-/ready"))
    except BaseException:
        for _, process, _ in started:
            stop(process, timeout_s=10)
        raise
    return started


def run_rounds(bench: Bench, rounds: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """One untimed warm-up round, then ``rounds`` timed ones; per system the latencies of each round.

    ``flip_to_firing_s`` (t0 -> startsAt) is the scrape and evaluation phase alone, kept to explain the others.
    """
    phase = random.Random(seed)
    samples: dict[str, dict[str, list[float]]] = {
        system: {"flip_to_webhook_s": [], "firing_to_webhook_s": [], "flip_to_firing_s": []}
        for system in SYSTEMS.values()
    }
    for round_id in range(rounds + 1):
        # A random pause puts t0 at a random phase of both scrape and evaluation cycles.
        time.sleep(phase.uniform(0.0, 1.0))
        flipped_at = bench.expose(round_id, 1)
        firing = bench.wait_for(round_id, "firing", ROUND_TIMEOUT_S)
        bench.expose(round_id, 0)
        bench.wait_for(round_id, "resolved", ROUND_TIMEOUT_S)
        if round_id == 0:
            continue  # warm-up: connections, first scrapes, first notification pipelines
        for system, arrival in firing.items():
            samples[system]["flip_to_webhook_s"].append(arrival.at - flipped_at)
            samples[system]["firing_to_webhook_s"].append(arrival.at - arrival.starts_at)
            samples[system]["flip_to_firing_s"].append(arrival.starts_at - flipped_at)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with 30 values, p99 is the largest)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.50) * 1000, 1),
        "p90": round(percentile(values, 0.90) * 1000, 1),
        "p99": round(percentile(values, 0.99) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
        "max": round(max(values) * 1000, 1),
    }


def version(argv: list[str]) -> str:
    result = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return version_number((result.stdout or result.stderr).strip())


MEASURES = {
    "flip_to_webhook_s": "gauge flipped -> webhook received (scrape + evaluation + notification)",
    "firing_to_webhook_s": "alert startsAt (the system's own firing time) -> webhook received",
}


def report_rows(summary: dict[str, dict[str, dict[str, float]]], peer_name: str) -> list[dict[str, Any]]:
    rows = []
    for measure, what in MEASURES.items():
        for quantile in ("p50", "p99"):
            rows.append({
                "row": f"{measure.removesuffix('_s')}_{quantile}",
                "what": f"{what}, {quantile}",
                "unit": "ms",
                "healwatch": summary["healwatch"][measure][quantile],
                "peer": summary["prometheus"][measure][quantile],
                "peer_name": peer_name,
                "lower_is_better": True,
            })
    return rows


def run(args: argparse.Namespace, alertmanager_bin: str) -> dict[str, Any]:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()
    bench = Bench()
    bench.expose(-1, 0)
    server = serve(bench)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory(prefix="healwatch-alert-bench-") as tmp:
            systems = start_systems(Path(tmp), base, alertmanager_bin)
            try:
                with httpx.Client() as client:
                    for name, process, ready_url in systems:
                        wait_ready(client, ready_url, process, name)
                samples = run_rounds(bench, args.rounds, args.seed)
            finally:
                for _, process, _ in systems:
                    stop(process, timeout_s=10)
    finally:
        server.shutdown()
        server.server_close()
    summary = {system: {m: summary_ms(v) for m, v in measures.items()} for system, measures in samples.items()}
    peer_name = f"Prometheus {version([PROMETHEUS])} + Alertmanager {version([alertmanager_bin])}"
    return {
        "command": " ".join(["python3", "-m", "bench.alert_latency", *sys.argv[1:]]),
        "started_at": started_at,
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "load_avg_before": load_before,
        "python": platform.python_version(),
        "peer": peer_name,
        "rounds": args.rounds,
        "setup": {"scrape_interval_s": 1, "evaluation_interval_s": 1, "rule": "flip > 0, for: 0s",
                  "group_wait_s": 0, "group_interval_s": 1, "resend_delay_s": 1},
        "summary_ms": summary,
        "samples_s": samples,
        "report": report_rows(summary, peer_name),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['rounds']} alerts per system, {result['cpus']} CPUs; ms")
    print(f"{'system':<12} {'measure':<22}{'p50':>8}{'p90':>8}{'p99':>8}{'mean':>8}{'max':>8}")
    for system, measures in result["summary_ms"].items():
        for measure, values in measures.items():
            cells = "".join(f"{values[k]:>8.1f}" for k in ("p50", "p90", "p99", "mean", "max"))
            print(f"{system:<12} {measure:<22}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help=f"timed alerts per system (default {FULL_ROUNDS}, "
                                                   f"{QUICK_ROUNDS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke test")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random pauses before each flip")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="where to write the JSON")
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else FULL_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    alertmanager_bin = shutil.which(ALERTMANAGER)
    if alertmanager_bin is None or not Path(PROMETHEUS).exists():
        parser.error(f"needs {PROMETHEUS} and {ALERTMANAGER} (Debian packages prometheus, prometheus-alertmanager)")
    try:
        result = run(args, alertmanager_bin)
    except RuntimeError as error:
        raise SystemExit(f"alert_latency: {error}") from None
    print_table(result)
    write_json(args.output, result)


if __name__ == "__main__":
    main()
