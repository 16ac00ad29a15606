"""The probes' and scrapes' HTTP client against real HTTP servers on 127.0.0.1 (plain asyncio sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from agent.httpclient import MAX_REDIRECTS, FetchError, Fetched, HttpClient, fetch, new_http_client

pytestmark = pytest.mark.timeout(10)


@dataclass
class Seen:
    """Each request a server answered (its request line and headers, names lower-cased), connections, requests left unanswered."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    connections: int = 0
    unanswered: int = 0


Answer = Callable[[str, dict[str, str]], bytes]


@contextlib.asynccontextmanager
async def server(answer: Answer, *, one_per_connection: bool = False) -> AsyncIterator[tuple[str, Seen]]:
    """An HTTP/1.1 server answering each request with ``answer(request_line, headers)``; yields its base URL.

    With ``one_per_connection`` it keeps a connection open after its first answer but closes it, unanswered,
    when a second request arrives on it: a kept-alive connection gone stale.
    """
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            for answered in range(1 << 30):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                if one_per_connection and answered:
                    seen.unanswered += 1
                    break
                headers = dict(line.split(": ", 1) for line in head[1:] if line)
                headers = {name.lower(): value for name, value in headers.items()}
                seen.requests.append((head[0], headers))
                writer.write(answer(head[0], headers))
                await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with listener:
        yield f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}", seen


def response(status: int, body: bytes = b"", *headers: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in (f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers))
    return head.encode() + b"\r\n" + body


async def get(client: HttpClient, url: str, **kwargs: object) -> Fetched:
    return await fetch(client, url, timeout_s=2.0, read_limit=1024, **kwargs)  # type: ignore[arg-type]


def test_redirects_are_followed_and_authorization_stays_with_its_origin() -> None:
    """A same-origin redirect keeps the Authorization header; one to another origin drops it; 303 turns POST into GET."""

    def other(line: str, headers: dict[str, str]) -> bytes:
        return response(200, b"elsewhere")

    async def main() -> tuple[Fetched, Seen, Seen]:
        async with server(other) as (other_url, other_seen):
            def first(line: str, headers: dict[str, str]) -> bytes:
                if line.startswith("POST /start"):
                    return response(303, b"", "Location: /same")
                return response(302, b"", f"Location: {other_url}/end")

            async with server(first) as (url, seen), new_http_client() as client:
                fetched = await get(client, f"{url}/start", method="POST", headers={"Authorization": "Bearer t"})
                return fetched, seen, other_seen

    fetched, seen, other_seen = asyncio.run(main())

    assert fetched.status_code == 200 and fetched.body == b"elsewhere"
    assert [line for line, _ in seen.requests] == ["POST /start HTTP/1.1", "GET /same HTTP/1.1"]
    assert all(headers["authorization"] == "Bearer t" for _, headers in seen.requests)
    assert other_seen.requests[0][0] == "GET /end HTTP/1.1" and "authorization" not in other_seen.requests[0][1]


def test_a_redirect_loop_stops_after_ten() -> None:
    """A server that always redirects fails the fetch after Go's 10 redirects, with a reason."""

    async def main() -> tuple[str, int]:
        async with server(lambda line, headers: response(301, b"", "Location: /again")) as (url, seen):
            async with new_http_client() as client:
                with pytest.raises(FetchError) as raised:
                    await get(client, url)
        return str(raised.value), len(seen.requests)

    reason, requests = asyncio.run(main())

    assert reason == f"stopped after {MAX_REDIRECTS} redirects"
    assert requests == MAX_REDIRECTS + 1


def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    """A reused connection the server closes unanswered is replaced once, so every fetch still succeeds."""

    async def main() -> tuple[list[int], Seen]:
        async with server(lambda line, headers: response(200, b"ok"), one_per_connection=True) as (url, seen):
            async with new_http_client() as client:
                statuses = [(await get(client, url)).status_code for _ in range(3)]
        return statuses, seen

    statuses, seen = asyncio.run(main())

    assert statuses == [200, 200, 200]
    assert seen.connections == 3 and seen.unanswered == 2


def test_gzip_bodies_are_decoded_and_identity_is_asked_by_default() -> None:
    """Without a configured Accept-Encoding the client asks for identity; a gzip answer it asked for is decoded."""
    packed = gzip.compress(b"status: healthy\n")

    def answer(line: str, headers: dict[str, str]) -> bytes:
        if "gzip" in headers.get("accept-encoding", ""):
            return response(200, packed, "Content-Encoding: gzip", "Content-Type: text/plain; charset=latin-1")
        return response(200, b"plain")

    async def main() -> tuple[Fetched, Fetched, Seen]:
        async with server(answer) as (url, seen), new_http_client() as client:
            plain = await get(client, url)
            packed_answer = await get(client, url, headers={"Accept-Encoding": "gzip"})
        return plain, packed_answer, seen

    plain, decoded, seen = asyncio.run(main())

    assert plain.body == b"plain" and seen.requests[0][1]["accept-encoding"] == "identity"
    assert decoded.body == b"status: healthy\n" and decoded.encoding == "latin-1"


def test_no_tls_context_is_built_until_an_https_url_is_fetched() -> None:
    """Plain-HTTP fetches leave the client without a TLS context (no CA bundle loaded); an https one builds it."""

    async def main() -> tuple[bool, bool]:
        async with server(lambda line, headers: response(200, b"ok")) as (url, _), new_http_client() as client:
            await get(client, url)
            before = client._tls is not None
            with pytest.raises(FetchError):
                await get(client, url.replace("http://", "https://"))
            return before, client._tls is not None

    before, after = asyncio.run(main())

    assert not before and after


def test_a_server_closing_without_an_answer_is_a_bad_response() -> None:
    """A fresh connection closed before any answer fails with a reason, not a traceback."""

    async def main() -> str:
        async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        listener = await asyncio.start_server(close, "127.0.0.1", 0)
        async with listener, new_http_client() as client:
            with pytest.raises(FetchError) as raised:
                await get(client, f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/")
        return str(raised.value)

    assert asyncio.run(main()) == "bad response: server closed the connection without answering"
