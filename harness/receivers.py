"""A real HTTP server on 127.0.0.1 that records what notifiers send and answers as a test scripts it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Received], Awaitable[web.Response] | web.Response]


@dataclass
class RecordingServer:
    """Records every request in ``attempts`` and the accepted ones (2xx) in ``received``; answers 200 ``ok``
    unless ``handler`` answers otherwise."""

    handler: Handler | None = None
    received: list[Received] = field(default_factory=list)
    attempts: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RecordingServer:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # the same port again after a restart
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout_s: float = 10.0, *, attempts: bool = False) -> list[Received]:
        """Wait until ``count`` requests were accepted (or, with ``attempts``, made at all); bounded in time."""
        seen = self.attempts if attempts else self.received
        async with asyncio.timeout(timeout_s):
            while len(seen) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return seen

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(request.path, dict(request.headers), await request.read())
        self.attempts.append(received)
        self.arrived.set()
        response = web.Response(text="ok")
        if self.handler is not None:
            answer = self.handler(received)
            response = await answer if isinstance(answer, Awaitable) else answer
        if 200 <= response.status < 300:
            self.received.append(received)
            self.arrived.set()
        return response


def run_with_receiver(scenario: Callable[[RecordingServer, httpx.AsyncClient], Awaitable[None]],
                      handler: Handler | None = None) -> None:
    """Run ``scenario`` on a fresh event loop with a started RecordingServer (answering by ``handler``) and a client."""
    async def main() -> None:
        server = await RecordingServer(handler).start()
        try:
            async with httpx.AsyncClient() as client:
                await scenario(server, client)
        finally:
            await server.stop()

    asyncio.run(main())
