"""Traffic backends: the agent's readiness gate, HAProxy's runtime API, a flag file, or an argv pair.

All but the readiness gate can also weigh traffic for a progressive restore (``set_share``): HAProxy
sets the server's weight to a percentage of its configured one, a flag file backend writes the
percentage to its weight file, an exec backend runs its weight argv with the percentage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from healers.backends.base import ActionContext, ActionResult
from healers.backends.restart import check_argv, run_command

PERCENT_PLACEHOLDER = "$PERCENT"


class ReadinessGate:
    """Which services have their traffic cut, as the agent's ``/-/ready/{service}`` reports it.

    In memory only: the agent persists the cut state and sets it again on start.
    """

    def __init__(self) -> None:
        self._cut: set[str] = set()

    def is_cut(self, service: str) -> bool:
        return service in self._cut

    def set_cut(self, service: str, cut: bool) -> None:
        if cut:
            self._cut.add(service)
        else:
            self._cut.discard(service)

    def cut_services(self) -> frozenset[str]:
        return frozenset(self._cut)


class ReadinessTrafficBackend:
    """Cuts traffic by failing the service's readiness endpoint, which a load balancer or kubelet polls.

    ``service`` binds the backend to one service so ``is_cut`` can answer before any action;
    unbound, it acts on ``ctx.service`` and reads back the service it last acted on.
    """

    name = "readiness"

    def __init__(self, gate: ReadinessGate, service: str | None = None) -> None:
        self.gate = gate
        self.service = service

    async def cut(self, ctx: ActionContext) -> ActionResult:
        return self._set(ctx, cut=True)

    async def restore(self, ctx: ActionContext) -> ActionResult:
        return self._set(ctx, cut=False)

    async def is_cut(self) -> bool | None:
        return None if self.service is None else self.gate.is_cut(self.service)

    def _set(self, ctx: ActionContext, cut: bool) -> ActionResult:
        service = self.service or ctx.service
        answer = "503 (not ready)" if cut else "200 (ready)"
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would make /-/ready/{service} answer {answer}")
        self.service = service
        self.gate.set_cut(service, cut)
        return ActionResult(True, f"/-/ready/{service} now answers {answer}")


# The bits of HAProxy's srv_admin_state that keep new traffic from a server (SRV_ADMF_MAINT | SRV_ADMF_DRAIN
# in include/haproxy/server-t.h); 0x04 (disabled in the config) and 0x40 (FQDN set) only annotate.
OUT_OF_ROTATION_BITS = {
    0x01: "maint (forced)",
    0x02: "maint (inherited from a tracked server)",
    0x20: "maint (address resolution failed)",
    0x08: "drain (forced)",
    0x10: "drain (inherited from a tracked server)",
}
OUT_OF_ROTATION = sum(OUT_OF_ROTATION_BITS)
FORCED_BIT = {"maint": 0x01, "drain": 0x08}
# HAProxy's own rule for proxy and server names; anything else could smuggle a second command.
HAPROXY_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
MAX_ANSWER_BYTES = 1 << 20
READ_BACK_TIMEOUT_S = 5.0


def check_haproxy_name(kind: str, name: str) -> str:
    """``name`` if it is a valid HAProxy backend or server name, else ``ValueError``."""
    if not HAPROXY_NAME.fullmatch(name):
        raise ValueError(f"haproxy {kind} name {name!r} may hold only letters, digits, '-', '_', '.' and ':'")
    return name


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:9999"`` or ``"[::1]:9999"`` as host and port; ``ValueError`` otherwise."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"haproxy address {address!r} is not host:port")
    return host, int(port)


class HaproxyError(Exception):
    """HAProxy answered a runtime API command with an error message."""


def describe_admin_state(admin_state: int) -> str:
    """HAProxy's srv_admin_state bits in words, "ready" when none keeps traffic away."""
    names = [name for bit, name in OUT_OF_ROTATION_BITS.items() if admin_state & bit]
    return ", ".join(names) or "ready"


class HaproxyTrafficBackend:
    """Puts one HAProxy server into maint or drain through the runtime API and reads the state back.

    One command per connection (HAProxy's non-interactive mode), over a unix socket or TCP.
    """

    name = "haproxy"
    weighs = True

    def __init__(
        self,
        backend: str,
        server: str,
        *,
        socket_path: str | None = None,
        address: str | None = None,
        mode: str = "maint",
    ) -> None:
        if (socket_path is None) == (address is None):
            raise ValueError("haproxy traffic needs exactly one of socket and address")
        if mode not in FORCED_BIT:
            raise ValueError(f"haproxy mode {mode!r} is not one of maint, drain")
        self.backend = check_haproxy_name("backend", backend)
        self.server = check_haproxy_name("server", server)
        self.socket_path = socket_path
        self.tcp = parse_address(address) if address is not None else None
        self.where = socket_path or address or ""
        self.mode = mode

    async def cut(self, ctx: ActionContext) -> ActionResult:
        return await self._set(ctx, self.mode)

    async def restore(self, ctx: ActionContext) -> ActionResult:
        return await self._set(ctx, "ready")

    async def is_cut(self) -> bool | None:
        with contextlib.suppress(OSError, TimeoutError, HaproxyError):
            async with asyncio.timeout(READ_BACK_TIMEOUT_S):
                return bool(await self._admin_state() & OUT_OF_ROTATION)
        return None

    async def set_share(self, ctx: ActionContext, percent: int) -> ActionResult:
        """Weight the server at ``percent`` of its configured weight, then put it in rotation; both read back."""
        target = f"{self.backend}/{self.server}"
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would set haproxy server {target} to {percent}% of its weight")
        # Weighted first: a server coming out of maint never gets its full share for a moment.
        read = await self._apply(ctx, f"{percent}%", [f"set weight {target} {percent}%",
                                                      f"set server {target} state ready"])
        if isinstance(read, str):
            return ActionResult(False, read)
        admin_state, weight = read
        current, _, initial = weight.partition(" (initial ")
        if admin_state & OUT_OF_ROTATION:
            return ActionResult(False, f"haproxy server {target} is still {describe_admin_state(admin_state)} "
                                       f"after setting it to ready")
        if current.strip() == "0" and percent > 0:
            return ActionResult(False, f"haproxy server {target} weighs 0 at {percent}% of its weight "
                                       f"{initial.rstrip(')')}: give it a larger weight in haproxy.cfg")
        return ActionResult(True, f"haproxy server {target} at {percent}%: weight {weight}, ready")

    async def _set(self, ctx: ActionContext, state: str) -> ActionResult:
        target = f"{self.backend}/{self.server}"
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would set haproxy server {target} to {state}")
        # A restore also gives the server back its configured weight, which a progressive restore lowered.
        commands = [f"set weight {target} 100%"] if state == "ready" else []
        read = await self._apply(ctx, state, [*commands, f"set server {target} state {state}"])
        if isinstance(read, str):
            return ActionResult(False, read)
        admin_state, _ = read
        if state == "ready":
            confirmed = not admin_state & OUT_OF_ROTATION
        else:
            confirmed = bool(admin_state & FORCED_BIT[state])
        read_back = describe_admin_state(admin_state)
        if not confirmed:
            return ActionResult(False, f"haproxy server {target} is still {read_back} after setting it to {state}")
        return ActionResult(True, f"haproxy server {target} set to {state} (read back: {read_back})")

    async def _apply(self, ctx: ActionContext, what: str, commands: Sequence[str]) -> tuple[int, str] | str:
        """Send ``commands``, then read back the admin state and the weight; what went wrong instead, if anything."""
        target = f"{self.backend}/{self.server}"
        try:
            async with asyncio.timeout(ctx.timeout_s):
                for command in commands:
                    answer = await self._command(command)
                    if answer:
                        raise HaproxyError(answer)
                return await self._admin_state(), await self._command(f"get weight {target}")
        except HaproxyError as exc:
            return f"haproxy refused to set {target} to {what}: {exc}"
        except TimeoutError:
            return f"haproxy at {self.where} did not answer within {ctx.timeout_s:g}s"
        except OSError as exc:
            return f"cannot reach haproxy at {self.where}: {exc.strerror or exc}"

    async def _admin_state(self) -> int:
        """The server's srv_admin_state bits from ``show servers state``."""
        answer = await self._command(f"show servers state {self.backend}")
        lines = answer.splitlines()
        header = next((line[2:].split() for line in lines if line.startswith("# ")), None)
        if header is None:
            raise HaproxyError(answer or "empty answer to show servers state")
        for line in lines:
            row = dict(zip(header, line.split(), strict=False))
            if row.get("be_name") == self.backend and row.get("srv_name") == self.server:
                admin_state = row.get("srv_admin_state", "")
                if not admin_state.isdigit():
                    raise HaproxyError(f"unreadable srv_admin_state {admin_state!r} in show servers state")
                return int(admin_state)
        raise HaproxyError(f"No server {self.server} in backend {self.backend}.")

    async def _command(self, command: str) -> str:
        """Send one runtime API command and return HAProxy's answer, stripped."""
        if self.tcp is not None:
            reader, writer = await asyncio.open_connection(*self.tcp)
        else:
            assert self.socket_path is not None
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            answer = b""
            while len(answer) < MAX_ANSWER_BYTES and (chunk := await reader.read(65536)):
                answer += chunk
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.decode("utf-8", errors="replace").strip()


def _write_atomically(path: Path, text: str) -> str:
    """Write ``text`` beside ``path`` and rename it into place, so readers never see half of it; the error or ""."""
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror or exc}"
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return f"cannot create {path}: {exc.strerror or exc}"
    return ""


class FileTrafficBackend:
    """Cuts traffic by creating a flag file that nginx or a health script tests; restore removes it.

    With ``weight_path``, the share of traffic (0 to 100) is written there: a ramp's percentage, 100 on restore.
    """

    name = "file"

    def __init__(self, path: str, weight_path: str | None = None) -> None:
        if not path:
            raise ValueError("file traffic needs the flag file's path")
        self.path = Path(path)
        self.weight_path = Path(weight_path) if weight_path else None
        self.weighs = self.weight_path is not None

    async def cut(self, ctx: ActionContext) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would create {self.path}")
        error = _write_atomically(self.path, f"traffic cut by healwatch for {ctx.service}, incident {ctx.incident_id}\n")
        return ActionResult(not error, error or f"created {self.path}")

    async def set_share(self, ctx: ActionContext, percent: int) -> ActionResult:
        """Write ``percent`` to the weight file, then remove the flag."""
        if self.weight_path is None:
            return ActionResult(False, f"no weight_path configured beside {self.path}")
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would write {percent} to {self.weight_path} and remove {self.path}")
        error = _write_atomically(self.weight_path, f"{percent}\n")
        if error:
            return ActionResult(False, error)
        removed = await self._remove()
        return replace(removed, detail=f"wrote {percent} to {self.weight_path}; {removed.detail}")

    async def restore(self, ctx: ActionContext) -> ActionResult:
        if ctx.dry_run:
            return ActionResult(True, f"dry run: would remove {self.path}")
        if self.weight_path is not None:
            return await self.set_share(ctx, 100)
        return await self._remove()

    async def _remove(self) -> ActionResult:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return ActionResult(True, f"{self.path} was already absent")
        except OSError as exc:
            return ActionResult(False, f"cannot remove {self.path}: {exc.strerror or exc}")
        return ActionResult(True, f"removed {self.path}")

    async def is_cut(self) -> bool | None:
        return self.path.exists()


class ExecTrafficBackend:
    """Cuts and restores traffic by running one argv each, with ``env`` added; the state cannot be read back.

    With a ``weight`` argv, a ramp runs it once per stage: ``$PERCENT`` in an argument, and the variable
    HEALWATCH_TRAFFIC_PERCENT, hold the share of traffic (0 to 100).
    """

    name = "exec"

    def __init__(
        self, cut: Sequence[str], restore: Sequence[str], env: Mapping[str, str] | None = None,
        weight: Sequence[str] = (),
    ) -> None:
        self.cut_argv = check_argv("traffic cut", cut)
        self.restore_argv = check_argv("traffic restore", restore)
        self.weight_argv = check_argv("traffic weight", weight) if weight else ()
        self.weighs = bool(self.weight_argv)
        self.env = dict(env or {})

    async def set_share(self, ctx: ActionContext, percent: int) -> ActionResult:
        """Run the weight argv with the percentage."""
        if not self.weight_argv:
            return ActionResult(False, "no weight command configured")
        argv = [arg.replace(PERCENT_PLACEHOLDER, str(percent)) for arg in self.weight_argv]
        return await run_command(argv, ctx, f"traffic weight {percent}%",
                                 {**self.env, "HEALWATCH_TRAFFIC_PERCENT": str(percent)})

    async def cut(self, ctx: ActionContext) -> ActionResult:
        return await run_command(self.cut_argv, ctx, "traffic cut", self.env)

    async def restore(self, ctx: ActionContext) -> ActionResult:
        return await run_command(self.restore_argv, ctx, "traffic restore", self.env)

    async def is_cut(self) -> bool | None:
        return None
