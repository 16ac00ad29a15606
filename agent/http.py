"""The agent's HTTP server: /metrics from the cached exposition, liveness and readiness."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import hdrs, web

from exporters.exposition import Exposition

# readiness(None) answers for the agent as a whole, readiness(name) for one
# service; None means the service is unknown.
Readiness = Callable[[str | None], bool | None]

# In-flight requests are answered in microseconds; a stuck client must not hold
# up daemon shutdown for aiohttp's default of a minute.
SHUTDOWN_TIMEOUT_S = 5.0


def build_app(
    exposition: Exposition,
    readiness: Readiness,
    *,
    middlewares: Sequence[Any] = (),
    max_body_bytes: int = 1 << 20,
) -> web.Application:
    """The routes every agent serves; callers may add more (the JSON API) before starting."""

    async def metrics(request: web.Request) -> web.Response:
        body, content_type, content_encoding = exposition.response(
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
    ) -> None:
        self._app = build_app(exposition, readiness, middlewares=middlewares, max_body_bytes=max_body_bytes)
        self._ssl_context = ssl_context
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None

    @property
    def app(self) -> web.Application:
        """The application, for adding routes before ``start``."""
        return self._app

    @property
    def port(self) -> int:
        """The port actually bound, also when 0 asked for an ephemeral one."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("HTTP server is not running")
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Bind ``host:port`` and start answering requests."""
        if self._runner is not None:
            raise RuntimeError("HTTP server is already running")
        runner = web.AppRunner(
            self._app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port, ssl_context=self._ssl_context).start()
        except OSError as error:
            await runner.cleanup()
            raise OSError(
                error.errno,
                f"cannot listen on {self._host}:{self._requested_port}: {error.strerror}",
            ) from error
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and close connections; does nothing when not running."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
