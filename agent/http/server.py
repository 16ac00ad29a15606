"""The agent's HTTP server: /metrics from the cached exposition, liveness and readiness.

HTTP/1.1 is h11's (keep-alive, pipelining one request at a time, HEAD, ``Connection: close``); the
routes and middlewares are ``web.py``'s. Connections are bounded, as nginx bounds them: beyond
``max_connections`` a new connection takes the place of the oldest one that is not being answered
(idle between requests, or not done sending its request head), and is refused with a 503 only when
every connection is busy. A connection without a complete request for ``idle_timeout_s`` is closed.
So idle or slow clients can neither exhaust the agent's file descriptors nor lock a scrape or a
health probe out. A request body beyond ``max_body_bytes`` is not kept: the request is answered
(a 413 where the handler reads the body) and the connection closed.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from http import HTTPStatus

import h11

from agent.http.web import Application, Headers, Middleware, Request, Response
from exporters.exposition import Exposition

# readiness(None) answers for the agent as a whole, readiness(name) for one
# service; None means the service is unknown.
Readiness = Callable[[str | None], bool | None]

# In-flight requests are answered in microseconds; a stuck client (or a long heal call) must not
# hold up daemon shutdown longer than this.
SHUTDOWN_TIMEOUT_S = 5.0
DEFAULT_IDLE_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 16 * 1024
READ_CHUNK = 64 * 1024
# A body over the limit is read on and dropped up to this much more, so that the client, still sending,
# reads the 413 instead of a connection reset; a larger one is cut off.
DISCARD_BYTES = 1 << 20
_BUSY_REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def default_max_connections() -> int:
    """min(256, a quarter of the open-file limit): the rest stays for checks, scrapes and the state database."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(1, min(256, soft // 4))


def build_app(exposition: Exposition, readiness: Readiness, *, middlewares: Sequence[Middleware] = ()) -> Application:
    """The routes every agent serves; callers may add more (the JSON API) before starting."""

    async def metrics(request: Request) -> Response:
        body, content_type, content_encoding = await exposition.response(
            request.headers.get("Accept", ""), request.headers.get("Accept-Encoding", "")
        )
        headers = {"Vary": "Accept, Accept-Encoding"}
        if content_encoding is not None:
            headers["Content-Encoding"] = content_encoding
        return Response(body=body, content_type=content_type, headers=headers)

    async def healthy(request: Request) -> Response:
        return Response(text="Healthy.\n")

    async def ready(request: Request) -> Response:
        return _readiness_response(readiness(None))

    async def service_ready(request: Request) -> Response:
        service = request.match_info["service"]
        state = readiness(service)
        if state is None:
            return Response(status=404, text=f"Unknown service {service!r}.\n")
        return _readiness_response(state)

    app = Application(middlewares)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/-/ready/{service}", service_ready)
    return app


def _readiness_response(state: bool | None) -> Response:
    if state:
        return Response(text="Ready.\n")
    return Response(status=503, text="Not ready.\n")


class _Date:
    """The Date header's value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True).encode()
        return self._value


class HttpServer:
    """Serves ``build_app`` on the running asyncio loop; the daemon owns signal handling."""

    def __init__(
        self,
        exposition: Exposition,
        readiness: Readiness,
        host: str,
        port: int,
        *,
        middlewares: Sequence[Middleware] = (),
        max_body_bytes: int = 1 << 20,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self._app = build_app(exposition, readiness, middlewares=middlewares)
        self._max_body_bytes = max_body_bytes
        self._ssl_context = ssl_context
        self._host = host
        self._requested_port = port
        self._max_connections = max_connections or default_max_connections()
        self._idle_timeout_s = idle_timeout_s
        self._listener: asyncio.Server | None = None
        # Admitted connections, oldest first.
        self._connections: dict[_Connection, None] = {}
        self._date = _Date()

    @property
    def app(self) -> Application:
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

    def _admit(self, connection: _Connection) -> bool:
        """Make room for a new connection (closing the oldest idle one); False when every one is busy."""
        if len(self._connections) >= self._max_connections:
            idle = next((c for c in self._connections if not c.busy), None)
            if idle is None:
                return False
            del self._connections[idle]
            idle.close()
        self._connections[connection] = None
        return True

    async def start(self) -> None:
        """Bind ``host:port`` and start answering requests."""
        if self._listener is not None:
            raise RuntimeError("HTTP server is already running")
        try:
            self._listener = await asyncio.start_server(
                self._serve, self._host, self._requested_port, ssl=self._ssl_context,
                # A TLS handshake counts as not having sent a request yet.
                ssl_handshake_timeout=self._idle_timeout_s if self._ssl_context is not None else None,
            )
        except OSError as error:
            raise OSError(
                error.errno,
                f"cannot listen on {self._host}:{self._requested_port}: {error.strerror}",
            ) from error

    async def stop(self) -> None:
        """Stop listening, close idle connections and give requests in flight ``SHUTDOWN_TIMEOUT_S`` to finish."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.close()
        connections = list(self._connections)
        for connection in connections:
            connection.stopping = True
            if not connection.busy:
                connection.close()
        tasks = [c.task for c in connections if c.task is not None and not c.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._connections.clear()
        await listener.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: admitted or refused, then its requests one after another."""
        connection = _Connection(writer)
        if self._listener is None:  # accepted just as stop() began
            writer.close()
            return
        if not self._admit(connection):
            writer.write(_BUSY_REFUSAL)
            writer.close()
            return
        try:
            await self._requests(connection, reader)
        except (ConnectionError, h11.LocalProtocolError):
            pass  # the client went away mid-answer; nothing to tell it
        finally:
            self._connections.pop(connection, None)
            connection.close()

    async def _requests(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        h11_connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        peer = connection.writer.get_extra_info("peername")
        remote = str(peer[0]) if isinstance(peer, tuple) else None
        while not connection.stopping:
            try:
                async with asyncio.timeout(self._idle_timeout_s):
                    request = await self._read_request(connection, h11_connection, reader, remote)
            except TimeoutError:
                return
            except h11.RemoteProtocolError:
                if not connection.writer.is_closing():
                    connection.writer.write(_BAD_REQUEST)
                return
            if request is None:
                return
            response = await self._app.handle(request)
            keep_alive = not request.body_too_large and not connection.stopping
            connection.writer.write(self._encode(h11_connection, request.method, response, keep_alive))
            await connection.writer.drain()
            connection.busy = False
            if h11_connection.our_state is not h11.DONE or h11_connection.their_state is not h11.DONE:
                return
            h11_connection.start_next_cycle()

    async def _read_request(
        self, connection: _Connection, h11_connection: h11.Connection, reader: asyncio.StreamReader,
        remote: str | None,
    ) -> Request | None:
        """The next complete request (its body cut at the limit), or None when the client closed."""
        head: h11.Request | None = None
        body: list[bytes] = []
        size = 0
        while True:
            event = h11_connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(READ_CHUNK)
                h11_connection.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                head = event
                connection.busy = True
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > self._max_body_bytes + DISCARD_BYTES:
                    return self._request(head, [], remote, too_large=True)
                if h11_connection.they_are_waiting_for_100_continue:
                    continue_ = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    connection.writer.write(h11_connection.send(continue_) or b"")
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body_bytes + DISCARD_BYTES:
                    assert head is not None
                    return self._request(head, [], remote, too_large=True)
                if size <= self._max_body_bytes:
                    body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return self._request(head, body, remote, too_large=size > self._max_body_bytes)

    def _request(self, head: h11.Request, body: list[bytes], remote: str | None, *, too_large: bool) -> Request:
        # Undecodable bytes travel as surrogates: they match nothing, and never raise in a handler.
        headers = Headers([(name.decode("ascii"), value.decode("utf-8", "surrogateescape"))
                           for name, value in head.headers])
        return Request(
            head.method.decode("ascii"), head.target.decode("utf-8", "surrogateescape"), headers, b"".join(body),
            body_too_large=too_large, remote=remote, max_body_bytes=self._max_body_bytes,
        )

    def _encode(self, h11_connection: h11.Connection, method: str, response: Response, keep_alive: bool) -> bytes:
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()]
        headers.append((b"Content-Length", str(len(response.body)).encode()))
        headers.append((b"Date", self._date.now()))
        if not keep_alive:
            headers.append((b"Connection", b"close"))
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
        parts = [h11_connection.send(head)]
        if method != "HEAD":
            parts.append(h11_connection.send(h11.Data(data=response.body)))
        parts.append(h11_connection.send(h11.EndOfMessage()))
        return b"".join(part for part in parts if part is not None)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _Connection:
    """One admitted connection: whether a request is being answered, and its task for shutdown."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.busy = False
        self.stopping = False
        self.task = asyncio.current_task()

    def close(self) -> None:
        self.writer.close()
