"""Loopback HTTP endpoints that misbehave (hang, trickle, send 50 MB) for the probe and scrape tests."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

BIG_BODY_BYTES = 50 << 20


@dataclass
class Served:
    """What the test server saw: the last Accept header, and how much of the big body it sent."""

    accept: str = ""
    big_bytes_sent: int = 0


def misbehaving_routes(served: Served, *, trickle: bytes, big_head: bytes, big_chunk: bytes) -> list[web.RouteDef]:
    """``/hang`` never answers, ``/trickle`` sends ``trickle`` every 50 ms forever, ``/big`` announces and
    streams 50 MB (``big_head`` then ``big_chunk`` repeated), counting what it managed to send."""

    async def hang(request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def trickling(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        while True:
            await response.write(trickle)
            await asyncio.sleep(0.05)

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = BIG_BODY_BYTES
        await response.prepare(request)
        await response.write(big_head)
        served.big_bytes_sent += len(big_head)
        while served.big_bytes_sent < BIG_BODY_BYTES:
            await response.write(big_chunk)
            served.big_bytes_sent += len(big_chunk)
        return response

    return [web.get("/hang", hang), web.get("/trickle", trickling), web.get("/big", big)]


@contextlib.asynccontextmanager
async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Run ``app`` on an ephemeral loopback port; yield its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
