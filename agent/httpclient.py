"""The agent's shared outgoing HTTP: the client probes and scrapes use, and a bounded fetch.

The client is plain HTTP/1.1 over asyncio streams, parsed by h11: a probe every second costs a
write, a read and h11's parse on a kept-alive connection, not a general client's machinery
(httpx cost ~0.60 ms of CPU per kept-alive probe here, this ~0.09 ms). It follows redirects as Go's client
does for Prometheus and blackbox_exporter (at most 10, Authorization dropped on a change of
origin), and builds a TLS context only when a first https URL is fetched.

A fetch reads at most a given number of body bytes within one deadline for the whole
exchange, and fails with a short reason that never quotes header values (they may be tokens).
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import h11

from agent.tlsinfo import TlsSeen, tls_seen
from healers.backends.children import agent_side_errno
from rules.durations import format_duration

# A probe whose body is not wanted still reads this much of it, so that a short answer leaves its
# connection reusable. A longer body is left unread and its connection closed.
DRAIN_BYTES = 16 * 1024
# Idle keep-alive connections kept open: one per HTTP target of a large sidecar.
KEEPALIVE_CONNECTIONS = 100
# An idle connection older than this is closed rather than reused (httpx's default).
KEEPALIVE_EXPIRY_S = 5.0
# Go's http.Client stops after 10 redirects; Prometheus, blackbox_exporter and Kubernetes use it.
MAX_REDIRECTS = 10
READ_CHUNK = 65536
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host, port


@dataclass(frozen=True)
class Fetched:
    """An HTTP response whose body was read up to a limit."""

    status_code: int
    content_type: str
    encoding: str
    body: bytes
    truncated: bool  # the server had more than the limit to send
    tls: TlsSeen | None = None  # the handshake of the connection that gave this response, if https


class FetchError(Exception):
    """A request that got no usable response; the message is a short reason without header values.

    ``agent_error`` names the errno when the agent, not the server, was out of a resource.
    """

    def __init__(self, reason: str, agent_error: str = "") -> None:
        super().__init__(reason)
        self.agent_error = agent_error


class _WireError(Exception):
    """A failure at one stage of an exchange (``kind``: connect, write, read) with its cause."""

    def __init__(self, kind: str, cause: BaseException, *, before_response: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.cause = cause
        self.before_response = before_response


class _Connection:
    """One open connection and its h11 state."""

    __slots__ = ("origin", "reader", "writer", "h11", "idle_since", "tls")

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tls: TlsSeen | None = None) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.tls = tls

    def close(self) -> None:
        self.writer.close()


class HttpClient:
    """HTTP/1.1 for probes and scrapes; idle connections are kept per origin and reused."""

    def __init__(self, *, verify: bool = True) -> None:
        self.verify = verify
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._tls: ssl.SSLContext | None = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle = [conn for conns in self._idle.values() for conn in conns]
        self._idle.clear()
        self._idle_count = 0
        for conn in idle:
            conn.close()

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], read_limit: int
    ) -> Fetched:
        """Send ``method`` to ``url``, following redirects; read at most ``read_limit`` body bytes."""
        parts = _split(url)
        for _ in range(MAX_REDIRECTS + 1):
            status, response_headers, body, truncated, tls = await self._send(method, parts, headers, read_limit)
            location = response_headers.get("location") if status in _REDIRECTS else None
            if location is None:
                content_type = response_headers.get("content-type", "")
                return Fetched(status, content_type, _charset(content_type), body, truncated, tls)
            target = _split(urljoin(parts.geturl(), location))
            if _origin(target) != _origin(parts):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if status == 303 and method != "HEAD" or status in (301, 302) and method == "POST":
                method = "GET"
            parts = target
        raise FetchError(f"stopped after {MAX_REDIRECTS} redirects")

    async def _send(
        self, method: str, parts: SplitResult, headers: Mapping[str, str], read_limit: int
    ) -> tuple[int, dict[str, str], bytes, bool, TlsSeen | None]:
        """One exchange; a kept-alive connection the server closed meanwhile is replaced once."""
        origin = _origin(parts)
        request = h11.Request(method=method, target=_target(parts), headers=_request_headers(parts, headers))
        conn = self._checkout(origin)
        if conn is not None:
            try:
                return await self._exchange(conn, request, read_limit)
            except _WireError as exc:
                if not exc.before_response:
                    raise
        return await self._exchange(await self._connect(origin), request, read_limit)

    async def _exchange(
        self, conn: _Connection, request: h11.Request, read_limit: int
    ) -> tuple[int, dict[str, str], bytes, bool, TlsSeen | None]:
        try:
            return await self._exchange_on(conn, request, read_limit)
        except BaseException:
            conn.close()
            raise

    async def _exchange_on(
        self, conn: _Connection, request: h11.Request, read_limit: int
    ) -> tuple[int, dict[str, str], bytes, bool, TlsSeen | None]:
        try:
            conn.writer.write((conn.h11.send(request) or b"") + (conn.h11.send(h11.EndOfMessage()) or b""))
            await conn.writer.drain()
        except OSError as exc:
            raise _WireError("write failed", exc, before_response=True) from None
        event = await _next_event(conn)
        while isinstance(event, h11.InformationalResponse):
            event = await _next_event(conn)
        if not isinstance(event, h11.Response):
            raise _WireError("bad response", h11.RemoteProtocolError(f"unexpected {type(event).__name__}"))
        response_headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
        decoder = _decoder(response_headers.get("content-encoding", ""))
        body = bytearray()
        seen = 0
        complete = False
        while True:
            part = await _next_event(conn, started=True)
            if isinstance(part, h11.Data):
                try:
                    chunk = decoder.decompress(part.data) if decoder is not None else part.data
                except zlib.error as exc:
                    raise _WireError("bad response", exc) from None
                seen += len(chunk)
                if len(body) < read_limit:
                    body += chunk[: read_limit - len(body)]
                if seen > max(read_limit, DRAIN_BYTES):
                    break
            elif isinstance(part, h11.EndOfMessage):
                complete = True
                break
        if complete and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            self._checkin(conn)
        else:
            conn.close()
        return event.status_code, response_headers, bytes(body), 0 < read_limit < seen, conn.tls

    def _checkout(self, origin: Origin) -> _Connection | None:
        """An idle connection to ``origin`` that is young enough and still open, others closed."""
        conns = self._idle.get(origin)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            if now - conn.idle_since < KEEPALIVE_EXPIRY_S and not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        return None

    def _checkin(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._idle_count += 1
        if self._idle_count > KEEPALIVE_CONNECTIONS:
            oldest = min((conns[0] for conns in self._idle.values() if conns), key=lambda c: c.idle_since)
            self._idle[oldest.origin].remove(oldest)
            self._idle_count -= 1
            oldest.close()

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        context = self._tls_context() if scheme == "https" else None
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context is not None else None, limit=READ_CHUNK
            )
        except OSError as exc:  # ssl.SSLError is an OSError
            raise _WireError("connect failed", exc) from None
        tls = tls_seen(writer.get_extra_info("ssl_object"), verified=self.verify) if context is not None else None
        return _Connection(origin, reader, writer, tls)

    def _tls_context(self) -> ssl.SSLContext:
        """The client's TLS context, built on first use: only an https target pays for the CA bundle."""
        if self._tls is None:
            self._tls = tls_client_context(self.verify)
        return self._tls


def tls_client_context(verify: bool) -> ssl.SSLContext:
    """As httpx builds it: $SSL_CERT_FILE, $SSL_CERT_DIR or certifi's CAs; or no verification at all."""
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cafile := os.environ.get("SSL_CERT_FILE"):
        context = ssl.create_default_context(cafile=cafile)
    elif capath := os.environ.get("SSL_CERT_DIR"):
        context = ssl.create_default_context(capath=capath)
    else:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


def new_http_client(*, verify: bool = True) -> HttpClient:
    """A client for probes and scrapes; it follows redirects, as blackbox_exporter and Prometheus do.

    Connections are kept alive between requests to the same target (up to 5 s idle).
    """
    return HttpClient(verify=verify)


async def fetch(
    client: HttpClient,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    timeout_s: float,
    read_limit: int,
) -> Fetched:
    """Send one request and read at most ``read_limit`` body bytes, all within ``timeout_s``.

    The deadline bounds the whole exchange, so a server trickling one byte at a time fails at
    it too. A body of at most ``DRAIN_BYTES`` is read to its end even past ``read_limit``, so
    its connection can be reused.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await client.request(method, url, headers or {}, read_limit)
    except TimeoutError:
        raise FetchError(f"timed out after {format_duration(timeout_s)}") from None
    except h11.LocalProtocolError:
        # Its message quotes the offending header, and header values may be tokens.
        raise FetchError("invalid request (LocalProtocolError), check the configured headers") from None
    except _WireError as exc:
        raise FetchError(_wire_reason(exc), agent_side_errno(exc.cause)) from None
    except FetchError:
        raise
    except Exception as exc:
        if agent_error := agent_side_errno(exc):
            raise FetchError(f"the agent cannot open a connection: {_agent_reason(exc)}", agent_error) from None
        # Request-building errors (bad header values, bad URL) quote their input, and
        # header values may be tokens: name the kind of failure only.
        raise FetchError(f"invalid request ({type(exc).__name__}), check the URL and headers") from None


class InvalidURL(ValueError):
    """A URL this client cannot fetch (not http or https, or without a host)."""


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidURL("only http:// and https:// URLs with a host can be fetched")
    return parts


def _origin(parts: SplitResult) -> Origin:
    host = parts.hostname or ""
    return parts.scheme, host, parts.port or _DEFAULT_PORTS[parts.scheme]


def _target(parts: SplitResult) -> str:
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _request_headers(parts: SplitResult, headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Host, User-Agent, Accept and identity encoding unless configured, then the configured headers."""
    scheme, host, port = _origin(parts)
    authority = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        authority = f"{authority}:{port}"
    given = {name.lower() for name in headers}
    base = [("Host", authority), ("User-Agent", "healwatch"), ("Accept", "*/*"), ("Accept-Encoding", "identity")]
    if parts.username is not None and "authorization" not in given:
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        base.append(("Authorization", "Basic " + base64.b64encode(userinfo).decode("ascii")))
    return [(name, value) for name, value in base if name.lower() not in given] + list(headers.items())


async def _next_event(conn: _Connection, *, started: bool = False) -> object:
    """The next h11 event, reading from the socket as needed; EOF before an answer is retryable."""
    while True:
        try:
            event = conn.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise _WireError("bad response", exc) from None
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await conn.reader.read(READ_CHUNK)
        except OSError as exc:
            raise _WireError("read failed", exc, before_response=not started) from None
        if not data and not started and conn.h11.their_state is h11.SEND_RESPONSE:
            raise _WireError("bad response", ConnectionResetError("server closed the connection without answering"),
                             before_response=True)
        conn.h11.receive_data(data)


def _decoder(content_encoding: str) -> zlib._Decompress | None:
    """A decoder for a gzip or deflate body (sent only when a configured Accept-Encoding asked for it)."""
    coding = content_encoding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if coding == "deflate":
        return zlib.decompressobj()
    return None


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _wire_reason(exc: _WireError) -> str:
    """What went wrong on the wire, from the OS, TLS or protocol error underneath."""
    cause = exc.cause
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"{exc.kind}: TLS certificate not trusted ({cause.verify_message})"
    if isinstance(cause, ssl.SSLError):
        return f"{exc.kind}: TLS error ({cause.reason or cause})"
    if agent_side_errno(cause):
        return f"the agent cannot open a connection: {_agent_reason(cause)}"
    if isinstance(cause, OSError) and cause.errno is not None:
        return f"{exc.kind}: {os_reason(cause)}"
    return f"{exc.kind}: {cause}" if str(cause) else exc.kind


def _agent_reason(exc: BaseException) -> str:
    """The strerror of the resource error under ``exc``; MemoryError has none."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    return os_reason(cause) if cause is not None else "out of memory"


def os_reason(exc: OSError) -> str:
    # asyncio replaces strerror with "Connect call failed (...)"; the errno says more.
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)
