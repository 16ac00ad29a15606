"""The "see it heal" scenario: real HAProxy, supervisord, Prometheus and Alertmanager around healwatch.

Two instances of the example web app run under supervisord behind HAProxy; healwatch watches both,
Prometheus scrapes healwatch and the instances and loads the same rule file, Alertmanager receives
healwatch's pushes, and one loopback server stands in for Slack and a webhook receiver. A client
sends steady traffic through HAProxy and records every answer. ``run_case`` makes web1 sick in one
way and gathers what happened; ``kill_agent_mid_heal`` SIGKILLs healwatch in the middle of a heal.
Used by ``run.py`` (by hand) and ``tests/e2e/test_incident.py`` (CI), so both exercise the same thing.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import string
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

from harness.processes import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
APP = ROOT / "examples" / "webapp" / "app.py"
SMOKE = ROOT / "examples" / "rollback" / "smoke.py"
GOOD_VERSION, BAD_VERSION = "1.0", "2.0-bad"
AGENT_CONFIG = HERE / "healwatch.yaml"
RULES_FILE = HERE / "rules" / "webapp.rules.yaml"
TEMPLATES = ("haproxy.cfg", "prometheus.yml", "alertmanager.yml", "supervisord.conf")
BINARIES = ("haproxy", "supervisord", "prometheus", "promtool", "prometheus-alertmanager")
SICK = "web1"
RECEIVER_PATHS = ("/slack", "/hook", "/alertmanager")  # the Slack stand-in, the webhook, Alertmanager's webhook
CLIENT_WORKERS = 3
CLIENT_PAUSE_S = 0.05
WATCH_INTERVAL_S = 0.2
HEAL_STEPS = ("traffic cut", "restart", "wait_healthy", "traffic restore")
ROLLBACK_STEPS = ("traffic cut", "exec", "verify", "rollback: exec", "rollback: restart", "rollback: wait_healthy",
                  "rollback: exec", "verify after rollback", "traffic ramp 50/100%")

T = TypeVar("T")


class ScenarioError(Exception):
    """Something the scenario waited for did not happen; the message says what."""


@dataclass(frozen=True)
class Case:
    """One way to make web1 sick, the alert that should catch it, what should start the heal, and the
    promised time to recovery."""

    name: str
    how: str
    alertname: str
    recovery_budget_s: float  # from the fault to traffic restored, detection time included
    trigger: str = ""  # what the journal's trigger of the heal contains; default: the case's alert
    playbook: str = "heal-web1"
    steps: tuple[str, ...] = HEAL_STEPS  # the journaled steps of its heal, each ok
    allowed_before_cut: tuple[str, ...] = ()  # other alerts about web1 the fault itself fires

    @property
    def expected_trigger(self) -> str:
        return self.trigger or f'alert {{alertname="{self.alertname}"'


CASES = (
    Case("errors", "POST /control/sick?mode=errors: every request answered 500", "WebErrorRatioHigh", 50.0),
    Case("hang", "POST /control/sick?mode=hang: requests never answered", "WebNotAnswering", 15.0),
    Case("crash", "SIGKILL of the process", "WebRestarted", 10.0, trigger=f"of {SICK} exited"),
    Case("leak", "POST /control/sick?mode=leak: memory grows 8 MiB/s", "WebMemoryGrowing", 25.0),
    # 0.3 s (--slow-seconds in supervisord.conf): a p99 above WebLatencyHigh's 0.25 s, yet /health still
    # answers within its 400 ms probe timeout, so WebNotAnswering does not fire and heal first.
    Case("slow", "POST /control/sick?mode=slow: every request takes 0.3 s", "WebLatencyHigh", 20.0),
    # Deployed in maintenance (so the deploy's restart heals nothing); its own restart fires WebRestarted.
    # Healed by rollback-web1: the first verify fails on the bad version, the rollback's passes.
    Case("deploy", f"deploy of {BAD_VERSION}: a quarter of the requests to / answered 500", "WebDeployFailing", 30.0,
         playbook="rollback-web1", steps=ROLLBACK_STEPS, allowed_before_cut=("WebRestarted",)),
)


def wait_until(condition: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; ScenarioError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
        except (OSError, httpx.HTTPError, ValueError, KeyError) as exc:  # not up yet, or mid-restart
            last_error, result = exc, None
        if result:
            return result
        if time.monotonic() > deadline:
            reason = f" (last error: {last_error})" if last_error else ""
            raise ScenarioError(f"timed out after {timeout_s:g}s waiting for {what}{reason}")
        time.sleep(interval_s)


def parse_time(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


# -- the receivers: Slack stand-in, webhook receiver, Alertmanager's webhook ------------------------


@dataclass(frozen=True)
class Message:
    at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def alert_status(self) -> tuple[str, str, str] | None:
        """(alertname, service, firing|resolved) of an alert notification; None for a healing notice."""
        if self.path == "/slack":
            title = str(self.body.get("text", "")).split("\n", 1)[0]  # "[FIRING:1] WebNotAnswering web1"
            status, _, names = title.partition(" ")
            alertname, _, service = names.partition(" ")
            if not status.startswith(("[FIRING", "[RESOLVED")):
                return None
            return alertname, service, "firing" if status.startswith("[FIRING") else "resolved"
        labels = self.body.get("groupLabels", {})
        if "alertname" not in labels or labels["alertname"] == "HealwatchHealing":
            return None
        return labels["alertname"], labels.get("service", ""), str(self.body["status"])


class Receivers:
    """One loopback HTTP server answering 200 and recording JSON posts: /slack, /hook and /alertmanager."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        messages = self.messages

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # the narrative is printed elsewhere
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = {"unreadable": body.decode(errors="replace")}
                messages.append(Message(time.time(), self.path, dict(self.headers), parsed))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")  # what Slack's incoming webhooks answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="receivers", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def all_resolved(self, path: str, service: str, since: float) -> bool:
        """Whether the last message ``path`` got since ``since`` about each of the service's alerts says resolved."""
        last: dict[str, str] = {}
        for message in list(self.messages):
            status = message.alert_status() if message.path == path and message.at >= since else None
            if status is not None and status[1] == service:
                last[status[0]] = status[2]
        return all(state == "resolved" for state in last.values())

    def statuses(self, path: str, alertname: str, service: str, since: float) -> list[str]:
        """The firing/resolved sequence ``path`` received about one alert since ``since``."""
        return [status for m in list(self.messages) if m.path == path and m.at >= since
                for a, s, status in [m.alert_status() or ("", "", "")] if (a, s) == (alertname, service)]


# -- the client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all
    server: str  # the instance HAProxy chose (its X-Server header), "" without an answer
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status != 200


class Client:
    """Steady traffic through HAProxy from a few threads, every answer recorded."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=f"client-{i}", daemon=True)
                         for i in range(CLIENT_WORKERS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(10)

    def between(self, start: float, end: float) -> list[Request]:
        return [r for r in list(self.requests) if start <= r.started < end]

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                response = conn.getresponse()
                response.read()
                request = Request(started, time.time(), response.status, response.getheader("X-Server", ""))
            except (OSError, http.client.HTTPException) as exc:
                request = Request(started, time.time(), 0, "", f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            self.requests.append(request)
            self._stop.wait(CLIENT_PAUSE_S)


# -- HAProxy's and supervisord's control sockets ------------------------------------------------------


def haproxy_states(sock_path: Path, backend: str = "web") -> dict[str, str]:
    """Each server's admin state (ready, drain, maint) from the runtime API's ``show servers state``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(sock_path))
        sock.sendall(f"show servers state {backend}\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    lines = answer.decode().splitlines()
    header = next(line for line in lines if line.startswith("# be_id")).lstrip("# ").split()
    states = {}
    for line in lines:
        fields = line.split()
        if line.startswith("#") or len(fields) < len(header):
            continue
        row = dict(zip(header, fields))
        bits = int(row["srv_admin_state"])
        states[row["srv_name"]] = "maint" if bits & 0x23 else "drain" if bits & 0x18 else "ready"
    return states


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.unix_path)


def supervisor_call(sock_path: Path, method: str, program: str) -> Any:
    """One XML-RPC call to supervisord over its unix socket, e.g. ``supervisor.startProcess``."""
    conn = _UnixHTTPConnection(str(sock_path))
    try:
        conn.request("POST", "/RPC2", xmlrpc.client.dumps((program,), method), {"Content-Type": "text/xml"})
        (answer,), _ = xmlrpc.client.loads(conn.getresponse().read())
    finally:
        conn.close()
    return answer


def supervisor_state(sock_path: Path, program: str) -> str:
    """supervisord's state name of ``program`` (STARTING, RUNNING, EXITED, ...) over its unix socket."""
    info = supervisor_call(sock_path, "supervisor.getProcessInfo", program)
    assert isinstance(info, dict)
    return str(info["statename"])


# -- the timeline: what healwatch, Prometheus, Alertmanager and HAProxy showed, and when ---------------


@dataclass(frozen=True)
class Change:
    at: float
    source: str  # healwatch | prometheus | alertmanager | haproxy
    key: str  # "WebErrorRatioHigh/web1" for alerts, the server name for haproxy
    state: str  # pending | firing | inactive; active | inactive; ready | drain | maint


@dataclass
class Timeline:
    changes: list[Change] = field(default_factory=list)
    current: dict[tuple[str, str], str] = field(default_factory=dict)

    def observe(self, source: str, states: dict[str, str], at: float) -> None:
        """Record every key of ``source`` whose state differs from the last observation; missing keys are inactive."""
        keys = set(states) | {k for (s, k) in self.current if s == source}
        for key in sorted(keys):
            state = states.get(key, "inactive")
            if self.current.get((source, key), "inactive") != state:
                self.current[(source, key)] = state
                self.changes.append(Change(at, source, key, state))

    def first(self, source: str, key: str, state: str, since: float) -> float | None:
        return next((c.at for c in list(self.changes)
                     if c.source == source and c.key == key and c.state == state and c.at >= since), None)

    def states(self, source: str, key: str, since: float, until: float) -> list[str]:
        """The states ``key`` went through in [since, until], starting with the one it was in at ``since``."""
        before = [c.state for c in list(self.changes) if c.source == source and c.key == key and c.at < since]
        during = [c.state for c in list(self.changes) if c.source == source and c.key == key and since <= c.at <= until]
        return before[-1:] + during

    def active(self, source: str, service: str) -> list[str]:
        return [k for (s, k), state in list(self.current.items())
                if s == source and k.endswith(f"/{service}") and state != "inactive"]


class Watcher:
    """Polls healwatch, Prometheus, Alertmanager and HAProxy a few times a second into a Timeline."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.timeline = Timeline()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.wait(WATCH_INTERVAL_S):
                for source, poll in (("healwatch", self._healwatch), ("prometheus", self._prometheus),
                                     ("alertmanager", self._alertmanager), ("haproxy", self._haproxy)):
                    try:
                        states = poll(client)
                    except (OSError, httpx.HTTPError, ValueError, KeyError, StopIteration):
                        continue  # down for a moment (healwatch while it is killed): keep the last state
                    self.timeline.observe(source, states, time.time())

    def _healwatch(self, client: httpx.Client) -> dict[str, str]:
        alerts = client.get(f"{self.stack.agent_url}/api/v1/alerts").raise_for_status().json()["data"]["alerts"]
        return {_alert_key(a["labels"]): a["state"] for a in alerts}

    def _prometheus(self, client: httpx.Client) -> dict[str, str]:
        alerts = client.get(f"{self.stack.prometheus_url}/api/v1/alerts").raise_for_status().json()["data"]["alerts"]
        return {_alert_key(a["labels"]): a["state"] for a in alerts}

    def _alertmanager(self, client: httpx.Client) -> dict[str, str]:
        alerts = client.get(f"{self.stack.alertmanager_url}/api/v2/alerts").raise_for_status().json()
        return {_alert_key(a["labels"]): a["status"]["state"] for a in alerts}

    def _haproxy(self, client: httpx.Client) -> dict[str, str]:
        return haproxy_states(self.stack.dir / "haproxy.sock")


def _alert_key(labels: dict[str, str]) -> str:
    return f"{labels.get('alertname', '')}/{labels.get('service', '')}"


# -- the stack -------------------------------------------------------------------------------------


class Stack:
    """Every process of the scenario on free loopback ports in one directory; a context manager that
    stops them all (also on Ctrl-C or an error) and leaves no process behind."""

    def __init__(self, workdir: Path | None = None, log: Callable[[str], None] = lambda line: None) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="healwatch-incident-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.receivers = Receivers()
        self.ports = {name: free_port() for name in ("HEALWATCH_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT",
                                                     "FRONTEND_PORT", "WEB1_PORT", "WEB2_PORT")}
        self.env = {**{k: str(v) for k, v in self.ports.items()}, "RECEIVER_PORT": str(self.receivers.port),
                    "INCIDENT_DIR": str(self.dir), "RULES_FILE": str(RULES_FILE), "PYTHON": sys.executable,
                    "APP": str(APP), "SMOKE": str(SMOKE)}
        self.agent_url = f"http://127.0.0.1:{self.ports['HEALWATCH_PORT']}"
        self.prometheus_url = f"http://127.0.0.1:{self.ports['PROMETHEUS_PORT']}"
        self.alertmanager_url = f"http://127.0.0.1:{self.ports['ALERTMANAGER_PORT']}"
        self.frontend_url = f"http://127.0.0.1:{self.ports['FRONTEND_PORT']}"
        self.client = Client(self.ports["FRONTEND_PORT"])
        self.watcher = Watcher(self)
        self.http = httpx.Client(timeout=5)
        self.token = secrets.token_hex(16)  # healwatch's API token: the deploy switches maintenance on and off

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- starting and stopping ---------------------------------------------------------------------

    def render(self) -> None:
        """The config templates with this run's ports and paths, and web1's version files, in the scenario directory."""
        for name in TEMPLATES:
            text = string.Template((HERE / name).read_text()).substitute(self.env)
            (self.dir / name).write_text(text)
        for name in (f"{SICK}.version", f"{SICK}.version.good"):
            (self.dir / name).write_text(f"{GOOD_VERSION}\n")

    def start(self) -> None:
        missing = [name for name in BINARIES if shutil.which(name) is None]
        if missing:
            raise ScenarioError(f"not installed: {', '.join(missing)} (Debian: apt-get install haproxy supervisor "
                                "prometheus prometheus-alertmanager)")
        self.render()
        self.log(f"starting the stack in {self.dir} (configs, logs, state)")
        self.receivers.start()
        self.log("starting supervisord with web1 and web2 (the example web app)")
        self._spawn("supervisord", ["supervisord", "-n", "-c", str(self.dir / "supervisord.conf")])
        for name, port in (("web1", self.ports["WEB1_PORT"]), ("web2", self.ports["WEB2_PORT"])):
            wait_until(functools.partial(self._serves, f"http://127.0.0.1:{port}/health"), 15, f"{name} to serve")
        self.log("starting HAProxy in front of them")
        self._spawn("haproxy", ["haproxy", "-db", "-f", str(self.dir / "haproxy.cfg")])
        wait_until(lambda: self._serves(self.frontend_url), 10, "HAProxy to serve")
        self.log("starting Alertmanager")
        self._spawn("alertmanager", [
            "prometheus-alertmanager", f"--config.file={self.dir / 'alertmanager.yml'}",
            f"--storage.path={self.dir / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{self.ports['ALERTMANAGER_PORT']}",
            "--cluster.listen-address=", f"--web.external-url={self.alertmanager_url}", "--log.level=warn"])
        wait_until(lambda: self._serves(f"{self.alertmanager_url}/-/ready"), 15, "Alertmanager to be ready")
        self.log("starting healwatch")
        self.start_agent()
        self.log("starting Prometheus; waiting for it to scrape healwatch and both instances")
        self._spawn("prometheus", [
            "prometheus", f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.ports['PROMETHEUS_PORT']}", "--log.level=warn"])
        wait_until(lambda: self._targets_up() == 3, 30, "Prometheus to scrape healwatch and both instances")
        self.log("starting the client's steady traffic through HAProxy")
        self.client.start()
        self.watcher.start()
        wait_until(lambda: self.value('healwatch_scrape_up{service="web1"}') == 1, 15, "healwatch to scrape web1")
        wait_until(lambda: self.watcher.timeline.current.get(("haproxy", SICK)) == "ready", 10, "a first look at HAProxy")
        self.log("everything is up")

    def start_agent(self) -> None:
        """healwatch on its port with the example config; returns once it is ready."""
        self._spawn("healwatch", [sys.executable, "-m", "agent.cli", "run", "-c", str(AGENT_CONFIG),
                                  "--listen", f"127.0.0.1:{self.ports['HEALWATCH_PORT']}"],
                    env={"PYTHONPATH": str(ROOT), "HEALWATCH_TOKEN": self.token}, log_mode="ab")
        wait_until(lambda: self._serves(f"{self.agent_url}/-/ready"), 20, "healwatch to be ready")

    def kill_agent(self) -> None:
        process = self.children.pop("healwatch")
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            self.client.stop()
            self.watcher.stop()
            # healwatch first, so it does not heal what is being stopped; supervisord stops both instances.
            for name in ("healwatch", "prometheus", "alertmanager", "haproxy", "supervisord"):
                process = self.children.pop(name, None)
                if process is not None:
                    _terminate(process)
            self.receivers.stop()
            self.http.close()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, log_mode: str = "wb") -> None:
        with open(self.dir / f"{name}.log", log_mode) as log:
            # A session of its own: Ctrl-C in the terminal reaches only the scenario, which stops them in order.
            self.children[name] = subprocess.Popen(
                argv, cwd=self.dir, env={**os.environ, **self.env, **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)

    def _serves(self, url: str) -> bool:
        return self.http.get(url, timeout=1).status_code == 200

    def _targets_up(self) -> int:
        result = self.http.get(f"{self.prometheus_url}/api/v1/query", params={"query": "sum(up)"}).json()
        return int(float(result["data"]["result"][0]["value"][1])) if result["data"]["result"] else 0

    # -- reading the agent -------------------------------------------------------------------------

    def api(self, path: str) -> Any:
        return self.http.get(f"{self.agent_url}{path}").raise_for_status().json()["data"]

    def value(self, series: str) -> float | None:
        """The value of one series on healwatch's /metrics, e.g. ``healwatch_process_up{service="web1"}``."""
        for line in self.http.get(f"{self.agent_url}/metrics").text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        return None

    def incidents(self, service: str, since: float) -> list[dict[str, Any]]:
        """The service's incidents started at or after ``since``, oldest first, each with its steps."""
        listed = self.api(f"/api/v1/incidents?service={service}")["incidents"]
        recent = [i for i in listed if (parse_time(i["startedAt"]) or 0) >= since]
        return [self.api(f"/api/v1/incidents/{i['id']}") for i in reversed(recent)]

    def pid(self, service: str) -> int:
        return int((self.dir / f"{service}.pid").read_text())

    def make_sick(self, service: str, mode: str) -> None:
        if mode == "crash":
            os.kill(self.pid(service), signal.SIGKILL)  # from outside, as the OOM killer or an operator would
            return
        if mode == "deploy":
            self.deploy(service, BAD_VERSION)
            return
        port = self.ports[f"{service.upper()}_PORT"]
        self.http.post(f"http://127.0.0.1:{port}/control/sick", params={"mode": mode}).raise_for_status()

    def deploy(self, service: str, version: str) -> None:
        """A deploy as a release tool does it: maintenance on in healwatch, the new version file, a restart
        through supervisord, maintenance off once the new process serves."""
        maintenance = f"{self.agent_url}/api/v1/maintenance/{service}"
        auth = {"Authorization": f"Bearer {self.token}"}
        self.http.post(maintenance, headers=auth).raise_for_status()
        try:
            (self.dir / f"{service}.version").write_text(f"{version}\n")
            sock = self.dir / "supervisor.sock"
            supervisor_call(sock, "supervisor.stopProcess", service)
            supervisor_call(sock, "supervisor.startProcess", service)
            port = self.ports[f"{service.upper()}_PORT"]
            wait_until(lambda: f'version="{version}"' in self.http.get(f"http://127.0.0.1:{port}/metrics").text, 15,
                       f"{service} to run {version}")
        finally:
            self.http.delete(maintenance, headers=auth).raise_for_status()

    def outbox_ids(self) -> set[str]:
        """Ids of the notifications waiting in the (stopped) agent's outbox; a webhook's Idempotency-Key."""
        conn = sqlite3.connect(f"file:{self.dir / 'healwatch.db'}?mode=ro", uri=True)
        try:
            return {row_id for (row_id,) in conn.execute("SELECT id FROM outbox")}
        finally:
            conn.close()

    def check_configs(self) -> list[tuple[str, int, str]]:
        """Each config file through its own tool's checker: (command, exit status, output)."""
        self.render()
        commands = [
            [sys.executable, "-m", "agent.cli", "check", "config", str(AGENT_CONFIG)],
            ["promtool", "check", "rules", str(RULES_FILE)],
            ["promtool", "check", "config", str(self.dir / "prometheus.yml")],
            ["haproxy", "-c", "-f", str(self.dir / "haproxy.cfg")],
        ]
        if shutil.which("amtool"):
            commands.append(["amtool", "check-config", str(self.dir / "alertmanager.yml")])
        results = []
        for argv in commands:
            done = subprocess.run(argv, check=False, cwd=ROOT, env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)},
                                  capture_output=True, text=True, timeout=60)
            results.append((" ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv)),
                            done.returncode, done.stdout + done.stderr))
        return results


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- the cases -------------------------------------------------------------------------------------


@dataclass
class CaseReport:
    """What happened in one case, all times in seconds since the epoch."""

    case: Case
    began: float
    ended: float
    incidents: list[dict[str, Any]]
    fired_at: float | None  # healwatch
    prometheus_fired_at: float | None
    alertmanager_active_at: float | None
    resolved_at: float | None  # healwatch
    cut_at: float | None  # the journal's traffic-cut step finished
    restored_at: float | None  # the journal's traffic-restore step finished
    haproxy_states: list[str]  # web1's admin states over the case
    slack: list[str]  # firing/resolved messages about the case's alert
    webhook: list[str]
    alertmanager_webhook: list[str]
    requests: int
    failed_before_cut: int
    failed_after_cut: int
    served_by_sick_while_cut: int
    pid_before: int
    pid_after: int
    suspended: float | None
    other_alerts_before_cut: list[str]  # alerts about web1 other than the case's that fired in healwatch before the cut

    @property
    def trigger(self) -> str:
        """What started the case's first heal, as journaled: 'alert {alertname="...", ...}', 'process ... exited'."""
        return str(self.incidents[0]["trigger"]) if self.incidents else ""

    @property
    def recovery_s(self) -> float | None:
        return None if self.restored_at is None else self.restored_at - self.began

    def steps(self) -> list[tuple[str, str, float | None]]:
        """(action, result, seconds) of the case's first incident."""
        if not self.incidents:
            return []
        return [(s["action"], s["result"], s["durationSeconds"]) for s in self.incidents[0]["steps"]]


def run_case(stack: Stack, case: Case, progress: Callable[[str], None] = lambda line: None) -> CaseReport:
    """Make web1 sick as ``case`` says, wait for the heal and for every alert about it to resolve;
    ``progress`` hears each stage as it happens."""
    timeline = stack.watcher.timeline
    key = f"{case.alertname}/{SICK}"
    pid_before = stack.pid(SICK)
    began = time.time()
    progress(f"-- {case.name}: {case.how}; expecting {case.alertname} to heal it within {case.recovery_budget_s:g}s")
    stack.make_sick(SICK, case.name)
    healed = wait_until(lambda: [i for i in stack.incidents(SICK, began) if i["outcome"] != "running"],
                        case.recovery_budget_s + 20, f"healwatch to finish healing {SICK} ({case.name})")
    progress(f"   heal {healed[0]['outcome']} +{time.time() - began:.1f}s (trigger: {healed[0]['trigger']});"
             " waiting for every alert to resolve everywhere")
    fired_at = wait_until(lambda: timeline.first("healwatch", key, "firing", began), 10, f"{key} to fire in healwatch")
    wait_until(lambda: timeline.first("prometheus", key, "firing", began), 20, f"{key} to fire in Prometheus")
    wait_until(lambda: timeline.first("alertmanager", key, "active", began), 10, f"{key} to show in Alertmanager")
    for path in RECEIVER_PATHS:
        def resolved(path: str = path) -> bool:
            return "resolved" in stack.receivers.statuses(path, case.alertname, SICK, began)

        wait_until(resolved, 60, f"{path} to receive {key} resolved")
    # Every alert about web1 (a restart's WebRestarted too) over, in both places: the next case starts clean.
    wait_until(lambda: not timeline.active("healwatch", SICK) and not timeline.active("prometheus", SICK)
               and not timeline.active("alertmanager", SICK), 60, f"every alert about {SICK} to resolve")
    # ... and told as resolved to every receiver: a resolve still unsent when the next case re-fires the same
    # alert (WebRestarted after each heal) would never be sent, as in Alertmanager, and blur the next case.
    wait_until(lambda: all(stack.receivers.all_resolved(path, SICK, began) for path in RECEIVER_PATHS), 60,
               f"every receiver to hear each alert about {SICK} resolved")
    ended = time.time()
    incidents = stack.incidents(SICK, began)
    steps = incidents[0]["steps"] if incidents else []
    cut_at = next((parse_time(s["endedAt"]) for s in steps if s["action"] == "traffic cut" and s["result"] == "ok"), None)
    restore = [s for s in steps if s["action"].startswith(("traffic restore", "traffic ramp")) and s["result"] == "ok"]
    restored_at = parse_time(restore[-1]["endedAt"]) if restore else None
    # Traffic may flow to web1 again from the moment the restore step began: HAProxy applies it before the
    # step's end is journaled, so a request starting in between is rightly served by web1.
    restoring_at = parse_time(restore[-1]["startedAt"]) if restore else None
    requests = stack.client.between(began, ended)
    cut = cut_at or ended
    while_cut = stack.client.between(cut, restoring_at or ended)
    return CaseReport(
        case=case, began=began, ended=ended, incidents=incidents, fired_at=fired_at,
        prometheus_fired_at=timeline.first("prometheus", key, "firing", began),
        alertmanager_active_at=timeline.first("alertmanager", key, "active", began),
        resolved_at=timeline.first("healwatch", key, "inactive", fired_at),
        cut_at=cut_at, restored_at=restored_at,
        haproxy_states=timeline.states("haproxy", SICK, began, ended),
        slack=stack.receivers.statuses("/slack", case.alertname, SICK, began),
        webhook=stack.receivers.statuses("/hook", case.alertname, SICK, began),
        alertmanager_webhook=stack.receivers.statuses("/alertmanager", case.alertname, SICK, began),
        requests=len(requests),
        failed_before_cut=sum(r.failed for r in stack.client.between(began, cut)),
        failed_after_cut=sum(r.failed for r in stack.client.between(cut, ended)),
        served_by_sick_while_cut=sum(r.server == SICK for r in while_cut),
        pid_before=pid_before, pid_after=stack.pid(SICK),
        suspended=stack.value(f'healwatch_autoheal_suspended{{service="{SICK}"}}'),
        other_alerts_before_cut=sorted({c.key.partition("/")[0] for c in list(timeline.changes)
                                        if c.source == "healwatch" and c.key.endswith(f"/{SICK}") and c.key != key
                                        and c.key.partition("/")[0] not in case.allowed_before_cut
                                        and c.state == "firing" and began <= c.at < cut}),
    )


def case_problems(report: CaseReport) -> list[str]:
    """Why the case did not go as it should: the advertised alert fired and started the one heal of the case's
    playbook, its steps as expected, traffic restored within budget, nothing failed after the cut. Empty when it passed."""
    r, c = report, report.case
    problems = []
    if r.fired_at is None:
        problems.append(f"{c.alertname} never fired in healwatch")
    if c.expected_trigger not in r.trigger:
        problems.append(f"healed on {r.trigger or 'nothing'}, not {c.expected_trigger}")
    if r.other_alerts_before_cut:
        problems.append(f"{', '.join(r.other_alerts_before_cut)} fired before the cut")
    outcomes = [(i["playbook"], i["outcome"]) for i in r.incidents]
    if outcomes != [(c.playbook, "succeeded")]:
        problems.append(f"heal outcomes {outcomes}")
    expected = [(step, "failed" if step == "verify" else "ok") for step in c.steps]
    if r.incidents and [(action, result) for action, result, _ in r.steps()] != expected:
        problems.append(f"steps {r.steps()}")
    if r.recovery_s is None or r.recovery_s > c.recovery_budget_s:
        problems.append(f"recovery {'never' if r.recovery_s is None else f'{r.recovery_s:.1f}s'}"
                        f" over its {c.recovery_budget_s:g}s budget")
    if r.failed_after_cut or r.served_by_sick_while_cut:
        problems.append(f"{r.failed_after_cut} requests failed after the cut, {r.served_by_sick_while_cut} went to {SICK}")
    return problems


def verdict(report: CaseReport) -> str:
    """One PASS/FAIL line with the case's key timings."""
    r, c = report, report.case
    problems = case_problems(report)
    timings = (f"{c.alertname} fired {_at(r.fired_at, r.began)}, cut {_at(r.cut_at, r.began)},"
               f" restored {_at(r.restored_at, r.began)} (budget {c.recovery_budget_s:g}s)")
    return f"{'FAIL' if problems else 'PASS'} {c.name}: {timings}" + (f"; {'; '.join(problems)}" if problems else "")


@dataclass
class AgentCrashReport:
    """healwatch SIGKILLed while its playbook had cut web1's traffic and was restarting it, then started again."""

    began: float
    killed_at: float
    back_at: float
    ended: float
    incident: dict[str, Any]
    later_incidents: list[dict[str, Any]]
    pending_at_kill: set[str]  # outbox ids (webhook Idempotency-Keys) the killed agent had not delivered
    delivered_before_kill: set[str]
    delivered_after_restart: list[str]  # Idempotency-Keys of webhook deliveries after the restart, in order
    haproxy_state: str
    web1_serves: bool
    requests: int
    failed: int
    failed_after_restore: int


def kill_agent_mid_heal(stack: Stack, progress: Callable[[str], None] = lambda line: None) -> AgentCrashReport:
    """Crash web1, SIGKILL healwatch once its playbook has cut traffic and supervisord is starting web1,
    start healwatch again on the same state directory and wait until it has finished what was left."""
    began = time.time()
    progress(f"-- agent crash: SIGKILL of {SICK}, then of healwatch in the middle of healing it")
    stack.make_sick(SICK, "crash")

    def mid_restart() -> dict[str, Any] | None:
        for incident in stack.incidents(SICK, began):
            done = [(s["action"], s["result"]) for s in incident["steps"]]
            if done == [("traffic cut", "ok"), ("restart", "running")] and \
                    supervisor_state(stack.dir / "supervisor.sock", SICK) == "STARTING":
                return incident
        return None

    incident = wait_until(mid_restart, 15, "the playbook to be in its restart step", interval_s=0.02)
    delivered_before = {m.headers.get("Idempotency-Key", "") for m in list(stack.receivers.messages) if m.path == "/hook"}
    stack.kill_agent()
    killed_at = time.time()
    pending = stack.outbox_ids()
    progress(f"   healwatch SIGKILLed +{killed_at - began:.1f}s with {len(pending)} notification(s) in its outbox;"
             " starting it again")
    stack.start_agent()
    back_at = time.time()
    finished = wait_until(lambda: (found := stack.api(f"/api/v1/incidents/{incident['id']}"))["outcome"] != "running"
                          and found, 20, "the restarted healwatch to close the interrupted incident")
    wait_until(lambda: stack.watcher.timeline.current.get(("haproxy", SICK)) == "ready", 10, f"{SICK} back in HAProxy")
    wait_until(lambda: pending <= {m.headers.get("Idempotency-Key", "") for m in list(stack.receivers.messages)},
               20, "the outbox to deliver what the killed agent left")
    wait_until(lambda: not stack.watcher.timeline.active("healwatch", SICK), 30, f"every alert about {SICK} to resolve")
    ended = time.time()
    requests = stack.client.between(began, ended)
    return AgentCrashReport(
        began=began, killed_at=killed_at, back_at=back_at, ended=ended, incident=finished,
        later_incidents=[i for i in stack.incidents(SICK, began) if i["id"] != incident["id"]],
        pending_at_kill=pending, delivered_before_kill=delivered_before,
        delivered_after_restart=[m.headers.get("Idempotency-Key", "") for m in list(stack.receivers.messages)
                                 if m.path == "/hook" and m.at >= killed_at],
        haproxy_state=haproxy_states(stack.dir / "haproxy.sock")[SICK],
        web1_serves=stack._serves(f"http://127.0.0.1:{stack.ports['WEB1_PORT']}/health"),
        requests=len(requests), failed=sum(r.failed for r in requests),
        failed_after_restore=sum(r.failed for r in stack.client.between(parse_time(finished["endedAt"]) or ended, ended)),
    )


# -- the narrative ---------------------------------------------------------------------------------


def _at(t: float | None, began: float) -> str:
    return "never" if t is None else f"+{t - began:5.1f}s"


def narrate_case(report: CaseReport) -> Iterator[str]:
    """A readable account of one case, for people."""
    r, c = report, report.case
    yield f"== {c.name}: {c.how}"
    yield f"   {c.alertname} fired in healwatch {_at(r.fired_at, r.began)}, in Prometheus {_at(r.prometheus_fired_at, r.began)}," \
          f" in Alertmanager {_at(r.alertmanager_active_at, r.began)}; resolved {_at(r.resolved_at, r.began)}"
    yield f"   traffic to {SICK} cut {_at(r.cut_at, r.began)}, restored {_at(r.restored_at, r.began)}" \
          f" (HAProxy: {' -> '.join(r.haproxy_states)}); pid {r.pid_before} -> {r.pid_after}"
    yield f"   client: {r.requests} requests, {r.failed_before_cut} failed before the cut, {r.failed_after_cut} after;" \
          f" {r.served_by_sick_while_cut} served by {SICK} while cut"
    yield f"   Slack got {', '.join(r.slack) or 'nothing'}; webhook {', '.join(r.webhook) or 'nothing'};" \
          f" Alertmanager's webhook {', '.join(r.alertmanager_webhook) or 'nothing'}"
    for incident in r.incidents:
        yield f"   journal {incident['id']} ({incident['trigger']}): {incident['outcome']} in {incident['durationSeconds']}s"
        for step in incident["steps"]:
            yield f"     {step['action']:<22} {step['result']:<8} {step['durationSeconds']}s  {step['error'] or ''}".rstrip()
    recovery = "n/a" if r.recovery_s is None else f"{r.recovery_s:.1f}s"
    yield f"   recovered in {recovery} (budget {c.recovery_budget_s:g}s)"


def agent_crash_problems(report: AgentCrashReport) -> list[str]:
    """Why the restarted agent did not finish the interrupted heal as it should; empty when it did."""
    r = report
    problems = []
    if r.incident["outcome"] != "interrupted":
        problems.append(f"the killed run ended {r.incident['outcome']}, not interrupted")
    if r.haproxy_state != "ready" or not r.web1_serves:
        problems.append(f"{SICK} {r.haproxy_state} in HAProxy, serving: {r.web1_serves}")
    if r.failed:
        problems.append(f"{r.failed} client requests failed")
    if not r.pending_at_kill <= set(r.delivered_after_restart):
        problems.append("the outbox lost notifications")
    return problems


def agent_crash_verdict(report: AgentCrashReport) -> str:
    r = report
    problems = agent_crash_problems(report)
    timings = (f"killed {_at(r.killed_at, r.began)}, ready again {_at(r.back_at, r.began)},"
               f" run closed {_at(parse_time(r.incident.get('endedAt')), r.began)}")
    return f"{'FAIL' if problems else 'PASS'} agent crash: {timings}" + (f"; {'; '.join(problems)}" if problems else "")


def narrate_agent_crash(report: AgentCrashReport) -> Iterator[str]:
    r = report
    yield "== healwatch SIGKILLed mid-heal: web1 crashed, healwatch killed while restarting it"
    yield f"   killed {_at(r.killed_at, r.began)}, ready again {_at(r.back_at, r.began)};" \
          f" {len(r.pending_at_kill)} notification(s) were waiting in its outbox"
    yield f"   journal {r.incident['id']}: {r.incident['outcome']} ({r.incident['detail']})"
    for step in r.incident["steps"]:
        yield f"     {step['action']:<16} {step['result']:<12} {step['durationSeconds']}s"
    yield f"   {SICK} in HAProxy: {r.haproxy_state}; serving: {r.web1_serves};" \
          f" client: {r.requests} requests, {r.failed} failed"
