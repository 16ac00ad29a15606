"""A bad deploy, rolled back: the example web app under supervisord, healwatch beside it, a client in front.

The app runs version 1.0. The "deploy" writes 2.0-bad to its version file and restarts it through
supervisord; that version answers a quarter of the requests to / with 500. healwatch scrapes the
app every second and WebErrorRatioHigh fires after 3 s above 5 %; the playbook rollback-web cuts
traffic (a flag file the client honours, as a load balancer would), sends smoke traffic and verifies
the error ratio from the scraped series. The verify fails, so the rollback copies version.good back,
restarts the app, waits for its check and sends smoke traffic again; the verify then passes and
traffic is restored. Finally ``healwatch heal web --playbook check-web`` runs the second playbook,
a guard (no 5xx for 2 s), through the CLI. ``run`` returns what happened, with the journal.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from harness.processes import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
APP = ROOT / "examples" / "webapp" / "app.py"
GOOD, BAD = "1.0", "2.0-bad"
CLIENT_RATE = 20.0  # requests per second to / while the instance is in rotation
T = TypeVar("T")


class ScenarioError(Exception):
    """Something the scenario waited for did not happen in time, or a part is missing."""


def wait_until(condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``condition`` (errors count as not yet) every 0.1 s until it returns a true value."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except (httpx.HTTPError, OSError, KeyError, IndexError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise ScenarioError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.1)


class Client(threading.Thread):
    """Steady traffic to / while the flag file is absent; every answer recorded as (time, status)."""

    def __init__(self, url: str, flag: Path) -> None:
        super().__init__(name="client", daemon=True)
        self.url = url
        self.flag = flag
        self.answers: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1 / CLIENT_RATE):
            if self.flag.exists():
                continue
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0  # refused or timed out: the instance is down
            self.answers.append((time.time(), status))

    def failures(self, start: float, end: float = float("inf")) -> int:
        return sum(1 for at, status in self.answers if start <= at < end and status != 200)


@dataclass
class Report:
    """What the run showed: the deploy, the incident with its journal, what the client saw, the CLI's heal."""

    deployed_at: float
    incident: dict[str, Any]
    client_failures_before_cut: int
    client_failures_after_restore: int
    client_requests_after_restore: int
    version_after: str
    manual_exit: int
    manual_output: str
    journal_output: str  # what `healwatch incidents ID` printed for the incident
    steps: list[dict[str, Any]] = field(default_factory=list)

    def at(self, stamp: str) -> float:
        """Seconds since the deploy of one of the journal's RFC 3339 times."""
        return datetime.fromisoformat(stamp).timestamp() - self.deployed_at

    def lines(self) -> list[str]:
        out = [f"healwatch incidents {self.incident['id']}:", *("  " + line for line in self.journal_output.splitlines()),
               f"incident {self.incident['id']}: {self.incident['outcome']}, {self.incident['trigger']}, "
               f"started {self.at(self.incident['startedAt']):.1f}s after the deploy, took "
               f"{self.incident['durationSeconds']:.1f}s"]
        for step in self.steps:
            out.append(f"  {step['action']:<26} {step['result']:<8} +{self.at(step['startedAt']):5.1f}s "
                       f"{step['durationSeconds']:5.1f}s  {step['error']}".rstrip())
        out.append(f"client: {self.client_failures_before_cut} failed requests between the deploy and the cut, "
                   f"{self.client_failures_after_restore} of {self.client_requests_after_restore} after the restore")
        out.append(f"version running after the heal: {self.version_after}")
        out.append(f"healwatch heal web --playbook check-web (exit {self.manual_exit}):")
        out += ["  " + line for line in self.manual_output.splitlines()]
        return out


class Stack:
    """supervisord with the app, and healwatch, on free loopback ports in one directory; stops them all."""

    def __init__(self, workdir: Path | None, log: Callable[[str], None]) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="healwatch-rollback-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.ports = {"HEALWATCH_PORT": free_port(), "WEB_PORT": free_port()}
        self.env = {**{k: str(v) for k, v in self.ports.items()}, "ROLLBACK_DIR": str(self.dir),
                    "PYTHON": sys.executable, "APP": str(APP), "HERE": str(HERE),
                    "HEALWATCH_TOKEN": secrets.token_hex(16), "PYTHONPATH": str(ROOT)}
        self.agent_url = f"http://127.0.0.1:{self.ports['HEALWATCH_PORT']}"
        self.web_url = f"http://127.0.0.1:{self.ports['WEB_PORT']}/"
        self.flag = self.dir / "web.out-of-rotation"
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.http = httpx.Client(timeout=5)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if shutil.which("supervisord") is None:
            raise ScenarioError("not installed: supervisord (Debian: apt-get install supervisor)")
        conf = string.Template((HERE / "supervisord.conf").read_text()).substitute(self.env)
        (self.dir / "supervisord.conf").write_text(conf)
        (self.dir / "version").write_text(GOOD + "\n")
        (self.dir / "version.good").write_text(GOOD + "\n")
        self.log(f"starting supervisord with the web app {GOOD} in {self.dir}")
        self._spawn("supervisord", ["supervisord", "-n", "-c", str(self.dir / "supervisord.conf")])
        wait_until(lambda: self.http.get(self.web_url + "health", timeout=1).status_code == 200, 15, "the app")
        self.log("starting healwatch")
        self._spawn("healwatch", [sys.executable, "-m", "agent.cli", "run", "-c", str(HERE / "healwatch.yaml"),
                                  "--listen", f"127.0.0.1:{self.ports['HEALWATCH_PORT']}"])
        wait_until(lambda: self.http.get(f"{self.agent_url}/-/ready", timeout=1).status_code == 200, 20,
                   "healwatch to be ready")

    def stop(self) -> None:
        for name in ("healwatch", "supervisord"):  # healwatch first: it must not heal what is being stopped
            process = self.children.pop(name, None)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.http.close()

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.dir / f"{name}.log", "wb") as log:
            self.children[name] = subprocess.Popen(argv, cwd=self.dir, env={**os.environ, **self.env},
                                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                   start_new_session=True)

    def query(self, expr: str) -> list[Any]:
        """An instant query to healwatch's own PromQL API (its local store)."""
        answer = self.http.get(f"{self.agent_url}/api/v1/query", params={"query": expr}).json()
        result: list[Any] = answer["data"]["result"]
        return result

    def incidents(self) -> list[dict[str, Any]]:
        data: dict[str, Any] = self.http.get(f"{self.agent_url}/api/v1/incidents", params={"service": "web"}).json()
        incidents: list[dict[str, Any]] = data["data"]["incidents"]
        return incidents

    def incident(self, incident_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(f"{self.agent_url}/api/v1/incidents/{incident_id}").json()
        incident: dict[str, Any] = data["data"]
        return incident

    def deploy(self, version: str) -> None:
        """Write the version file and restart the app through supervisord, as a deploy would."""
        (self.dir / "version").write_text(version + "\n")
        subprocess.run(["supervisorctl", "-c", str(self.dir / "supervisord.conf"), "restart", "web"],
                       check=True, capture_output=True, timeout=30)

    def healwatch(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", *args, "--url", self.agent_url], cwd=ROOT,
                              env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120)


def run(workdir: Path | None = None, log: Callable[[str], None] = lambda line: None) -> Report:
    """The whole story once; raises ScenarioError when a part does not come up or nothing heals in time."""
    with Stack(workdir, log) as stack:
        client = Client(stack.web_url, stack.flag)
        client.start()
        try:
            wait_until(lambda: stack.query('sum(rate(http_request_duration_seconds_count{handler="/"}[5s])) > 0'),
                       20, "healwatch to see the client's traffic")
            log(f"deploying {BAD}: a quarter of the requests to / fail")
            deployed_at = time.time()
            stack.deploy(BAD)
            first = wait_until(lambda: next((i for i in stack.incidents() if i["playbook"] == "rollback-web"), None),
                               60, "WebErrorRatioHigh to start the playbook")
            log(f"the playbook started {datetime.fromisoformat(first['startedAt']).timestamp() - deployed_at:.1f}s "
                "after the deploy")
            incident = wait_until(lambda: (found := stack.incident(first["id"]))["endedAt"] and found, 90,
                                  "the playbook to finish")
            restored_at = time.time()
            wait_until(lambda: len([a for a in client.answers if a[0] >= restored_at]) >= CLIENT_RATE * 2, 20,
                       "two seconds of traffic after the restore")
        finally:
            client.halt.set()
            client.join(5)
        cut = next(step for step in incident["steps"] if step["action"] == "traffic cut")
        cut_at = datetime.fromisoformat(cut["startedAt"]).timestamp()
        version = stack.http.get(stack.web_url + "metrics").text
        running = next((line.split('"')[1] for line in version.splitlines()
                        if line.startswith("webapp_version_info")), "?")
        log("running healwatch heal web --playbook check-web")
        manual = stack.healwatch("heal", "web", "--playbook", "check-web")
        journal = stack.healwatch("incidents", incident["id"])
        return Report(
            deployed_at=deployed_at, incident=incident, steps=incident["steps"],
            client_failures_before_cut=client.failures(deployed_at, cut_at),
            client_failures_after_restore=client.failures(restored_at),
            client_requests_after_restore=len([a for a in client.answers if a[0] >= restored_at]),
            version_after=running, manual_exit=manual.returncode, manual_output=manual.stdout + manual.stderr,
            journal_output=journal.stdout + journal.stderr,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="A bad deploy rolled back by a playbook that verifies itself.")
    parser.add_argument("--dir", type=Path, help="keep configs, logs and state here (default: a temp directory)")
    args = parser.parse_args()
    began = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - began:5.1f}s] {line}", flush=True)

    try:
        report = run(args.dir, log)
    except ScenarioError as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    ok = report.incident["outcome"] == "succeeded" and report.version_after == GOOD and report.manual_exit == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1
