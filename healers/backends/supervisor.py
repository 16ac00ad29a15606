"""Restart a supervisord program through its XML-RPC interface (loaded only when a service restarts this way)."""

from __future__ import annotations

import asyncio
import xmlrpc.client
from typing import Any
from urllib.parse import urlsplit
from xml.parsers.expat import ExpatError

import httpx

from healers.backends.base import ActionContext, ActionResult


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
