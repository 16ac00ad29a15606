"""Restart backends: run an argv, signal the process, ask supervisord, or ask the Docker Engine."""

from __future__ import annotations

import asyncio
import os
import signal
import xmlrpc.client
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from xml.parsers.expat import ExpatError

import httpx

from healers.backends.base import ActionContext, ActionResult
from healers.backends.children import child_env, kill_group

OUTPUT_TAIL_BYTES = 1024
# After a command exits, a child it left running may still hold the output pipe open;
# read what is already there for this long, then stop waiting for end-of-file.
PIPE_DRAIN_S = 0.2


def parse_signal(name: str) -> signal.Signals:
    """``"SIGTERM"``, ``"TERM"`` or ``"15"`` as a signal; ``ValueError`` names the bad value."""
    text = name.strip().upper()
    if text.isdigit():
        try:
            return signal.Signals(int(text))
        except ValueError:
            raise ValueError(f"unknown signal number {name!r}") from None
    try:
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except KeyError:
        raise ValueError(f"unknown signal {name!r} (expected a name such as SIGTERM or SIGHUP)") from None


def _tail(data: bytes | bytearray) -> str:
    """The last ``OUTPUT_TAIL_BYTES`` as text, not starting in the middle of a UTF-8 character."""
    tail = bytes(data[-OUTPUT_TAIL_BYTES:])
    start = 0
    while start < min(3, len(tail)) and tail[start] & 0xC0 == 0x80:  # continuation bytes
        start += 1
    return tail[start:].decode("utf-8", errors="replace")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _CommandWatch(asyncio.SubprocessProtocol):
    """Keeps the tail of a command's output and says when the command exits and when its output ends.

    Exit and end-of-output are separate: a daemon the command started may hold the pipe open for good.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.tail = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.tail += data
        del self.tail[:-OUTPUT_TAIL_BYTES]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.output_closed.done():
            self.output_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


async def run_command(
    argv: Sequence[str], ctx: ActionContext, purpose: str, env: Mapping[str, str] | None = None
) -> ActionResult:
    """Run ``argv`` (no shell) within ``ctx.timeout_s``; on timeout its whole process group is killed.

    The command gets a minimal environment (``child_env``) with ``env`` and, last, the service and
    incident id as HEALWATCH_SERVICE and HEALWATCH_INCIDENT_ID; never the agent's own environment.
    ``purpose`` names the action in the result's detail ("restart", "traffic cut", ...).
    """
    program = Path(argv[0]).name
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would run the {purpose} command {program}")
    env = child_env({**(env or {}), "HEALWATCH_SERVICE": ctx.service, "HEALWATCH_INCIDENT_ID": ctx.incident_id})
    loop = asyncio.get_running_loop()
    try:
        transport, watch = await loop.subprocess_exec(
            lambda: _CommandWatch(loop),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so a timeout can kill everything it started
        )
    except OSError as exc:
        return ActionResult(False, f"cannot run the {purpose} command {program}: {exc.strerror or exc}")
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(watch.exited), ctx.timeout_s)
        except TimeoutError:
            timed_out = True
            kill_group(transport.get_pid())
            await watch.exited
        await asyncio.wait({watch.output_closed}, timeout=PIPE_DRAIN_S)
    finally:
        if not watch.exited.done():  # cancelled from outside: leave nothing of it running
            kill_group(transport.get_pid())
        transport.close()
    output = _tail(watch.tail)
    returncode = transport.get_returncode()
    if timed_out:
        return ActionResult(
            False,
            f"the {purpose} command {program} timed out after {ctx.timeout_s:g}s; its process group was killed",
            output,
        )
    if returncode == 0:
        return ActionResult(True, f"the {purpose} command {program} succeeded", output)
    if returncode is not None and returncode < 0:
        how = f"was killed by {_signal_name(-returncode)}"
    else:
        how = f"exited with status {returncode}"
    return ActionResult(False, f"the {purpose} command {program} {how}", output)


def check_argv(purpose: str, argv: Sequence[str]) -> tuple[str, ...]:
    """``argv`` as a tuple if it names a program, else ``ValueError``."""
    if isinstance(argv, str) or not argv or not all(isinstance(arg, str) for arg in argv) or not argv[0]:
        raise ValueError(f"the {purpose} command must be a non-empty list of strings (argv), got {argv!r}")
    return tuple(argv)


class ExecRestartBackend:
    """Restarts by running an argv such as ``["systemctl", "restart", "api"]``, with ``env`` added to its environment."""

    name = "exec"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.argv = check_argv("restart", argv)
        self.env = dict(env or {})

    async def restart(self, ctx: ActionContext) -> ActionResult:
        return await run_command(self.argv, ctx, "restart", self.env)


class SignalRestartBackend:
    """Restarts by signalling the service's process and leaving the respawn to its parent.

    This fits a shared PID namespace in a Kubernetes pod, where the kubelet restarts the container.
    """

    name = "signal"

    def __init__(self, signal_name: str) -> None:
        self.signum = parse_signal(signal_name)

    async def restart(self, ctx: ActionContext) -> ActionResult:
        if ctx.pid is None:
            return ActionResult(False, "no process to signal")
        what = f"{self.signum.name} to pid {ctx.pid}"
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would send {what}")
        try:
            os.kill(ctx.pid, self.signum)
        except ProcessLookupError:
            return ActionResult(False, f"cannot send {what}: the process no longer exists")
        except PermissionError:
            return ActionResult(False, f"cannot send {what}: permission denied")
        return ActionResult(True, f"sent {what}")


def _xmlrpc_client(url: str, timeout_s: float) -> tuple[httpx.AsyncClient, str]:
    """An HTTP client and the RPC endpoint for ``unix:///path/to.sock`` or ``http(s)://host:port[/RPC2]``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        transport = httpx.AsyncHTTPTransport(uds=parts.path)
        return httpx.AsyncClient(transport=transport, timeout=timeout_s), "http://localhost/RPC2"
    path = parts.path if parts.path not in ("", "/") else "/RPC2"
    return httpx.AsyncClient(timeout=timeout_s), parts._replace(path=path).geturl()


def _where(url: str) -> str:
    """The URL without any user:password, for messages."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl() if "@" in parts.netloc else url


SUPERVISOR_FAULTS = {
    1: "UNKNOWN_METHOD", 2: "INCORRECT_PARAMETERS", 3: "BAD_ARGUMENTS", 6: "SHUTDOWN_STATE", 10: "BAD_NAME",
    20: "NO_FILE", 21: "NOT_EXECUTABLE", 30: "FAILED", 40: "ABNORMAL_TERMINATION", 50: "SPAWN_ERROR",
    60: "ALREADY_STARTED", 70: "NOT_RUNNING",
}


class SupervisorClient:
    """supervisord's XML-RPC interface over its unix socket or HTTP; raises ``xmlrpc.client.Fault`` for faults."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not (parts.scheme == "unix" and parts.path) and not (parts.scheme in ("http", "https") and parts.hostname):
            raise ValueError(f"supervisor url {url!r} is neither unix:///path/to.sock nor http://host:port/RPC2")
        self.url = url

    async def call(self, method: str, *params: Any, timeout_s: float = 10.0) -> Any:
        client, endpoint = _xmlrpc_client(self.url, timeout_s)
        async with client:
            response = await client.post(
                endpoint,
                content=xmlrpc.client.dumps(params, methodname=method).encode(),
                headers={"Content-Type": "text/xml"},
            )
        response.raise_for_status()
        (result,), _ = xmlrpc.client.loads(response.content)
        return result


def _fault_text(fault: xmlrpc.client.Fault) -> str:
    return f"{SUPERVISOR_FAULTS.get(fault.faultCode, fault.faultCode)}: {fault.faultString}"


class SupervisorRestartBackend:
    """Restarts a supervisord program: stop it if it runs, start it, and read back that it is RUNNING.

    A program in state STOPPED was stopped through supervisor (supervisorctl stop) or never started
    (autostart=false): both are an operator's intent, so it is not started behind their back.
    """

    name = "supervisor"

    def __init__(self, url: str, program: str) -> None:
        if not program:
            raise ValueError("supervisor restart needs a program name")
        self.client = SupervisorClient(url)
        self.program = program

    async def restart(self, ctx: ActionContext) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would restart supervisor program {self.program}")
        where = _where(self.client.url)
        try:
            async with asyncio.timeout(ctx.timeout_s):
                return await self._restart(ctx.timeout_s)
        except TimeoutError:
            return ActionResult(False, f"supervisor did not restart {self.program} within {ctx.timeout_s:g}s")
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == 10:
                return ActionResult(False, f"supervisord at {where} has no program named {self.program!r}")
            return ActionResult(False, f"supervisor could not restart {self.program}: {_fault_text(fault)}")
        except httpx.HTTPStatusError as exc:
            return ActionResult(False, f"supervisord at {where} refused the request: HTTP {exc.response.status_code}")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"cannot reach supervisord at {where}: {exc or type(exc).__name__}")
        except (xmlrpc.client.ResponseError, ExpatError, ValueError, KeyError, TypeError) as exc:
            return ActionResult(False, f"supervisord at {where} sent an unreadable answer: {exc}")

    async def _restart(self, timeout_s: float) -> ActionResult:
        before = await self.client.call("supervisor.getProcessInfo", self.program, timeout_s=timeout_s)
        if before["statename"] == "STOPPED":
            return ActionResult(False, f"{self.program} is STOPPED in supervisor, which is an operator's doing; not starting it")
        if before["statename"] in ("STARTING", "RUNNING", "BACKOFF"):
            try:
                await self.client.call("supervisor.stopProcess", self.program, True, timeout_s=timeout_s)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != 70:  # NOT_RUNNING: it died on its own meanwhile, which is fine
                    raise
        try:
            await self.client.call("supervisor.startProcess", self.program, True, timeout_s=timeout_s)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != 60:  # ALREADY_STARTED: supervisord's autorestart beat us to it
                raise
        after = await self.client.call("supervisor.getProcessInfo", self.program, timeout_s=timeout_s)
        if after["statename"] != "RUNNING":
            reason = f" ({after['spawnerr']})" if after.get("spawnerr") else ""
            return ActionResult(False, f"{self.program} is {after['statename']} after start{reason}")
        old = f"pid {before['pid']}" if before["pid"] else before["statename"]
        return ActionResult(True, f"restarted supervisor program {self.program} ({old} -> pid {after['pid']})")


class DockerRestartBackend:
    """Restarts a container through the Docker Engine API on its unix socket, then confirms it runs."""

    name = "docker"

    def __init__(self, socket_path: str, container: str) -> None:
        if not socket_path or not container:
            raise ValueError("docker restart needs the engine's socket path and a container name or id")
        self.socket_path = socket_path
        self.container = container

    async def restart(self, ctx: ActionContext) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would restart container {self.container}")
        # Docker gets half the budget to stop the container gracefully before it kills it.
        stop_grace_s = max(1, min(10, int(ctx.timeout_s / 2)))
        path = f"/containers/{quote(self.container, safe='')}"
        transport = httpx.AsyncHTTPTransport(uds=self.socket_path)
        try:
            async with (
                asyncio.timeout(ctx.timeout_s),
                httpx.AsyncClient(transport=transport, base_url="http://docker", timeout=ctx.timeout_s) as client,
            ):
                restarted = await client.post(f"{path}/restart", params={"t": stop_grace_s})
                if restarted.status_code != 204:
                    return ActionResult(False, f"docker could not restart {self.container}: {_docker_error(restarted)}")
                inspected = await client.get(f"{path}/json")
        except TimeoutError:
            return ActionResult(False, f"docker did not restart {self.container} within {ctx.timeout_s:g}s")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"cannot reach docker at {self.socket_path}: {exc or type(exc).__name__}")
        if inspected.status_code != 200:
            return ActionResult(False, f"docker could not inspect {self.container}: {_docker_error(inspected)}")
        try:
            state = inspected.json()["State"]
            running, status, pid = bool(state["Running"]), state.get("Status", "?"), state.get("Pid")
        except (ValueError, KeyError, TypeError):
            return ActionResult(False, f"docker sent an unreadable state for {self.container}")
        if not running:
            return ActionResult(
                False, f"container {self.container} is {status} after restart (exit code {state.get('ExitCode')})"
            )
        return ActionResult(True, f"restarted container {self.container} (running, pid {pid})")


def _docker_error(response: httpx.Response) -> str:
    """The Engine API's ``{"message": ...}`` error, or the bare status when there is none."""
    try:
        message = response.json()["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    return f"{message} (HTTP {response.status_code})"
