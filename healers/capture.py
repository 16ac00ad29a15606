"""The ``capture`` step: run a diagnostics command against the service and keep its bounded output.

The command is an argv (never a shell). ``$PID`` in any argument is replaced by the service's
current pid, which the command also finds in ``HEALWATCH_PID``; an argv naming ``$PID`` fails the
step when the pid is unknown rather than running against nothing. Output (stdout and stderr) is
kept up to ``max_bytes``: a command printing more is killed at the bound, one running past its
timeout is killed then, and what it printed so far is kept either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from healers.backends.base import ActionContext, ActionResult
from healers.backends.children import ChildWatch, child_env

PID_PLACEHOLDER = "$PID"


class _Bounded(ChildWatch):
    """Keeps the first ``max_bytes`` of a command's output and says when it exits or overflows."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int) -> None:
        super().__init__(loop)
        self.max_bytes = max_bytes
        self.output = bytearray()
        self.overflowed = False
        self.full: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        room = self.max_bytes - len(self.output)
        self.output += data[:room]
        if len(data) > room and not self.full.done():
            self.overflowed = True
            self.full.set_result(None)


def capture_argv(argv: Sequence[str], pid: int | None) -> list[str] | None:
    """``argv`` with ``$PID`` replaced by ``pid``; None when it needs a pid that is unknown."""
    if pid is None:
        return None if any(PID_PLACEHOLDER in arg for arg in argv) else list(argv)
    return [arg.replace(PID_PLACEHOLDER, str(pid)) for arg in argv]


async def capture(
    argv: Sequence[str], ctx: ActionContext, *, timeout_s: float, max_bytes: int,
    env: Mapping[str, str] | None = None,
) -> ActionResult:
    """Run ``argv`` for at most ``timeout_s`` and return its first ``max_bytes`` of output as the attachment."""
    program = Path(argv[0]).name
    command = capture_argv(argv, ctx.pid)
    if command is None:
        return ActionResult(False, f"capture {program}: the pid of {ctx.service} is unknown")
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would capture the output of {program}")
    extra = {**(env or {}), "HEALWATCH_SERVICE": ctx.service, "HEALWATCH_INCIDENT_ID": ctx.incident_id}
    if ctx.pid is not None:
        extra["HEALWATCH_PID"] = str(ctx.pid)
    loop = asyncio.get_running_loop()
    try:
        transport, watch = await loop.subprocess_exec(
            lambda: _Bounded(loop, max_bytes), *command,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=child_env(extra), start_new_session=True,  # its own group: a cut kills all it started
        )
    except OSError as exc:
        return ActionResult(False, f"cannot run the capture command {program}: {exc.strerror or exc}")
    started = loop.time()
    cut = await watch.run_out(transport, timeout_s, watch.full)
    elapsed = loop.time() - started
    text = bytes(watch.output).decode("utf-8", errors="replace")
    size = f"{len(watch.output)} bytes in {elapsed:.2f}s"
    if watch.overflowed:
        how = "was killed at" if cut else "printed more than"
        return ActionResult(True, f"captured {program}: {size}; it {how} max_bytes {max_bytes}", attachment=text)
    if cut:
        return ActionResult(False, f"capture {program} timed out after {timeout_s:g}s and was killed; kept {size}",
                            attachment=text)
    returncode = transport.get_returncode()
    if returncode != 0:
        return ActionResult(False, f"capture {program} exited with status {returncode}; kept {size}",
                            attachment=text)
    return ActionResult(True, f"captured {program}: {size}", attachment=text)

