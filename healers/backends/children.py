"""What the agent's child processes get (a minimal environment) and which failures are the agent's own.

Children (exec checks, restart and traffic commands, exec steps) never inherit the agent's
environment: it holds the API token and whatever secrets the config was filled from. Like
systemd, which starts a service with PATH, LANG and little else, and Monit, which gives a
program PATH and its own ``MONIT_*`` variables, a child gets the locale, time zone, HOME and
PATH of the agent (PATH defaulting to systemd's) plus exactly the variables its config names.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
from collections.abc import Mapping

# systemd's default PATH for services (systemd.exec(5), "Environment variables in spawned processes").
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Inherited when set: how text and time are shown, and where a tool finds its per-user config.
INHERITED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ")
INHERITED_PREFIX = "LC_"

# The agent ran out of a resource: descriptors (per process, system-wide), memory, socket buffers.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# fork/clone also fails with EAGAIN when the process limit (RLIMIT_NPROC, pid_max) is reached.
SPAWN_ERRNOS = RESOURCE_ERRNOS | {errno.EAGAIN}


def child_env(configured: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: the inherited basics of ``base`` (the agent's), then ``configured``."""
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if name in INHERITED or name.startswith(INHERITED_PREFIX)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(configured or {})
    return env


def agent_side_errno(exc: BaseException, *, spawning: bool = False) -> str:
    """The errno name ("EMFILE", ...) when ``exc`` or one of its causes is the agent's own exhaustion, else "".

    Such a failure says nothing about the service being probed or healed. ``spawning`` also counts
    EAGAIN, which fork returns at the process limit but a socket may return for the peer's reasons.
    """
    wanted = SPAWN_ERRNOS if spawning else RESOURCE_ERRNOS
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, MemoryError):
            return "ENOMEM"
        if isinstance(cause, OSError) and cause.errno in wanted:
            return errno.errorcode[cause.errno]
        cause = cause.__cause__ or cause.__context__
    return ""


def kill_group(pgid: int) -> None:
    """SIGKILL a child's whole process group (it was started in its own session); gone or not ours is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# After a child exits or is killed, what a child of its own left behind still writes is read this long.
PIPE_DRAIN_S = 0.2


class ChildWatch(asyncio.SubprocessProtocol):
    """Says when a child exits and when its output ends; subclasses keep what output they need.

    Exit and end-of-output are separate: a daemon the child started may hold the pipe open for good.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.output_closed.done():
            self.output_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    async def run_out(self, transport: asyncio.SubprocessTransport, timeout_s: float,
                      *also: asyncio.Future[None]) -> bool:
        """Wait until the child exits (or one of ``also`` is done) within ``timeout_s``, else kill its process
        group; read its output for PIPE_DRAIN_S more. Whether it was killed; cancelled, it leaves nothing running."""
        try:
            await asyncio.wait({self.exited, *also}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            killed = not self.exited.done()
            if killed:
                kill_group(transport.get_pid())
                await self.exited
            await asyncio.wait({self.output_closed}, timeout=PIPE_DRAIN_S)
            return killed
        finally:
            if not self.exited.done():
                kill_group(transport.get_pid())
            transport.close()

