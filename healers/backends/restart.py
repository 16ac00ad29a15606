"""Restart backends: run an argv or signal the process (supervisord and Docker in their own modules, loaded when used)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from healers.backends.base import ActionContext, ActionResult
from healers.backends.children import ChildWatch, child_env

OUTPUT_TAIL_BYTES = 1024


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


class _CommandWatch(ChildWatch):
    """Keeps the tail of a command's output besides its exit and end of output."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.tail = bytearray()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.tail += data
        del self.tail[:-OUTPUT_TAIL_BYTES]


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
    timed_out = await watch.run_out(transport, ctx.timeout_s)
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
