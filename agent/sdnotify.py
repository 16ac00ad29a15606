"""systemd's service notification protocol (sd_notify): READY=1, STOPPING=1 and watchdog pings.

A notification is one unix datagram of ``KEY=VALUE`` lines sent to ``$NOTIFY_SOCKET`` (a path, or an
abstract socket name when it starts with ``@``). Without ``NOTIFY_SOCKET`` every call does nothing,
so the agent behaves the same outside systemd. Written here rather than taken from PyPI: the pure
Python package (sdnotify) is untyped, unmaintained since 2017 and knows nothing of the watchdog's
interval, and systemd-python needs libsystemd's headers to build; the protocol is a few lines.

The watchdog: with ``WatchdogSec=`` systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the
process it expects pings from) and restarts the service when no ``WATCHDOG=1`` arrives in time.
``ping_watchdog`` runs on the agent's event loop and pings at half that interval, so a loop held
by anything for longer stops the pings: systemd then restarts the agent that watches the others.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("healwatch.sdnotify")


class SystemdNotifier:
    """Sends notifications to the socket named by the environment given at construction."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(env, os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False if not under systemd or the send failed."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:  # a gone or full socket must never take the agent down
            log.warning("systemd notification failed", error=str(exc), message=assignments[0])
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def ping_watchdog(self) -> None:
        """Ping at half the watchdog interval until cancelled; returns at once without a watchdog."""
        if self.watchdog_interval_s is None or self.address is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_interval_s)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # the abstract namespace: Python takes a leading NUL
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET is neither a path nor an abstract name; not notifying systemd", value=value)
    return None


def _watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    """Half of WATCHDOG_USEC, if the watchdog is on and meant for this process."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = env.get("WATCHDOG_PID", "")
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    return usec / 2_000_000
