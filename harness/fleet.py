"""Agents beside their services in one fleet group: the scenario the fleet tests and ``bench.fleet`` share.

Each agent is a real ``healwatch run`` child process with its own state database, port and log,
watching one real service (``examples/webapp/app.py``) through an HTTP check. The service is
(re)started by a small launcher that notes every start and brings the app up detached after a
delay, so a heal spends that long in ``wait_healthy`` and heals on several hosts overlap. The
playbook cuts traffic (flag file), restarts, waits until healthy and restores traffic, inside a
slot of fleet group ``api``. After a run, each agent's journal (``/api/v1/incidents``) and log
give one ``Heal`` per agent: when the check failed, when the heal was denied a slot, when the
slot was taken, and when its steps ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self, cast

import httpx
import psutil
import redis

from harness.agent import ROOT
from harness.processes import free_port, stop, wait_for

APP = ROOT / "examples" / "webapp" / "app.py"
GROUP = "api"
SERVICE = "web"
CHECK_INTERVAL = "200ms"

# Notes the start, then execs the app in a detached child after a delay: the service's slow start.
# -I -S keep interpreter start-up short; stdio goes to /dev/null so the restart step's pipe closes.
LAUNCHER = """
import os, sys, time
stamps, delay, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
pid = os.fork()
if pid == 0:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    time.sleep(delay)
    os.execv(argv[0], argv)
with open(stamps, "a") as out:
    out.write(f"{time.time()} {pid}\\n")
"""


class FleetService:
    """The example web app on a free port; started (and restarted by its agent) through the launcher."""

    def __init__(self, workdir: Path, start_delay_s: float) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pidfile = workdir / "web.pid"
        self.stamps = workdir / "web.starts"
        self.traffic_flag = workdir / "web.down"
        self._launcher_path = workdir / "launch.py"
        self._launcher_path.write_text(LAUNCHER)
        self._launcher = [sys.executable, "-I", "-S", str(self._launcher_path), str(self.stamps)]
        self._app = [sys.executable, "-I", "-S", str(APP), "--port", str(self.port), "--pidfile", str(self.pidfile)]
        self.restart_argv = self.launch_argv(start_delay_s)

    def launch_argv(self, delay_s: float) -> list[str]:
        """The command that notes a start and brings the app up ``delay_s`` later."""
        return [*self._launcher, f"{delay_s:g}", *self._app]

    def start(self) -> None:
        """The first start, at once; returns before the app answers."""
        subprocess.run(self.launch_argv(0), check=True, timeout=10)

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def starts(self) -> list[float]:
        """When the launcher ran: the first start, then each restart."""
        if not self.stamps.exists():
            return []
        return [float(line.split()[0]) for line in self.stamps.read_text().splitlines()]

    def kill(self) -> None:
        """SIGKILL the serving process: the failure every agent then heals."""
        os.kill(int(self.pidfile.read_text()), signal.SIGKILL)

    def cleanup(self) -> None:
        """SIGKILL every app the launcher started that still runs (a slow start may still be sleeping)."""
        if not self.stamps.exists():
            return
        ours = {str(APP), str(self._launcher_path)}  # never a process that reused one of the pids
        for line in self.stamps.read_text().splitlines():
            try:
                process = psutil.Process(int(line.split()[1]))
                if ours & set(process.cmdline()):
                    process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass


def agent_config(
    workdir: Path, service: FleetService, member: str, store_url: str | None, *,
    backend: str = "redis", policy: str = "fail_closed", max_concurrent: int = 2,
    lease_ttl_s: float = 2.0, member_ttl_s: float = 3.0, wait_healthy_s: float = 20.0,
) -> dict[str, Any]:
    """One agent, one service, one playbook in fleet group ``api``; no host collector, no default rules.

    ``backend`` is the coordination store's (``none`` keeps the ``fleet:`` section, which then does
    nothing, so the playbook is the same); ``store_url`` is left out when None. Safety limits are
    loose (cooldown and backoff 1 ms, 1,000 runs an hour) so the benchmark can heal the same service
    again at once; the fleet budget is the only limit that matters here.
    """
    return {
        "state_path": str(workdir / "state.db"),
        "host": {"enabled": False},
        "default_rules": False,
        "services": {SERVICE: {
            "checks": [{"name": "http", "http": {"url": f"{service.url}/health"}, "interval": CHECK_INTERVAL,
                        "timeout": "500ms", "failure_threshold": 1}],
            "restart": {"exec": service.restart_argv},
            "traffic": {"file": {"path": str(service.traffic_flag)}},
        }},
        "playbooks": [{
            "name": "heal-web", "when": [{"check_failed": {"service": SERVICE}}],
            "steps": [{"traffic": "cut"}, {"restart": {}}, {"wait_healthy": {"timeout": f"{wait_healthy_s:g}s"}},
                      {"traffic": "restore"}],
            "budget": {"max_runs": 1000, "within": "1h"}, "backoff": {"initial": "1ms", "factor": 1, "max": "1ms"},
            "cooldown": "1ms",
            "fleet": {"group": GROUP, "max_concurrent": max_concurrent},
        }],
        "coordination": {
            "backend": backend, "policy": policy, "lease_ttl": f"{lease_ttl_s:g}s", "member_ttl": f"{member_ttl_s:g}s",
            "member": member, **({"url": store_url} if store_url is not None else {}),
        },
    }


class FleetAgent:
    """``healwatch run`` in a child process; unlike ``AgentProcess`` it does not wait, so many start at once."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.member = str(config["coordination"]["member"])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "agent.log"
        config_path = workdir / "agent.yaml"
        config_path.write_text(json.dumps(config))  # JSON is YAML
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "-c", str(config_path),
                 "--listen", f"127.0.0.1:{self.port}"],
                cwd=workdir, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log,
            )

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def incidents(self) -> list[dict[str, Any]]:
        """The journal's incidents, oldest first, each with its steps."""
        listed = httpx.get(f"{self.url}/api/v1/incidents", params={"limit": 100}, timeout=5).json()["data"]
        return [httpx.get(f"{self.url}/api/v1/incidents/{incident['id']}", timeout=5).json()["data"]
                for incident in reversed(listed["incidents"])]

    def value(self, series: str) -> float | None:
        """The value of one exposed series, e.g. ``healwatch_fleet_store_errors_total``."""
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        return None

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]

    def log_times(self, event: str) -> list[float]:
        """When the agent logged ``event`` (its structlog message), as Unix times."""
        return [parse_time(entry["timestamp"]) for entry in self.logs() if entry.get("event") == event]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)

    def stop(self) -> None:
        stop(self.process)


class Fleet:
    """``size`` services and their agents, in one fleet group; a context manager that stops them all."""

    def __init__(
        self, workdir: Path, size: int, store_url: str | None, *, start_delays_s: Sequence[float] | None = None,
        startup_timeout_s: float = 60.0, **settings: Any,
    ) -> None:
        """``settings`` go to ``agent_config`` (backend, policy, max_concurrent, lease_ttl_s, ...)."""
        delays = list(start_delays_s) if start_delays_s is not None else [1.0] * size
        self.services: list[FleetService] = []
        self.agents: list[FleetAgent] = []
        try:
            for index in range(size):
                service = FleetService(workdir / f"agent-{index}", delays[index])
                self.services.append(service)
                service.start()
            for index, service in enumerate(self.services):
                directory = workdir / f"agent-{index}"
                config = agent_config(directory, service, f"agent-{index}", store_url, **settings)
                self.agents.append(FleetAgent(directory, config))
            wait_for(lambda: all(s.answers() for s in self.services) and all(a.ready() for a in self.agents),
                     timeout_s=startup_timeout_s, interval_s=0.2)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fail_all(self) -> float:
        """SIGKILL every service at once; returns when."""
        failed_at = time.time()
        for service in self.services:
            service.kill()
        return failed_at

    def healed(self) -> bool:
        """Every service answers and every agent journaled a succeeded heal."""
        return all(s.answers() for s in self.services) and all(
            any(i["outcome"] == "succeeded" for i in a.incidents()) for a in self.agents)

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        for service in self.services:
            service.cleanup()


@dataclass(frozen=True)
class Heal:
    """One agent's heal of its service, as its journal and log tell it (Unix times)."""

    agent: str
    failed_at: float | None  # the check turned unhealthy
    denied_at: float | None  # the first denial of a slot, journaled
    slot_taken_at: float | None  # the agent logged the grant
    started_at: float  # the first step started
    ended_at: float  # the last step ended (before the slot is given back)
    outcome: str
    incidents: tuple[str, ...]  # every incident's outcome, oldest first

    @property
    def waited_s(self) -> float:
        return self.started_at - (self.failed_at if self.failed_at is not None else self.started_at)


def heal_of(agent: FleetAgent, since: float) -> Heal:
    """The agent's first run after ``since`` that got past cutting traffic; AssertionError if there is none.

    Denied heals and runs blocked on an unreachable store (traffic cut only) show in ``incidents``.
    """
    incidents = [i for i in agent.incidents() if parse_time(i["startedAt"]) >= since]
    runs = [i for i in incidents if i.get("steps") and i["outcome"] not in ("denied", "blocked")]
    assert runs, f"{agent.member} ran no heal after {since}: {[i['outcome'] for i in incidents]}"
    run = runs[0]
    denials = [parse_time(i["startedAt"]) for i in incidents if i["outcome"] == "denied"]
    started = min(parse_time(step["startedAt"]) for step in run["steps"])
    ended = max(parse_time(step["endedAt"] or run["endedAt"]) for step in run["steps"])
    failed = [t for t in _unhealthy_times(agent) if since <= t <= started]
    taken = [t for t in agent.log_times("fleet slot taken") if since <= t <= started]
    return Heal(
        agent.member, failed[0] if failed else None, denials[0] if denials else None,
        taken[-1] if taken else None, started, ended, run["outcome"], tuple(i["outcome"] for i in incidents),
    )


def _unhealthy_times(agent: FleetAgent) -> list[float]:
    return [parse_time(entry["timestamp"]) for entry in agent.logs()
            if entry.get("event") == "check_state_changed" and entry.get("healthy") is False]


def live_holders(redis_url: str) -> set[str]:
    """Holders of a slot in any fleet group whose lease has not expired, by the store's own clock.

    ``healers.fleet`` keeps a group's slots as a sorted set scored by lease expiry (ms, server time),
    and drops expired entries only when an agent next asks; so "live" is read from the scores.
    """
    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        # redis-py types its sync and async answers as one union; this client is the sync one.
        seconds, micros = cast(tuple[int, int], client.time())
        now_ms = seconds * 1000 + micros // 1000
        return {holder.decode() for key in cast(list[bytes], client.keys("*:slots"))
                for holder in cast(list[bytes], client.zrangebyscore(key, f"({now_ms}", "+inf"))}
    finally:
        client.close()


def parse_time(stamp: str) -> float:
    """An RFC 3339 time as the agent writes it (``...Z``) as a Unix time."""
    return datetime.fromisoformat(stamp).timestamp()


def in_use(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, int]]:
    """How many intervals are open after each start or end, in time order; an end sorts before a start at a tie."""
    changes = sorted(change for start, end in intervals for change in ((start, 1), (end, -1)))
    steps: list[tuple[float, int]] = []
    open_now = 0
    for moment, change in changes:
        open_now += change
        steps.append((moment, open_now))
    return steps


def max_in_use(intervals: Iterable[tuple[float, float]]) -> int:
    return max((count for _, count in in_use(intervals)), default=0)
