"""The contracts every restart and traffic backend fulfils, and what their actions return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ActionContext:
    """Who an action is for and how long it may take; backends never act when ``dry_run`` is set."""

    service: str
    incident_id: str
    timeout_s: float
    pid: int | None = None  # the service's current pid, when the agent knows it
    dry_run: bool = False  # backends return ok with detail "dry run: would ..." and touch nothing


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one backend action, fit for the incident journal."""

    ok: bool
    detail: str  # one human line: what was done or why it failed (no secrets)
    output_tail: str = ""  # last <= 1 KiB of command output, if any
    attachment: str = ""  # a capture step's bounded output, kept whole in the journal


class RestartBackend(Protocol):
    """Restarts a service; expected failures come back as ``ok=False``, never as exceptions."""

    name: str  # "exec" | "signal" | "supervisor" | "docker"

    async def restart(self, ctx: ActionContext) -> ActionResult: ...


class TrafficBackend(Protocol):
    """Takes a service out of rotation and puts it back, and reads back which it is in."""

    name: str  # "readiness" | "haproxy" | "file" | "exec"

    async def cut(self, ctx: ActionContext) -> ActionResult: ...

    async def restore(self, ctx: ActionContext) -> ActionResult: ...

    async def is_cut(self) -> bool | None: ...  # the real state; None when it cannot be read
