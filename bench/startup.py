"""Start-up, command line and stop: how long healwatch takes to be ready, to answer a command and to stop.

Run from the repository root: ``python3 -m bench.startup --output PATH [--quick] [--runs N]``.

Every measure is the wall time of whole processes, over ``--runs`` runs (median, min, max), with
healwatch and its peer measured alternately so load from other processes falls on both alike:

  ready       ``healwatch run`` on the README's tutorial config (the example web app running, its
              rule file present) until ``/-/ready`` answers 200, polled every 5 ms; the agent is
              ready once its first host collection has landed. Peer: node_exporter until its
              /metrics answers 200 (the host collector healwatch replaces; it has no readiness).
  stop        SIGTERM to the ready agent until the process is gone. Peer: node_exporter.
  version, help   ``healwatch --version`` and ``--help``. Peer: node_exporter's.
  status      ``healwatch status`` against a running agent. Peer: ``monit status`` against a running
              Monit (its HTTP interface on a unix socket) watching the same pidfile and URL.
  alerts      ``healwatch alerts`` against a running agent. Peer: ``amtool alert query`` against a
              running Alertmanager.
  check       ``healwatch check config`` on the tutorial config (rule file included). Peer:
              ``promtool check config`` on a Prometheus config naming the same rule file.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.output import run_and_write
from harness.processes import free_port, stop

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "startup.json"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
MONIT = "/usr/bin/monit"
AMTOOL = "/usr/bin/amtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMTOOL = "/usr/bin/promtool"
HEALWATCH = [sys.executable, "-m", "agent.cli"]
FULL_RUNS = 15
QUICK_RUNS = 3
POLL_S = 0.005
UP_TIMEOUT_S = 30.0
RULE_FILE = """groups:
  - name: tutorial
    interval: 5s
    rules:
      - alert: WebServesErrors
        expr: sum by (service) (rate(http_requests_total{service="web", code=~"5.."}[1m])) > 0
        for: 10s
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.service }} answers {{ $value | humanize }} errors/s"
"""


def tutorial_config(workdir: Path, web_port: int, pidfile: Path) -> Path:
    """The README tutorial's config (step 2's rule file included), on the web app's port."""
    (workdir / "my-rules").mkdir(exist_ok=True)
    (workdir / "my-rules" / "web.yaml").write_text(RULE_FILE)
    config = workdir / "tutorial.yaml"
    config.write_text(f"""state_path: {workdir / "healwatch.db"}
rule_files: ["my-rules/*.yaml"]
services:
  web:
    process: {{pidfile: {pidfile}}}
    checks:
      - {{name: http, http: {{url: "http://127.0.0.1:{web_port}/health"}}, interval: 2s, failure_threshold: 2}}
    scrape: {{url: "http://127.0.0.1:{web_port}/metrics", interval: 5s, timeout: 2s}}
    autoheal: false
""")
    return config


def http_status(port: int, path: str) -> int | None:
    """The status of one GET on 127.0.0.1, or None while nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def until_up(process: subprocess.Popen[bytes], port: int, path: str) -> None:
    """Poll ``path`` every 5 ms until it answers 200; fail if the process dies or it takes too long."""
    deadline = time.monotonic() + UP_TIMEOUT_S
    while http_status(port, path) != 200:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with status {process.returncode} before {path} answered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} of {process.args!r} did not answer 200 within {UP_TIMEOUT_S} s")
        time.sleep(POLL_S)


def start_and_stop(argv: list[str], port: int, path: str, cwd: Path) -> tuple[float, float]:
    """(start -> ``path`` answers 200, SIGTERM -> process gone), in seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until_up(process, port, path)
        ready_s = time.perf_counter() - started
        stopping = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(UP_TIMEOUT_S)
        return ready_s, time.perf_counter() - stopping
    finally:
        stop(process)


def command_s(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall time of one command, which must succeed."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv!r} exited with status {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


@contextmanager
def running(argv: list[str], cwd: Path, port: int | None = None, path: str = "/") -> Iterator[None]:
    """A child process for the duration of the block, once ``path`` on ``port`` answers 200."""
    process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if port is not None:
            until_up(process, port, path)
        yield
    finally:
        stop(process)


def monit_rc(workdir: Path, pidfile: Path, web_port: int) -> tuple[Path, Path]:
    """A Monit control file watching the web app as the tutorial config does, and its unix socket."""
    socket_path = workdir / "monit.sock"
    rc = workdir / "monitrc"
    rc.write_text(f"""set daemon 2
set pidfile {workdir / "monit.pid"}
set idfile {workdir / "monit.id"}
set statefile {workdir / "monit.state"}
set httpd unixsocket {socket_path} allow localhost
check process web with pidfile {pidfile}
  if failed port {web_port} protocol http request "/health" then alert
""")
    rc.chmod(0o600)
    return rc, socket_path


def prometheus_config(workdir: Path, web_port: int) -> Path:
    """A Prometheus config scraping the web app with the tutorial's rule file."""
    config = workdir / "prometheus.yml"
    config.write_text(f"""global: {{scrape_interval: 5s, evaluation_interval: 5s}}
rule_files: ["my-rules/*.yaml"]
scrape_configs:
  - job_name: web
    static_configs: [{{targets: ["127.0.0.1:{web_port}"]}}]
""")
    return config


def measure(runs: int) -> dict[str, Any]:
    """Every measure, ``runs`` times each side, alternating."""
    samples: dict[str, dict[str, list[float]]] = {}

    def add(row: str, side: str, value: float) -> None:
        samples.setdefault(row, {}).setdefault(side, []).append(value)

    with tempfile.TemporaryDirectory(prefix="healwatch-startup-") as tmp, ExitStack() as children:
        workdir = Path(tmp)
        web_port, pidfile = free_port(), workdir / "webapp.pid"
        children.enter_context(running(
            [sys.executable, str(REPO_ROOT / "examples/webapp/app.py"), "--port", str(web_port), "--pidfile",
             str(pidfile)], workdir, web_port, "/health"))
        config = tutorial_config(workdir, web_port, pidfile)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        agent_port, exporter_port = free_port(), free_port()
        agent = [*HEALWATCH, "run", "-c", str(config), "--listen", f"127.0.0.1:{agent_port}"]
        exporter = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{exporter_port}"]
        for _ in range(runs):
            ready_s, stop_s = start_and_stop(agent, agent_port, "/-/ready", workdir)
            add("ready", "healwatch", ready_s)
            add("stop", "healwatch", stop_s)
            ready_s, stop_s = start_and_stop(exporter, exporter_port, "/metrics", workdir)
            add("ready", "peer", ready_s)
            add("stop", "peer", stop_s)
        rc, monit_socket = monit_rc(workdir, pidfile, web_port)
        am_port = free_port()
        children.enter_context(running(agent, workdir, agent_port, "/-/ready"))
        children.enter_context(running([MONIT, "-I", "-c", str(rc)], workdir))
        children.enter_context(running(
            [ALERTMANAGER, f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
             f"--storage.path={workdir / 'alertmanager'}", f"--config.file={alertmanager_config(workdir)}"],
            workdir, am_port, "/-/ready"))
        until_file(monit_socket)
        url = f"--url=http://127.0.0.1:{agent_port}"
        commands: dict[str, tuple[list[str], list[str]]] = {
            "version": ([*HEALWATCH, "--version"], [NODE_EXPORTER, "--version"]),
            "help": ([*HEALWATCH, "--help"], [NODE_EXPORTER, "--help"]),
            "status": ([*HEALWATCH, "status", url], [MONIT, "-c", str(rc), "status"]),
            "alerts": ([*HEALWATCH, "alerts", url],
                       [AMTOOL, "alert", "query", f"--alertmanager.url=http://127.0.0.1:{am_port}"]),
            "check": ([*HEALWATCH, "check", "config", str(config)],
                      [PROMTOOL, "check", "config", str(prometheus_config(workdir, web_port))]),
        }
        for _ in range(runs):
            for row, (ours, theirs) in commands.items():
                add(row, "healwatch", command_s(ours, workdir, env))
                add(row, "peer", command_s(theirs, workdir))
    return {"runs": runs, "samples": samples, "summary": {
        row: {side: summary(values) for side, values in sides.items()} for row, sides in samples.items()}}


def alertmanager_config(workdir: Path) -> Path:
    config = workdir / "alertmanager.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    return config


def until_file(path: Path) -> None:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {UP_TIMEOUT_S} s")
        time.sleep(POLL_S)


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max, in ms."""
    return {"median_ms": round(statistics.median(values) * 1000, 1), "min_ms": round(min(values) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1)}


ROWS = (
    ("ready", "start -> /-/ready 200 (first host collection landed), median", "node_exporter (/metrics 200)"),
    ("stop", "SIGTERM -> process gone, median", "node_exporter"),
    ("version", "`--version`, whole process, median", "node_exporter"),
    ("help", "`--help`, whole process, median", "node_exporter"),
    ("status", "`status` of a running agent, whole process, median", "`monit status`"),
    ("alerts", "`alerts` of a running agent, whole process, median", "`amtool alert query`"),
    ("check", "`check config` on the tutorial config, whole process, median", "`promtool check config`"),
)


def report_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of bench/report.py, in ms, each next to its peer."""
    return [{"row": row, "what": what, "unit": "ms", "peer_name": peer, "lower_is_better": True,
             "healwatch": results["summary"][row]["healwatch"]["median_ms"],
             "peer": results["summary"][row]["peer"]["median_ms"]} for row, what, peer in ROWS]


def print_table(results: dict[str, Any]) -> None:
    print(f"{'measure':<10} {'side':<10} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for row, sides in results["summary"].items():
        for side, values in sides.items():
            print(f"{row:<10} {side:<10} {values['median_ms']:>10.1f} {values['min_ms']:>8.1f} {values['max_ms']:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, help=f"runs per measure (default {FULL_RUNS}, {QUICK_RUNS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args()
    runs: int = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    if runs < 1:
        parser.error("--runs must be at least 1")

    def run() -> dict[str, Any]:
        results = measure(runs)
        return {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version(),
                **results, "report": report_rows(results)}

    run_and_write("startup", run, args.output, print_table)


if __name__ == "__main__":
    main()
