"""Mean time to recovery of a SIGKILLed HTTP service: healwatch next to Monit 5.33, in one run.

Run from the repository root: ``python3 -m bench.mttr [--kills 20] [--quick] [--output PATH]``. The service is
``examples/webapp/app.py``, started by the same command for every supervisor: a small launcher
that notes the time it ran (so "restart issued" is measured the same way for all) and starts
the app detached. Each round waits until the app answers, lets a random 0.5-1.5 s pass (so the
kill falls at a random phase of Monit's 1 s cycle), SIGKILLs it, and polls HTTP every 2 ms
until it answers again. Three setups, 20 kills each:

- ``healwatch``: ``process_exited`` trigger (pidfd) -> exec restart -> wait_healthy;
- ``healwatch-check``: ``check_failed`` trigger only, an HTTP check every 1 s, failure_threshold 1;
- ``monit``: ``set daemon 1``, ``check process ... with pidfile``, ``if failed port ... then restart``.

The healwatch setups run the healing runtime (``agent.healing.Healing``) in a child process
(``python3 -m bench.mttr agent CONFIG STATE``), with a plain loop standing in for the daemon's
scheduler to run checks. The bench makes itself a child subreaper, so the killed apps (orphaned
by their launcher) are reaped at once rather than lingering as zombies. Prints a table and
writes bench/results/mttr.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import http.client
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.output import write_json
from harness.processes import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results" / "mttr.json"
APP = REPO_ROOT / "examples" / "webapp" / "app.py"
PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.002
RECOVERY_TIMEOUT_S = 15.0
FULL_KILLS = 20
QUICK_KILLS = 4

LAUNCHER = """
import subprocess, sys, time
with open(sys.argv[1], "a") as stamps:
    stamps.write(f"{time.time()}\\n")
subprocess.Popen(sys.argv[2:], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


class App:
    """The service under test and the command that (re)starts it."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.pidfile = workdir / f"{name}.pid"
        self.stamps = workdir / f"{name}.starts"
        launcher = workdir / "launch.py"
        launcher.write_text(LAUNCHER)
        # -I -S: no site-packages scan, which would add ~40 ms of interpreter start-up to every restart.
        self.start_argv = [sys.executable, "-I", "-S", str(launcher), str(self.stamps), sys.executable, "-I", "-S",
                           str(APP), "--port", str(self.port), "--pidfile", str(self.pidfile)]

    def answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def kill(self) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def launches(self) -> list[float]:
        return [float(line) for line in self.stamps.read_text().split()] if self.stamps.exists() else []


def reap_children(*_: object) -> None:
    """Reap every exited child (orphaned apps included, as we are their subreaper)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def measure(app: App, kills: int, restart_times: Any = None, idle: Any = None) -> dict[str, list[float]]:
    """Kill the app ``kills`` times; per kill: time to answering again and to the restart command running.

    Each kill waits for the supervisor to be idle (``idle()``, when it can tell), so no kill lands
    in the middle of the previous recovery.
    """
    recovery, launched, issued, detected = [], [], [], []
    for _ in range(kills):
        wait_for(lambda: app.answers() and app.pid() is not None and (idle is None or idle()), RECOVERY_TIMEOUT_S,
                 interval_s=0.01)
        time.sleep(random.uniform(0.5, 1.5))
        pid = app.pid()
        assert pid is not None
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        while not app.answers():
            if time.time() - killed_at > RECOVERY_TIMEOUT_S:
                raise RuntimeError("the service did not come back")
            time.sleep(POLL_S)
        recovery.append(time.time() - killed_at)
        launched.append(min(t for t in app.launches() if t > killed_at) - killed_at)
        if restart_times is not None:
            detected_at, issued_at = min((pair for pair in restart_times() if pair[1] > killed_at), key=lambda p: p[1])
            issued.append(issued_at - killed_at)
            detected.append(issued_at - detected_at)
    result = {"recovery_s": recovery, "kill_to_launcher_running_s": launched}
    if restart_times is not None:
        result["kill_to_restart_issued_s"] = issued
        result["detection_to_restart_issued_s"] = detected
    return result


# -- healwatch -----------------------------------------------------------------------------


def healwatch_config(app: App, trigger: str) -> dict[str, Any]:
    check_interval = "1s" if trigger == "check_failed" else "100ms"
    return {
        "services": {"web": {
            "process": {"pidfile": str(app.pidfile)},
            "checks": [{"name": "http", "http": {"url": f"http://127.0.0.1:{app.port}/health"},
                        "interval": check_interval, "timeout": "500ms", "failure_threshold": 1}],
            "restart": {"exec": app.start_argv},
        }},
        "playbooks": [{
            "name": "heal-web", "when": [{trigger: {"service": "web"}}],
            "steps": [{"restart": {}}, {"wait_healthy": {"timeout": "10s"}}],
            "budget": {"max_runs": 1000, "within": "1h"}, "backoff": {"initial": "1ms", "factor": 1, "max": "1ms"},
            "cooldown": "1ms",
        }],
    }


async def run_agent(config_path: str, state_path: str) -> None:
    """The healing runtime alone, with a loop running the checks at their intervals like the scheduler."""
    from agent.health.checks import Check
    from agent.health.probes import make_probe
    from agent.httpclient import new_http_client
    from agent.config import AgentConfig
    from agent.healing import Healing
    from healers.events import CheckStateChanged
    from agent.state import StateDB
    from healers.journal import MIGRATIONS

    config = AgentConfig.model_validate(json.loads(Path(config_path).read_text()))
    db = StateDB(state_path)
    db.migrate("healers", MIGRATIONS)
    client = new_http_client()

    def changed(event: CheckStateChanged) -> None:
        healing.runtime.on_check_changed(event)

    checks = {name: [Check(name, c, make_probe(c, http_client=client), changed) for c in svc.checks]
              for name, svc in config.services.items()}
    healing = Healing(config, db.conn, checks)
    await healing.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def schedule(check: Check) -> None:
        while True:
            await check.run(time.time())
            await asyncio.sleep(check.config.interval)

    tasks = [asyncio.create_task(schedule(check)) for found in checks.values() for check in found]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await healing.stop()
    await client.aclose()
    db.close()


def bench_healwatch(workdir: Path, kills: int, trigger: str) -> dict[str, list[float]]:
    app = App(workdir, f"healwatch-{trigger}")
    config, state = workdir / f"{trigger}.json", workdir / f"{trigger}.db"
    config.write_text(json.dumps(healwatch_config(app, trigger)))
    subprocess.run(app.start_argv, check=True)
    wait_for(app.answers, RECOVERY_TIMEOUT_S, interval_s=0.01)
    agent = subprocess.Popen([sys.executable, "-m", "bench.mttr", "agent", str(config), str(state)], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart_times() -> list[tuple[float, float]]:
        """(incident start, that is the trigger's detection; restart step start) per run."""
        with sqlite3.connect(state) as conn:
            return conn.execute(
                "SELECT i.started_at, s.started_at FROM incident_steps s JOIN incidents i ON i.id = s.incident_id "
                "WHERE s.action = 'restart'"
            ).fetchall()

    def idle() -> bool:
        with sqlite3.connect(state) as conn:
            try:
                running: int = conn.execute("SELECT COUNT(*) FROM incidents WHERE outcome = 'running'").fetchone()[0]
                return running == 0
            except sqlite3.OperationalError:
                return False  # the agent has not created its tables yet: still starting on a busy host

    try:
        time.sleep(1.0)  # the agent's start-up: imports, state, watcher armed
        return measure(app, kills, restart_times, idle)
    finally:
        agent.terminate()
        agent.wait(10)
        app.kill()


# -- monit ---------------------------------------------------------------------------------


def bench_monit(workdir: Path, kills: int) -> dict[str, list[float]]:
    monit = shutil.which("monit")
    if monit is None:
        raise SystemExit("monit is not installed: apt-get install -y monit")
    app = App(workdir, "service-under-monit")
    control = workdir / "monitrc"
    start = " ".join(f'"{arg}"' if " " in arg else arg for arg in app.start_argv)
    control.write_text(
        f"set daemon 1\n"
        f"set pidfile {workdir / 'monit.pid'}\n"
        f"set idfile {workdir / 'monit.id'}\n"
        f"set statefile {workdir / 'monit.state'}\n"
        f"set logfile {workdir / 'monit.log'}\n"
        f"check process web with pidfile {app.pidfile}\n"
        f"  start program = \"{start}\"\n"
        f"  if failed host 127.0.0.1 port {app.port} protocol http request /health then restart\n"
    )
    control.chmod(0o600)
    subprocess.run(app.start_argv, check=True)
    wait_for(app.answers, RECOVERY_TIMEOUT_S, interval_s=0.01)
    daemon = subprocess.Popen([monit, "-c", str(control), "-I"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)  # monit's first cycles
        return measure(app, kills)
    finally:
        daemon.terminate()
        daemon.wait(10)
        app.kill()


# -- report --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarise(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "p90": percentile(values, 0.9),
            "p99": percentile(values, 0.99), "max": max(values)}


def report_rows(results: dict[str, Any], peer_name: str) -> list[dict[str, Any]]:
    """The rows of bench/report.py: kill -> answering again, healwatch setups next to Monit, in ms."""
    common = {"unit": "ms", "peer_name": peer_name, "lower_is_better": True}
    monit = results["monit"]["recovery_s"]
    rows = []
    for row, setup, statistic, what in (
        ("recovery_mean", "healwatch", "mean", "SIGKILL -> answering again, mean (process-exit trigger)"),
        ("recovery_p99", "healwatch", "p99", "SIGKILL -> answering again, p99 (process-exit trigger)"),
        ("recovery_check_mean", "healwatch-check", "mean", "SIGKILL -> answering again, mean (1 s HTTP check)"),
    ):
        rows.append({"row": row, "what": what, **common,
                     "healwatch": round(results[setup]["recovery_s"][statistic] * 1000, 1),
                     "peer": round(monit[statistic] * 1000, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, help=f"kills per setup (default {FULL_KILLS}, {QUICK_KILLS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer kills, for a smoke test")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args()
    if args.kills is None:
        args.kills = QUICK_KILLS if args.quick else FULL_KILLS
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGCHLD, reap_children)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="healwatch-mttr-") as tmp:
        workdir = Path(tmp)
        runs: dict[str, Callable[[], dict[str, list[float]]]] = {
            "healwatch": lambda: bench_healwatch(workdir, args.kills, "process_exited"),
            "healwatch-check": lambda: bench_healwatch(workdir, args.kills, "check_failed"),
            "monit": lambda: bench_monit(workdir, args.kills),
        }
        for name, run in runs.items():
            raw = run()
            results[name] = {"samples": raw, **{key: summarise(values) for key, values in raw.items()}}
    monit_version = subprocess.run(["monit", "-V"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    peer_name = f"Monit {monit_version.split()[-1]}, 1 s cycle"
    report = {"kills": args.kills, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
              "python": platform.python_version(), "monit": monit_version, "results": results,
              "report": report_rows(results, peer_name)}
    write_json(args.output, report)
    print(f"{'setup':<16} {'metric':<28} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8}")
    for name, result in results.items():
        for metric, values in result.items():
            if metric != "samples":
                print(f"{name:<16} {metric:<28} {values['median'] * 1000:>10.1f} {values['p90'] * 1000:>8.1f} "
                      f"{values['p99'] * 1000:>8.1f}")
    ratio = results["healwatch"]["recovery_s"]["median"] / results["monit"]["recovery_s"]["median"]
    print(f"healwatch median recovery / monit median recovery = {ratio:.3f} (target <= 0.2)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "agent":
        asyncio.run(run_agent(sys.argv[2], sys.argv[3]))
    else:
        main()
