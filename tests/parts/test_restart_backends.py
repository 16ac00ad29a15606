"""Restart backends against real processes, a real supervisord, and a stand-in for the Docker Engine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from aiohttp import web

from healers.backends import (
    ActionContext,
    DockerRestart,
    ExecRestart,
    SignalRestart,
    SupervisorRestart,
    make_restart_backend,
)
from healers.backends.restart import OUTPUT_TAIL_BYTES
from healers.backends.supervisor import SupervisorClient
from harness.processes import free_port, require_binary, stop, wait_for

pytestmark = pytest.mark.timeout(30)

# Starts an HTTP server detached from the command (as a real init script would), records its pid
# and the context the command received, then exits.
STARTER = """
import os, subprocess, sys
pidfile, port, envfile = sys.argv[1:]
server = subprocess.Popen([sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
open(pidfile, "w").write(str(server.pid))
open(envfile, "w").write(os.environ.get("HEALWATCH_SERVICE", "") + " " + os.environ.get("HEALWATCH_INCIDENT_ID", ""))
print("started", server.pid)
"""


def context(**overrides: Any) -> ActionContext:
    return ActionContext(**{"service": "api", "incident_id": "inc-7", "timeout_s": 10.0, **overrides})


def serves(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code == 200


def refuses(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.ConnectError:
        return True
    return False


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- exec ---------------------------------------------------------------------------------------


def test_exec_restart_starts_a_sigkilled_http_server_again(tmp_path: Path) -> None:
    """After SIGKILL the service refuses connections; the exec backend's argv starts it and it serves again."""
    starter, pidfile, envfile = tmp_path / "start.py", tmp_path / "api.pid", tmp_path / "env"
    starter.write_text(STARTER)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = (sys.executable, str(starter), str(pidfile), str(port), str(envfile))
    subprocess.run(argv, check=True, capture_output=True, timeout=10)
    first_pid = int(pidfile.read_text())
    try:
        wait_for(lambda: serves(url))
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: refuses(url))

        result = asyncio.run(make_restart_backend(ExecRestart(argv)).restart(context(pid=first_pid)))

        assert result.ok, result
        assert result.output_tail.startswith("started ")
        second_pid = int(pidfile.read_text())
        assert second_pid != first_pid
        wait_for(lambda: serves(url))
        assert envfile.read_text() == "api inc-7"
    finally:
        kill_quietly(int(pidfile.read_text()))


def test_exec_restart_reports_a_failing_command_with_its_output_tail() -> None:
    """A non-zero exit is ok=False naming the status, with at most 1 KiB of the output's end."""
    script = "import sys; print('x' * 5000, flush=True); print('cannot restart api', file=sys.stderr); sys.exit(3)"

    result = asyncio.run(make_restart_backend(ExecRestart((sys.executable, "-c", script))).restart(context()))

    assert not result.ok
    assert "exited with status 3" in result.detail
    assert len(result.output_tail.encode()) <= OUTPUT_TAIL_BYTES
    assert result.output_tail.endswith("cannot restart api\n")


def test_exec_restart_timeout_kills_the_whole_process_group() -> None:
    """A hanging command is killed at the timeout together with the child it started."""
    script = "import subprocess, time; print(subprocess.Popen(['sleep', '60']).pid, flush=True); time.sleep(60)"
    backend = make_restart_backend(ExecRestart((sys.executable, "-c", script)))
    started = time.monotonic()

    result = asyncio.run(backend.restart(context(timeout_s=1.0)))

    assert time.monotonic() - started < 3
    assert not result.ok
    assert "timed out after 1s" in result.detail
    child_pid = int(result.output_tail.split()[0])
    wait_for(lambda: gone(child_pid), timeout_s=3)


def test_exec_restart_cancelled_from_outside_kills_the_whole_process_group() -> None:
    """When the caller gives up first (its own step timeout), nothing the command started is left running."""
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    backend = make_restart_backend(ExecRestart((sys.executable, "-c", script)))

    def started() -> list[int]:
        """The command's pid and its child's, once both exist."""
        for command in psutil.Process().children():
            if command.cmdline()[1:] == ["-c", script] and (children := command.children()):
                return [command.pid, children[0].pid]
        return []

    async def cancel_once_started() -> list[int]:
        task = asyncio.ensure_future(backend.restart(context(timeout_s=30.0)))
        for _ in range(250):
            if pids := started():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids

    pids = asyncio.run(cancel_once_started())

    assert len(pids) == 2
    for pid in pids:
        wait_for(functools.partial(gone, pid), timeout_s=3)


def test_exec_restart_returns_when_the_command_exits_though_its_daemon_keeps_the_pipe() -> None:
    """A command that leaves a daemon holding its stdout still completes promptly with its output."""
    script = "import subprocess; print('daemon', subprocess.Popen(['sleep', '30']).pid, flush=True)"
    started = time.monotonic()

    result = asyncio.run(make_restart_backend(ExecRestart((sys.executable, "-c", script))).restart(context()))

    daemon_pid = int(result.output_tail.split()[1])
    kill_quietly(daemon_pid)
    assert result.ok, result
    assert time.monotonic() - started < 3


def test_exec_restart_of_a_missing_program_fails_clearly(tmp_path: Path) -> None:
    """A program that does not exist gives ok=False naming it, not an exception."""
    result = asyncio.run(make_restart_backend(ExecRestart((str(tmp_path / "no-such-tool"), "x"))).restart(context()))

    assert not result.ok
    assert result.detail == "cannot run the restart command no-such-tool: No such file or directory"


def test_exec_restart_dry_run_runs_nothing(tmp_path: Path) -> None:
    """In dry run the command is described, not run."""
    marker = tmp_path / "ran"
    backend = make_restart_backend(ExecRestart((sys.executable, "-c", f"open({str(marker)!r}, 'w')")))

    result = asyncio.run(backend.restart(context(dry_run=True)))

    assert result.ok
    assert result.detail.startswith("dry run: would run the restart command python")
    assert not marker.exists()


# --- signal -------------------------------------------------------------------------------------


def test_signal_restart_sends_sigterm_and_the_process_exits() -> None:
    """The signal backend delivers SIGTERM to ctx.pid; the real process dies of it."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        result = asyncio.run(make_restart_backend(SignalRestart()).restart(context(pid=process.pid)))

        assert result == type(result)(True, f"sent SIGTERM to pid {process.pid}")
        assert process.wait(5) == -signal.SIGTERM
    finally:
        stop(process)


def test_signal_restart_sends_the_configured_signal() -> None:
    """A configured short name such as HUP is sent as SIGHUP."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        result = asyncio.run(make_restart_backend(SignalRestart("hup")).restart(context(pid=process.pid)))

        assert result.ok
        assert process.wait(5) == -signal.SIGHUP
    finally:
        stop(process)


def test_signal_restart_without_a_live_process_fails() -> None:
    """No pid, or a pid that has exited, gives ok=False."""
    backend = make_restart_backend(SignalRestart())
    process = subprocess.Popen(["true"])
    process.wait(5)

    assert asyncio.run(backend.restart(context())).detail == "no process to signal"
    gone_result = asyncio.run(backend.restart(context(pid=process.pid)))
    assert not gone_result.ok
    assert gone_result.detail.endswith("the process no longer exists")


def test_signal_restart_dry_run_leaves_the_process_alone() -> None:
    """In dry run the process is not signalled."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        result = asyncio.run(make_restart_backend(SignalRestart()).restart(context(pid=process.pid, dry_run=True)))

        assert result.detail == f"dry run: would send SIGTERM to pid {process.pid}"
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(0.2)
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ExecRestart(()), "restart command must be a non-empty list"),
        (SignalRestart("SIGFOO"), "unknown signal 'SIGFOO'"),
        (SupervisorRestart("ftp://host/RPC2", "api"), "neither unix:///path/to.sock nor http://"),
        (SupervisorRestart("unix:///run/supervisor.sock", ""), "needs a program name"),
        (DockerRestart("", "api"), "needs the engine's socket path"),
    ],
)
def test_restart_settings_that_cannot_work_are_rejected(settings: Any, message: str) -> None:
    """Bad restart settings raise ValueError with a readable message when the backend is made."""
    with pytest.raises(ValueError, match=message):
        make_restart_backend(settings)


# --- supervisor (real supervisord) --------------------------------------------------------------


@dataclass
class Supervisord:
    unix_url: str
    http_url: str
    web_url: str

    def info(self, program: str) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run(SupervisorClient(self.unix_url).call("supervisor.getProcessInfo", program))
        return result


SUPERVISORD_CONF = """
[unix_http_server]
file={tmp}/supervisor.sock

[inet_http_server]
port=127.0.0.1:{rpc_port}
username=healwatch
password=s3cret

[supervisord]
logfile={tmp}/supervisord.log
pidfile={tmp}/supervisord.pid
childlogdir={tmp}
user=root

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:web]
command={python} -m http.server {web_port} --bind 127.0.0.1
autorestart=false
startsecs=1
stopwaitsecs=3

[program:sleeper]
command=sleep 600
autorestart=false
startsecs=0
stopwaitsecs=3

[program:parked]
command=sleep 600
autorestart=false
startsecs=0

[program:broken]
command={tmp}/no-such-program
autorestart=false
startsecs=0
startretries=0
"""


@pytest.fixture(scope="module")
def supervisord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisord]:
    binary = require_binary("supervisord")
    tmp = tmp_path_factory.mktemp("supervisor")
    rpc_port, web_port = free_port(), free_port()
    conf = tmp / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF.format(tmp=tmp, rpc_port=rpc_port, web_port=web_port, python=sys.executable))
    process = subprocess.Popen([binary, "-n", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running = Supervisord(f"unix://{tmp}/supervisor.sock", f"http://healwatch:s3cret@127.0.0.1:{rpc_port}", f"http://127.0.0.1:{web_port}/")
    try:
        wait_for(lambda: all(running.info(p)["statename"] == "RUNNING" for p in ("web", "sleeper", "parked")))
        yield running
    finally:
        stop(process, timeout_s=10)


def test_supervisor_restarts_a_sigkilled_program_with_a_new_pid(supervisord: Supervisord) -> None:
    """A SIGKILLed program is EXITED; the backend starts it again, confirms RUNNING, and it serves HTTP."""
    old_pid = supervisord.info("web")["pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: supervisord.info("web")["statename"] == "EXITED")

    result = asyncio.run(make_restart_backend(SupervisorRestart(supervisord.unix_url, "web")).restart(context()))

    info = supervisord.info("web")
    assert result.ok, result
    assert info["statename"] == "RUNNING"
    assert info["pid"] != old_pid
    assert result.detail == f"restarted supervisor program web (EXITED -> pid {info['pid']})"
    wait_for(lambda: serves(supervisord.web_url))


def test_supervisor_restarts_a_running_program_over_http(supervisord: Supervisord) -> None:
    """Over HTTP with basic auth, a running program is stopped and started and gets a new pid."""
    old_pid = supervisord.info("sleeper")["pid"]

    result = asyncio.run(make_restart_backend(SupervisorRestart(supervisord.http_url, "sleeper")).restart(context()))

    assert result.ok, result
    new_pid = supervisord.info("sleeper")["pid"]
    assert new_pid != old_pid
    assert result.detail == f"restarted supervisor program sleeper (pid {old_pid} -> pid {new_pid})"
    wait_for(lambda: gone(old_pid), timeout_s=3)


def test_supervisor_wrong_password_fails_without_revealing_it(supervisord: Supervisord) -> None:
    """supervisord's 401 becomes ok=False whose detail names the server but not the credentials."""
    url = supervisord.http_url.replace("s3cret", "wrong")

    result = asyncio.run(make_restart_backend(SupervisorRestart(url, "sleeper")).restart(context()))

    assert result == type(result)(False, f"supervisord at {url.replace('healwatch:wrong@', '')} refused the request: HTTP 401")


def test_supervisor_unknown_program_fails_clearly(supervisord: Supervisord) -> None:
    """A program supervisord does not know gives ok=False naming it (BAD_NAME)."""
    result = asyncio.run(make_restart_backend(SupervisorRestart(supervisord.unix_url, "nope")).restart(context()))

    assert not result.ok
    assert result.detail == f"supervisord at {supervisord.unix_url} has no program named 'nope'"


def test_supervisor_program_that_cannot_spawn_fails_with_the_fault(supervisord: Supervisord) -> None:
    """A program whose command is missing fails with supervisord's fault name and message."""
    wait_for(lambda: supervisord.info("broken")["statename"] == "FATAL")

    result = asyncio.run(make_restart_backend(SupervisorRestart(supervisord.unix_url, "broken")).restart(context()))

    assert not result.ok
    assert result.detail.startswith("supervisor could not restart broken: NO_FILE: ")


def test_supervisor_leaves_a_program_the_operator_stopped_alone(supervisord: Supervisord) -> None:
    """A program stopped through supervisor (STOPPED) is not started behind the operator's back."""
    asyncio.run(SupervisorClient(supervisord.unix_url).call("supervisor.stopProcess", "parked"))

    result = asyncio.run(make_restart_backend(SupervisorRestart(supervisord.unix_url, "parked")).restart(context()))

    assert result == type(result)(False, "parked is STOPPED in supervisor, which is an operator's doing; not starting it")
    assert supervisord.info("parked")["statename"] == "STOPPED"


def test_supervisor_dry_run_leaves_the_program_running(supervisord: Supervisord) -> None:
    """In dry run the program keeps its pid."""
    pid = supervisord.info("sleeper")["pid"]

    result = asyncio.run(
        make_restart_backend(SupervisorRestart(supervisord.unix_url, "sleeper")).restart(context(dry_run=True))
    )

    assert result.detail == "dry run: would restart supervisor program sleeper"
    assert supervisord.info("sleeper")["pid"] == pid


def test_supervisor_unreachable_socket_fails(tmp_path: Path) -> None:
    """A socket nobody listens on gives ok=False naming where it looked."""
    url = f"unix://{tmp_path}/missing.sock"

    result = asyncio.run(make_restart_backend(SupervisorRestart(url, "api")).restart(context()))

    assert not result.ok
    assert result.detail.startswith(f"cannot reach supervisord at {url}: ")


# --- docker (stand-in: no Docker daemon can run here) -------------------------------------------


@dataclass
class Container:
    running_after_restart: bool = True
    pid: int = 100
    running: bool = True


@contextlib.asynccontextmanager
async def docker_engine_standin(socket_path: Path, containers: dict[str, Container]) -> AsyncIterator[list[str]]:
    """A unix-socket HTTP server answering the two Engine API calls the backend uses, as dockerd does.

    A Docker daemon cannot run in this environment, so this stands in for it; it yields the requests seen.
    """
    requests: list[str] = []

    def missing(name: str) -> web.Response:
        return web.json_response({"message": f"No such container: {name}"}, status=404)

    async def restart(request: web.Request) -> web.Response:
        requests.append(f"{request.method} {request.path_qs}")
        container = containers.get(request.match_info["id"])
        if container is None:
            return missing(request.match_info["id"])
        container.pid += 1
        container.running = container.running_after_restart
        return web.Response(status=204)

    async def inspect(request: web.Request) -> web.Response:
        requests.append(f"{request.method} {request.path_qs}")
        container = containers.get(request.match_info["id"])
        if container is None:
            return missing(request.match_info["id"])
        status = "running" if container.running else "exited"
        return web.json_response(
            {"State": {"Status": status, "Running": container.running, "Pid": container.pid, "ExitCode": 0 if container.running else 1}}
        )

    app = web.Application()
    app.router.add_post("/containers/{id}/restart", restart)
    app.router.add_get("/containers/{id}/json", inspect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(socket_path)).start()
    try:
        yield requests
    finally:
        await runner.cleanup()


def run_docker(socket_path: Path, containers: dict[str, Container], name: str, **ctx: Any) -> tuple[Any, list[str]]:
    async def scenario() -> tuple[Any, list[str]]:
        async with docker_engine_standin(socket_path, containers) as requests:
            backend = make_restart_backend(DockerRestart(str(socket_path), name))
            return await backend.restart(context(**ctx)), requests

    return asyncio.run(scenario())


def test_docker_restart_restarts_and_confirms_the_container_runs(tmp_path: Path) -> None:
    """Against a stand-in Engine API: POST restart then GET json; the container runs with a new pid."""
    containers = {"api": Container()}

    result, requests = run_docker(tmp_path / "docker.sock", containers, "api")

    assert result == type(result)(True, "restarted container api (running, pid 101)")
    assert requests == ["POST /containers/api/restart?t=5", "GET /containers/api/json"]


def test_docker_restart_of_an_unknown_container_fails_with_the_engine_message(tmp_path: Path) -> None:
    """The Engine's 404 message reaches the result."""
    result, _ = run_docker(tmp_path / "docker.sock", {}, "ghost")

    assert result == type(result)(False, "docker could not restart ghost: No such container: ghost (HTTP 404)")


def test_docker_restart_fails_when_the_container_does_not_stay_up(tmp_path: Path) -> None:
    """A container that is not running after the restart is ok=False with its status."""
    containers = {"api": Container(running_after_restart=False)}

    result, _ = run_docker(tmp_path / "docker.sock", containers, "api")

    assert result == type(result)(False, "container api is exited after restart (exit code 1)")


def test_docker_restart_dry_run_sends_nothing(tmp_path: Path) -> None:
    """In dry run no request reaches the engine."""
    result, requests = run_docker(tmp_path / "docker.sock", {"api": Container()}, "api", dry_run=True)

    assert result.detail == "dry run: would restart container api"
    assert requests == []


def test_docker_restart_without_an_engine_fails(tmp_path: Path) -> None:
    """A socket nobody listens on gives ok=False."""
    backend = make_restart_backend(DockerRestart(str(tmp_path / "docker.sock"), "api"))

    result = asyncio.run(backend.restart(context()))

    assert not result.ok
    assert result.detail.startswith(f"cannot reach docker at {tmp_path}/docker.sock: ")
