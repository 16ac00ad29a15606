"""The agent under its own faults (issue #12): out of descriptors it neither fails nor heals a healthy
service and keeps its log bounded; its children get a minimal environment and their output is redacted."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import io
import json
import logging
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import structlog

from agent.health.checks import Check
from agent.health.probes import make_probe
from agent.httpclient import new_http_client
from agent.collectors.process import ProcessTracker
from agent.config import CheckConfig, ProcessMatch, parse_config
from agent.logsetup import RateLimiter, configure_logging
from agent.health.pidwatch import ProcessWatcher
from healers.backends import ActionContext, ExecRestart, ExecTraffic, make_restart_backend, make_traffic_backend
from healers.backends.children import agent_side_errno, child_env
from healers.backends.traffic import ReadinessGate
from healers.events import CheckStateChanged
from rules.errors import SourceError
from harness.agent import ROOT, WebApp
from harness.processes import free_port, stop, wait_for

PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


# --- out of descriptors: unit level --------------------------------------------------------------


def test_only_the_agents_own_exhaustion_is_classified_as_an_agent_error() -> None:
    """EMFILE, ENFILE, ENOMEM and MemoryError (also as a cause) are the agent's; refusals and EAGAIN on a socket are not."""
    wrapped = httpx.ConnectError("connect failed")
    wrapped.__cause__ = OSError(errno.EMFILE, "Too many open files")

    assert agent_side_errno(OSError(errno.EMFILE, "x")) == "EMFILE"
    assert agent_side_errno(OSError(errno.ENFILE, "x")) == "ENFILE"
    assert agent_side_errno(MemoryError()) == "ENOMEM"
    assert agent_side_errno(wrapped) == "EMFILE"
    assert agent_side_errno(OSError(errno.ECONNREFUSED, "x")) == ""
    assert agent_side_errno(OSError(errno.EAGAIN, "x")) == ""
    assert agent_side_errno(OSError(errno.EAGAIN, "x"), spawning=True) == "EAGAIN"
    assert agent_side_errno(ValueError("bad header")) == ""


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[Callable[[], None]]:
    """Lower this process's soft RLIMIT_NOFILE and hold every descriptor left, as idle clients would.

    Yields ``refill``, which takes any descriptor freed since (a late-closed socket) before the next probe.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []

    def refill() -> None:
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                return

    gc.collect()  # closes sockets only garbage still holds, so none is freed during the probes
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    try:
        refill()
        yield refill
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def healthy_url(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server in its own process, so none of its descriptors come and go in ours."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: httpx.get(url, timeout=1).status_code == 200)
        yield url
    finally:
        stop(server)


@pytest.mark.parametrize("kind", ["http", "tcp", "exec"])
def test_a_check_the_agent_cannot_run_keeps_its_state_and_counts_an_error(kind: str, healthy_url: str) -> None:
    """Out of descriptors, a healthy service's check stays healthy with its last result, and the run is counted as the agent's error."""
    port = healthy_url.split(":")[2].rstrip("/")
    probes: dict[str, dict[str, object]] = {
        "http": {"http": {"url": healthy_url}},
        "tcp": {"tcp": {"address": f"127.0.0.1:{port}"}},
        "exec": {"exec": {"command": [sys.executable, "-c", "pass"]}},
    }
    config = CheckConfig.model_validate({"name": "live", "failure_threshold": 1, "timeout": "5s", **probes[kind]})
    events: list[CheckStateChanged] = []

    async def main() -> tuple[Check, list[bool]]:
        async with new_http_client() as client:
            check = Check("api", config, make_probe(config, http_client=client), events.append, started_at=0.0)
            await check.run(1.0)
            with descriptors_exhausted() as refill:
                for now in (2.0, 3.0, 4.0):
                    refill()
                    await check.run(now)
                during = [check.healthy, check.last_result is not None and check.last_result.success]
            return check, during

    check, during = asyncio.run(main())

    assert during == [True, True]
    assert events == []
    assert check.agent_errors_total == {"EMFILE": 3}
    assert check.agent_error.startswith("EMFILE: ")
    assert check.runs_total == {"success": 1, "failure": 0}
    errors = next(f for f in check.families() if f.name == "healwatch_check_errors")
    assert [(s.labels["reason"], s.value) for s in errors.samples] == [("EMFILE", 3.0)]


class CountingProcess(psutil.Process):
    """A real psutil process that counts the liveness checks made on it."""

    checks = 0

    def is_running(self) -> bool:
        CountingProcess.checks += 1
        return super().is_running()


async def _until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_process_watcher_survives_descriptor_exhaustion_and_still_sees_the_exit(tmp_path: Path) -> None:
    """Out of descriptors, the polling watcher neither reports the live process as exited nor dies; the real exit is seen after."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(str(child.pid))
    tracker = ProcessTracker(ProcessMatch(pidfile=str(pidfile)), process_factory=CountingProcess)
    exits: list[int] = []

    async def main() -> None:
        watcher = ProcessWatcher("svc", tracker, lambda _, pid: exits.append(pid), rearm_interval_s=0.01,
                                 poll_interval_s=0.01, use_pidfd=False)
        task = asyncio.create_task(watcher.run())
        try:
            await _until(lambda: watcher.watching == child.pid)
            with descriptors_exhausted():
                polled = CountingProcess.checks
                await _until(lambda: CountingProcess.checks >= polled + 5 or task.done())
                assert not task.done(), task.exception()
            assert exits == []
            child.kill()
            child.wait(5)
            await _until(lambda: bool(exits))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(main())
    finally:
        stop(child)

    assert exits == [child.pid]


# --- the log under a flood of identical errors ------------------------------------------------------


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    structlog.reset_defaults()
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if type(h).__name__ != "_ToStructlog"]
    root.setLevel(logging.WARNING)


def test_identical_errors_are_rate_limited_with_a_count_of_those_suppressed(log_stream: io.StringIO) -> None:
    """A burst of identical errors (from structlog and from asyncio's stdlib logger) writes N lines, one marked, then the count.

    Messages differing only in numbers count as identical: asyncio's name each timer's deadline.
    """
    now = [100.0]
    configure_logging("info", log_stream, limiter=RateLimiter(burst=3, window_s=60.0, clock=lambda: now[0]))
    log = structlog.get_logger("test")
    for _ in range(500):
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError:
            logging.getLogger("asyncio").error("socket.accept() out of system resource", exc_info=True)
        log.warning("check_not_run", service="web", reason="EMFILE")
        logging.getLogger("asyncio").error("Exception in callback\nhandle: <TimerHandle when=%f>", 1022.1 + now[0])
        now[0] += 0.01
    log.info("distinct", n=1)
    log.info("distinct", n=1)
    now[0] += 60.0
    log.warning("check_not_run", service="web", reason="EMFILE")

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    accept = [line for line in lines if line["event"] == "socket.accept() out of system resource"]
    not_run = [line for line in lines if line["event"] == "check_not_run"]
    assert len(accept) == 4 and "Too many open files" in accept[0]["exception"]
    assert [line.get("suppressing", False) for line in accept] == [False, False, False, True]
    assert len(not_run) == 5 and not_run[-1]["suppressed_similar"] == 496
    assert sum(line["event"].startswith("Exception in callback") for line in lines) == 4
    assert sum(line["event"] == "distinct" for line in lines) == 2  # info lines are never limited


# --- a real agent out of descriptors ---------------------------------------------------------------


def _agent_config(tmp_path: Path, web: WebApp, pidfile: Path, marker: Path) -> Path:
    config = tmp_path / "healwatch.yaml"
    config.write_text(json.dumps({
        "state_path": str(tmp_path / "state.db"),
        "default_rules": False,
        "host": {"enabled": False},
        "services": {"web": {
            "process": {"pidfile": str(pidfile)},
            "checks": [{"name": "health", "http": {"url": f"{web.url}/health"}, "interval": "200ms",
                        "timeout": "2s", "failure_threshold": 2}],
            "restart": {"exec": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]},
            "autoheal": True,
        }},
    }))
    return config


def _open_idle_connections(port: int, count: int) -> list[socket.socket]:
    """Connect ``count`` idle clients (as many as the backlog takes); a full backlog ends the loop."""
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=1))
        except OSError:
            break
    return held


def _events(log_path: Path) -> list[dict[str, object]]:
    """The agent's JSON log lines; the last may be half-written."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return [event for event in events if isinstance(event, dict)]


@pytest.mark.integration
def test_agent_out_of_descriptors_neither_fails_nor_heals_a_healthy_service(tmp_path: Path) -> None:
    """With its descriptors exhausted by idle clients, the agent starts no incident against a healthy service and logs little."""
    prlimit = "/usr/bin/prlimit"
    pidfile, marker = tmp_path / "web.pid", tmp_path / "restarted"
    web = WebApp(pidfile)
    port = free_port()
    log_path = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [prlimit, "--nofile=64:64", sys.executable, "-m", "agent.cli", "run", "-c",
         str(_agent_config(tmp_path, web, pidfile, marker)), "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
    )
    held: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, timeout_s=20)
        # A few descriptors above what it holds now, so idle clients exhaust it even within a server connection cap.
        limit = len(os.listdir(f"/proc/{agent.pid}/fd")) + 4
        subprocess.run([prlimit, "--pid", str(agent.pid), f"--nofile={limit}:{limit}"], check=True)
        held = _open_idle_connections(port, 300)

        def not_run_or_failed() -> bool:
            events = _events(log_path)
            failed = any(e["event"] == "check_state_changed" and e.get("healthy") is False for e in events)
            return failed or sum(e["event"] == "check_not_run" for e in events) >= 4

        wait_for(not_run_or_failed, timeout_s=30)
        for sock in held:
            sock.close()
        held = []
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, timeout_s=20)
        status = httpx.get(f"{url}/api/v1/status", timeout=5)
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        for sock in held:
            sock.close()
        stop(agent)
        web.stop()

    events = _events(log_path)
    assert not any(e["event"] == "check_state_changed" for e in events), "the healthy service's check changed state"
    assert not any(e["event"] == "playbook started" for e in events)
    assert not marker.exists()
    with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM incidents").fetchone() == (0,)
    assert status.json()["data"]["services"]["web"]["checks"][0]["healthy"] is True
    assert 'healwatch_check_errors_total{check="health",reason="EMFILE",service="web"}' in metrics
    # Unlimited, asyncio alone wrote ~90,000 lines in 8 s here.
    assert len(log_path.read_text(errors="replace").splitlines()) < 300


# --- children: a minimal environment and redacted output ----------------------------------------


def test_child_env_keeps_path_locale_and_home_plus_what_is_configured() -> None:
    """A child's environment is PATH, HOME, LANG, LC_*, TZ of the agent's plus the configured variables, nothing else."""
    agent_env = {"PATH": "/opt/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "TZ": "UTC",
                 "HEALWATCH_TOKEN": "tok", "AWS_SECRET_ACCESS_KEY": "aws"}

    assert child_env({"DB_HOST": "db"}, agent_env) == {
        "PATH": "/opt/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "TZ": "UTC", "DB_HOST": "db"}
    assert child_env({}, {})["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _context() -> ActionContext:
    return ActionContext("api", "inc-1", timeout_s=10.0)


def test_restart_and_traffic_commands_never_inherit_the_agents_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real exec restart and traffic commands print their environment: no HEALWATCH_TOKEN, but the configured env."""
    monkeypatch.setenv("HEALWATCH_TOKEN", "token-from-the-agent")
    argv = (sys.executable, "-c", PRINT_ENV)

    async def main() -> list[dict[str, str]]:
        restart = make_restart_backend(ExecRestart(argv, (("DB_HOST", "db1"),)))
        traffic = make_traffic_backend(ExecTraffic(argv, argv, (("LB", "lb1"),)), ReadinessGate())
        results = [await restart.restart(_context()), await traffic.cut(_context())]
        assert all(result.ok for result in results), results
        return [json.loads(result.output_tail) for result in results]

    restart_env, traffic_env = asyncio.run(main())

    assert "HEALWATCH_TOKEN" not in restart_env and "HEALWATCH_TOKEN" not in traffic_env
    assert restart_env["DB_HOST"] == "db1" and traffic_env["LB"] == "lb1"
    assert restart_env["HEALWATCH_SERVICE"] == "api" and restart_env["HEALWATCH_INCIDENT_ID"] == "inc-1"
    assert set(restart_env) <= {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "DB_HOST", "HEALWATCH_SERVICE",
                                "HEALWATCH_INCIDENT_ID"} | {n for n in restart_env if n.startswith("LC_")}


def test_an_exec_check_never_inherits_the_agents_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real exec check's child prints its environment into the failure reason: the token is absent."""
    monkeypatch.setenv("HEALWATCH_TOKEN", "token-from-the-agent")
    script = "import os, sys; print(sorted(os.environ)); sys.exit(1)"
    config = CheckConfig.model_validate(
        {"name": "env", "exec": {"command": [sys.executable, "-c", script], "env": {"MODE": "check"}}, "timeout": "5s"}
    )

    async def main() -> str:
        async with new_http_client() as client:
            return (await make_probe(config, http_client=client)()).error

    error = asyncio.run(main())

    assert "'MODE'" in error and "'PATH'" in error
    assert "HEALWATCH_TOKEN" not in error


def test_env_on_a_restart_that_is_not_exec_is_a_positioned_error() -> None:
    """``env:`` beside a signal restart names the file, line and column instead of being ignored."""
    text = "services:\n  api:\n    restart:\n      signal: SIGTERM\n      env: {A: b}\n"

    with pytest.raises(SourceError) as raised:
        parse_config(text, "healwatch.yaml")

    assert str(raised.value.issues[0]) == "healwatch.yaml:4:7: services -> api -> restart: env applies only to an exec restart"


@pytest.mark.integration
def test_children_never_see_the_token_and_their_output_is_served_redacted(tmp_path: Path) -> None:
    """A real agent's exec check and restart print their environment and a ${ENV} secret: the API shows neither."""
    password, token = "pw-0123456789", "tok-abcdefghijk"
    show = "import json, os, sys; print(json.dumps(dict(os.environ))); print('password is', os.environ['DB_PASSWORD'])"
    config = tmp_path / "healwatch.yaml"
    config.write_text(
        "default_rules: false\nhost: {enabled: false}\n"
        f"state_path: {json.dumps(str(tmp_path / 'state.db'))}\n"
        "services:\n  db:\n"
        "    checks:\n      - name: env\n        interval: 200ms\n        timeout: 5s\n        failure_threshold: 1\n"
        f"        exec: {{command: [{json.dumps(sys.executable)}, -c, {json.dumps(show + '; sys.exit(1)')}],"
        " env: {DB_PASSWORD: '${DB_PASSWORD}'}}\n"
        f"    restart: {{exec: [{json.dumps(sys.executable)}, -c, {json.dumps(show)}],"
        " env: {DB_PASSWORD: '${DB_PASSWORD}'}}\n"
        "playbooks:\n  - name: heal-db\n    when: [{check_failed: {service: db}}]\n    steps:\n      - restart: {}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=(tmp_path / "agent.log").open("wb"),
        env=dict(os.environ, PYTHONPATH=str(ROOT), HEALWATCH_TOKEN=token, DB_PASSWORD=password),
    )
    try:
        wait_for(lambda: httpx.get(f"{url}/-/healthy", timeout=1).status_code == 200, timeout_s=20)
        incidents = wait_for(lambda: httpx.get(f"{url}/api/v1/incidents", timeout=2).json()["data"]["incidents"],
                             timeout_s=20)
        incident_id = incidents[-1]["id"]
        incident = wait_for(lambda: _finished(httpx.get(f"{url}/api/v1/incidents/{incident_id}", timeout=2)),
                            timeout_s=20)
        status = httpx.get(f"{url}/api/v1/status", timeout=2).json()["data"]["services"]["db"]
    finally:
        stop(agent)

    served = json.dumps([incident, status])
    step = incident["steps"][0]  # type: ignore[index]
    assert step["result"] == "ok" and "password is <redacted>" in step["outputTail"]
    assert "password is <redacted>" in status["checks"][0]["lastError"]
    assert password not in served and token not in served
    assert "HEALWATCH_TOKEN" not in served
    with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as db:
        stored = json.dumps(db.execute("SELECT * FROM incident_steps").fetchall())
    assert password not in stored and "password is <redacted>" in stored


def _finished(response: httpx.Response) -> dict[str, object] | None:
    incident: dict[str, object] = response.json()["data"]
    return incident if incident["outcome"] != "running" else None
