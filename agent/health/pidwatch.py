"""Noticing a service's process exit at once: a Linux pidfd watched by the event loop, else polling.

A pidfd (``os.pidfd_open``, Linux 5.3+) becomes readable the moment its process exits, so
the loop wakes within a scheduling tick instead of on the next collection. Where pidfds are
unavailable (older kernels, other systems, seccomp filters) the tracker is polled.

Out of descriptors (or memory) the agent cannot tell whether the process runs: that is never
taken for an exit, and it does not turn pidfds off for good.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import psutil
import structlog

from agent.collectors.process import ProcessTracker, running
from healers.backends.children import agent_side_errno

log = structlog.get_logger(__name__)


def pidfd_supported() -> bool:
    """Whether this system can open a pidfd for a process (tried on our own pid)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class ProcessWatcher:
    """Follows one service's process across restarts and calls ``on_exit(service, pid)`` when it exits.

    While no process is found, the tracker is re-read every ``rearm_interval_s`` (in a worker
    thread: matching by name scans all processes); without pidfds liveness is polled every
    ``poll_interval_s``.
    """

    def __init__(
        self,
        service: str,
        tracker: ProcessTracker,
        on_exit: Callable[[str, int], None],
        *,
        rearm_interval_s: float = 0.25,
        poll_interval_s: float = 0.25,
        use_pidfd: bool | None = None,
    ) -> None:
        self.service = service
        self.tracker = tracker
        self.use_pidfd = pidfd_supported() if use_pidfd is None else use_pidfd
        self.watching: int | None = None
        self._on_exit = on_exit
        self._rearm_interval_s = rearm_interval_s
        self._poll_interval_s = poll_interval_s
        self._found = asyncio.Event()

    def rearm_soon(self) -> None:
        """Look for the process again now instead of at the next interval (after a restart step)."""
        self._found.set()

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            try:
                process = await asyncio.to_thread(self.tracker.refresh)
            except OSError as exc:
                if not agent_side_errno(exc):
                    raise
                log.warning("process watch cannot look", service=self.service, reason=agent_side_errno(exc))
                process = None
            if process is None:
                self._found.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that races the event.
                try:
                    async with asyncio.timeout(self._rearm_interval_s):
                        await self._found.wait()
                except TimeoutError:
                    pass
                continue
            self.watching = process.pid
            await self._wait_exit(process)
            self.watching = None
            log.info("process exited", service=self.service, pid=process.pid)
            try:
                self._on_exit(self.service, process.pid)
            except Exception:
                log.exception("process exit listener failed", service=self.service)

    async def _wait_exit(self, process: psutil.Process) -> None:
        if self.use_pidfd:
            try:
                fd = os.pidfd_open(process.pid)
            except ProcessLookupError:
                return  # exited between the lookup and now
            except OSError as exc:
                # ENOSYS under a seccomp filter: poll from now on; out of descriptors: poll this process only.
                self.use_pidfd = bool(agent_side_errno(exc))
            else:
                await self._wait_readable(fd, process)
                return
        while await asyncio.to_thread(running, process):
            await asyncio.sleep(self._poll_interval_s)

    async def _wait_readable(self, fd: int, process: psutil.Process) -> None:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, readable)
        try:
            # The pid may have been reused between the lookup and pidfd_open: confirm it is our process.
            if running(process):
                await exited
        finally:
            loop.remove_reader(fd)
            os.close(fd)
