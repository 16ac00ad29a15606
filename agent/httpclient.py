"""The agent's shared outgoing HTTP: the client probes and scrapes use, and a bounded fetch.

A fetch reads at most a given number of body bytes within one deadline for the whole
exchange, and fails with a short reason that never quotes header values (they may be tokens).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from healers.backends.children import agent_side_errno
from rules.durations import format_duration


# A probe whose body is not wanted still reads this much of it, so that a short answer leaves its
# connection reusable: a new connection per probe cost ~1.0 ms of CPU here, a reused one ~0.55 ms.
# A longer body is left unread and its connection closed, as before.
DRAIN_BYTES = 16 * 1024
# Keep-alive connections kept open: one per HTTP target of a large sidecar (httpx keeps 20).
KEEPALIVE_CONNECTIONS = 100


def new_http_client(*, verify: bool = True) -> httpx.AsyncClient:
    """A client for probes and scrapes; it follows redirects, as blackbox_exporter and Prometheus do.

    Connections are kept alive between requests to the same target (for httpx's default 5 s).
    """
    return httpx.AsyncClient(
        verify=verify, follow_redirects=True, headers={"User-Agent": "healwatch"},
        limits=httpx.Limits(max_keepalive_connections=KEEPALIVE_CONNECTIONS),
    )


@dataclass(frozen=True)
class Fetched:
    """An HTTP response whose body was read up to a limit."""

    status_code: int
    content_type: str
    encoding: str
    body: bytes
    truncated: bool  # the server had more than the limit to send


class FetchError(Exception):
    """A request that got no usable response; the message is a short reason without header values.

    ``agent_error`` names the errno when the agent, not the server, was out of a resource.
    """

    def __init__(self, reason: str, agent_error: str = "") -> None:
        super().__init__(reason)
        self.agent_error = agent_error


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    timeout_s: float,
    read_limit: int,
) -> Fetched:
    """Send one request and read at most ``read_limit`` body bytes, all within ``timeout_s``.

    httpx's own timeouts apply per socket operation, so a server trickling one byte at a
    time would never trip them; the asyncio deadline bounds the whole exchange. A body of at
    most ``DRAIN_BYTES`` is read to its end even past ``read_limit``, so its connection can
    be reused.
    """
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(method, url, headers=headers, timeout=timeout_s) as response:
                body = bytearray()
                seen = 0
                async for chunk in response.aiter_bytes():
                    seen += len(chunk)
                    if len(body) < read_limit:
                        body += chunk[: read_limit - len(body)]
                    if seen > max(read_limit, DRAIN_BYTES):
                        break
                truncated = 0 < read_limit < seen
                return Fetched(
                    status_code=response.status_code,
                    content_type=response.headers.get("content-type", ""),
                    encoding=response.charset_encoding or "utf-8",
                    body=bytes(body),
                    truncated=truncated,
                )
    except (TimeoutError, httpx.TimeoutException):
        raise FetchError(f"timed out after {format_duration(timeout_s)}") from None
    except httpx.LocalProtocolError:
        # Its message quotes the offending header, and header values may be tokens.
        raise FetchError("invalid request (LocalProtocolError), check the configured headers") from None
    except httpx.TransportError as exc:
        raise FetchError(_transport_reason(exc), agent_side_errno(exc)) from None
    except Exception as exc:
        if agent_error := agent_side_errno(exc):
            # httpcore lets a failed socket() through unwrapped (EMFILE when the agent is out of descriptors).
            raise FetchError(f"the agent cannot open a connection: {_agent_reason(exc)}", agent_error) from None
        # Request-building errors (bad header values, bad URL) quote their input, and
        # header values may be tokens: name the kind of failure only.
        raise FetchError(f"invalid request ({type(exc).__name__}), check the URL and headers") from None


def _transport_reason(exc: httpx.TransportError) -> str:
    """What went wrong on the wire, from the OS or TLS error underneath httpx's wrapper."""
    kind = {
        httpx.ConnectError: "connect failed",
        httpx.ReadError: "read failed",
        httpx.WriteError: "write failed",
        httpx.RemoteProtocolError: "bad response",
    }.get(type(exc), "request failed")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"{kind}: TLS certificate not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"{kind}: TLS error ({cause.reason or cause})"
        if isinstance(cause, OSError) and cause.errno is not None:
            return f"{kind}: {os_reason(cause)}"
        cause = cause.__cause__ or cause.__context__
    return f"{kind}: {exc}" if str(exc) else kind


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
