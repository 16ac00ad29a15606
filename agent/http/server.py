"""The agent's HTTP server: /metrics from the cached exposition, liveness and readiness.

Connections are bounded, as nginx bounds them: beyond ``max_connections`` a new
connection takes the place of the oldest one that is not being answered (idle
between requests, or not done sending its request head), and is refused with a
503 only when every connection is busy. A connection without a complete request
for ``idle_timeout_s`` is closed. So idle or slow clients can neither exhaust the
agent's file descriptors nor lock a scrape or a health probe out.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler

from exporters.exposition import Exposition

# readiness(None) answers for the agent as a whole, readiness(name) for one
# service; None means the service is unknown.
Readiness = Callable[[str | None], bool | None]

# In-flight requests are answered in microseconds; a stuck client must not hold
# up daemon shutdown for aiohttp's default of a minute.
SHUTDOWN_TIMEOUT_S = 5.0
DEFAULT_IDLE_TIMEOUT_S = 10.0
_BUSY_REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def default_max_connections() -> int:
    """min(256, a quarter of the open-file limit): the rest stays for checks, scrapes and the state database."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(1, min(256, soft // 4))


def build_app(
    exposition: Exposition,
    readiness: Readiness,
    *,
    middlewares: Sequence[Any] = (),
    max_body_bytes: int = 1 << 20,
) -> web.Application:
    """The routes every agent serves; callers may add more (the JSON API) before starting."""

    async def metrics(request: web.Request) -> web.Response:
        body, content_type, content_encoding = await exposition.response(
            request.headers.get(hdrs.ACCEPT, ""),
            request.headers.get(hdrs.ACCEPT_ENCODING, ""),
        )
        headers = {hdrs.CONTENT_TYPE: content_type, hdrs.VARY: "Accept, Accept-Encoding"}
        if content_encoding is not None:
            headers[hdrs.CONTENT_ENCODING] = content_encoding
        return web.Response(body=body, headers=headers)

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="Healthy.\n")

    async def ready(request: web.Request) -> web.Response:
        return _readiness_response(readiness(None))

    async def service_ready(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        state = readiness(service)
        if state is None:
            return web.Response(status=404, text=f"Unknown service {service!r}.\n")
        return _readiness_response(state)

    app = web.Application(middlewares=list(middlewares), client_max_size=max_body_bytes)
    # add_get also answers HEAD, as load balancers and Prometheus' own probes use it.
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/-/ready/{service}", service_ready)
    return app


def _readiness_response(state: bool | None) -> web.Response:
    if state:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready.\n")


class HttpServer:
    """Serves ``build_app`` on the running asyncio loop; the daemon owns signal handling."""

    def __init__(
        self,
        exposition: Exposition,
        readiness: Readiness,
        host: str,
        port: int,
        *,
        middlewares: Sequence[Any] = (),
        max_body_bytes: int = 1 << 20,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self._app = build_app(
            exposition, readiness, middlewares=[self._track_busy, *middlewares], max_body_bytes=max_body_bytes
        )
        self._ssl_context = ssl_context
        self._host = host
        self._requested_port = port
        self._max_connections = max_connections or default_max_connections()
        self._idle_timeout_s = idle_timeout_s
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        # Admitted connections, oldest first; requests being handled, per aiohttp handler.
        self._connections: dict[_Connection, None] = {}
        self._busy: dict[object, int] = {}

    @property
    def app(self) -> web.Application:
        """The application, for adding routes before ``start``."""
        return self._app

    @property
    def port(self) -> int:
        """The port actually bound, also when 0 asked for an ephemeral one."""
        if self._listener is None or not self._listener.sockets:
            raise RuntimeError("HTTP server is not running")
        return int(self._listener.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        """Open connections, not counting those already told to close."""
        return len(self._connections)

    @web.middleware
    async def _track_busy(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        protocol = request.protocol
        self._busy[protocol] = self._busy.get(protocol, 0) + 1
        try:
            return await handler(request)
        finally:
            if self._busy[protocol] == 1:
                del self._busy[protocol]
            else:
                self._busy[protocol] -= 1

    def _accept(self) -> asyncio.BaseProtocol:
        assert self._runner is not None and self._runner.server is not None
        return _Connection(self, self._runner.server())

    def _admit(self, connection: _Connection) -> bool:
        """Make room for a new connection (closing the oldest idle one); False when every one is busy."""
        if len(self._connections) >= self._max_connections:
            idle = next((c for c in self._connections if not self._busy.get(c.handler)), None)
            if idle is None:
                return False
            del self._connections[idle]
            idle.handler.force_close()
        self._connections[connection] = None
        return True

    def _release(self, connection: _Connection) -> None:
        self._connections.pop(connection, None)

    async def start(self) -> None:
        """Bind ``host:port`` and start answering requests."""
        if self._runner is not None:
            raise RuntimeError("HTTP server is already running")
        runner = web.AppRunner(
            self._app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            # aiohttp closes a connection waiting this long for a (complete) request, from its first byte on.
            keepalive_timeout=self._idle_timeout_s,
        )
        await runner.setup()
        self._runner = runner
        try:
            # Not web.TCPSite: every accepted connection has to pass _accept.
            self._listener = await asyncio.get_running_loop().create_server(
                self._accept, self._host, self._requested_port, ssl=self._ssl_context
            )
        except OSError as error:
            self._runner = None
            await runner.cleanup()
            raise OSError(
                error.errno,
                f"cannot listen on {self._host}:{self._requested_port}: {error.strerror}",
            ) from error

    async def stop(self) -> None:
        """Stop listening and close connections; does nothing when not running."""
        listener, self._listener = self._listener, None
        runner, self._runner = self._runner, None
        if listener is not None:
            listener.close()
        if runner is not None:
            await runner.cleanup()
        if listener is not None:
            await listener.wait_closed()


class _Connection(asyncio.Protocol):
    """aiohttp's handler for one connection, admitted (or refused with a 503) when the connection is made.

    Admission happens here rather than in the protocol factory: asyncio calls the
    factory for a whole burst of accepted sockets before any of them is made.
    """

    def __init__(self, server: HttpServer, handler: RequestHandler) -> None:
        self.server = server
        self.handler = handler
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.admitted = self.server._admit(self)
        if self.admitted:
            self.handler.connection_made(transport)
            return
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_REFUSAL)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._release(self)
        if self.admitted:
            self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.handler.data_received(data)

    def eof_received(self) -> None:
        if self.admitted:
            self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()
