"""Backend settings as plain values, and the factories that turn them into restart and traffic backends.

The agent converts its validated config into these dataclasses; the factories raise ``ValueError``
with a readable message when a setting cannot work (empty argv, unknown signal, bad haproxy name).
"""

from __future__ import annotations

from dataclasses import dataclass

from healers.backends.base import (
    ActionContext,
    ActionResult,
    RestartBackend,
    TrafficBackend,
)
from healers.backends.restart import (
    ExecRestartBackend,
    SignalRestartBackend,
    run_command,
)
from healers.backends.traffic import (
    ExecTrafficBackend,
    FileTrafficBackend,
    HaproxyTrafficBackend,
    ReadinessGate,
    ReadinessTrafficBackend,
)

__all__ = [
    "ActionContext",
    "ActionResult",
    "DockerRestart",
    "ExecRestart",
    "ExecTraffic",
    "FileTraffic",
    "HaproxyTraffic",
    "ReadinessGate",
    "ReadinessTraffic",
    "RestartBackend",
    "RestartSettings",
    "SignalRestart",
    "SupervisorRestart",
    "TrafficBackend",
    "TrafficSettings",
    "make_restart_backend",
    "make_traffic_backend",
    "run_command",
]


@dataclass(frozen=True)
class ExecRestart:
    """Run this argv to restart the service, with these variables added to its minimal environment."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SignalRestart:
    """Send this signal to the service's process and let its parent start it again."""

    signal: str = "SIGTERM"


@dataclass(frozen=True)
class SupervisorRestart:
    """Restart a supervisord program through its XML-RPC interface."""

    url: str  # unix:///path/supervisor.sock or http://host:port/RPC2
    program: str


@dataclass(frozen=True)
class DockerRestart:
    """Restart a container through the Docker Engine API."""

    socket: str
    container: str  # name or id


@dataclass(frozen=True)
class ReadinessTraffic:
    """Cut traffic by failing the agent's /-/ready/{service}."""


@dataclass(frozen=True)
class HaproxyTraffic:
    """Cut traffic by putting an HAProxy server into maint or drain through the runtime API."""

    backend: str
    server: str
    socket: str | None = None  # the runtime API's unix socket, or
    address: str | None = None  # its TCP "host:port"
    mode: str = "maint"  # or "drain": existing connections finish


@dataclass(frozen=True)
class FileTraffic:
    """Cut traffic by creating a flag file; restore removes it; ``weight_path`` gets a ramp's percentages."""

    path: str
    weight_path: str | None = None


@dataclass(frozen=True)
class ExecTraffic:
    """Cut and restore traffic by running these argvs, with these variables added to their minimal environment."""

    cut: tuple[str, ...]
    restore: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    weight: tuple[str, ...] = ()  # run with a ramp's percentage as $PERCENT


RestartSettings = ExecRestart | SignalRestart | SupervisorRestart | DockerRestart
TrafficSettings = ReadinessTraffic | HaproxyTraffic | FileTraffic | ExecTraffic


def make_restart_backend(settings: RestartSettings) -> RestartBackend:
    """The restart backend ``settings`` describe; ``ValueError`` when they cannot work."""
    match settings:
        case ExecRestart(argv=argv, env=env):
            return ExecRestartBackend(argv, dict(env))
        case SignalRestart(signal=signal_name):
            return SignalRestartBackend(signal_name)
        case SupervisorRestart(url=url, program=program):
            from healers.backends.supervisor import SupervisorRestartBackend  # xmlrpc only where configured

            return SupervisorRestartBackend(url, program)
        case DockerRestart(socket=socket_path, container=container):
            from healers.backends.docker import DockerRestartBackend

            return DockerRestartBackend(socket_path, container)
    raise ValueError(f"unknown restart settings {settings!r}")


def make_traffic_backend(settings: TrafficSettings, gate: ReadinessGate, service: str | None = None) -> TrafficBackend:
    """The traffic backend ``settings`` describe; ``ValueError`` when they cannot work.

    ``service`` binds a readiness backend to its service, so ``is_cut`` answers before its first action.
    """
    match settings:
        case ReadinessTraffic():
            return ReadinessTrafficBackend(gate, service)
        case HaproxyTraffic(backend=backend, server=server, socket=socket_path, address=address, mode=mode):
            return HaproxyTrafficBackend(backend, server, socket_path=socket_path, address=address, mode=mode)
        case FileTraffic(path=path, weight_path=weight_path):
            return FileTrafficBackend(path, weight_path)
        case ExecTraffic(cut=cut, restore=restore, env=env, weight=weight):
            return ExecTrafficBackend(cut, restore, dict(env), weight)
    raise ValueError(f"unknown traffic settings {settings!r}")
