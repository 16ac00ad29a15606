"""Restart a container through the Docker Engine API (loaded only when a service restarts this way)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx

from healers.backends.base import ActionContext, ActionResult


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
