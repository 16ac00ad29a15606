"""HTTP checks against the real blackbox_exporter: the same redirect chains and statuses from one real server, the same verdict.

blackbox_exporter 0.23 (Debian) follows redirects with Go's http.Client (at most 10) and takes any 2xx;
healwatch's HTTP check documents the same, and its client is its own (agent/httpclient.py), so both
probe one loopback server path by path and must agree on ``probe_success``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator

import pytest

from agent.config import CheckConfig
from agent.health.probes import make_probe
from agent.httpclient import new_http_client
from harness.blackbox import blackbox_exporter, probe

pytestmark = pytest.mark.integration

# Path -> what it shows: /hop/N redirects to /hop/N-1 until /hop/0 answers 200.
PATHS = {
    "ok": "/hop/0",
    "ten_redirects": "/hop/10",
    "eleven_redirects": "/hop/11",
    "relative_redirect_to_404": "/relative",
    "not_found": "/status/404",
    "server_error": "/status/503",
    "redirect_without_location": "/status/302",
    "see_other_to_ok": "/see-other",
}


def _answer(path: str) -> bytes:
    if match := re.fullmatch(r"/hop/(\d+)", path):
        hops = int(match[1])
        return _response(200, b"ok") if hops == 0 else _response(301, b"", f"Location: /hop/{hops - 1}")
    if match := re.fullmatch(r"/status/(\d+)", path):
        return _response(int(match[1]), b"status")
    if path == "/relative":
        return _response(302, b"", "Location: status/404")
    if path == "/see-other":
        return _response(303, b"", "Location: /hop/0")
    return _response(404, b"")


def _response(status: int, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in (f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers))
    return head.encode() + b"\r\n" + body


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 in its own thread, answering each path as ``_answer`` says."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                request_line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0].decode()
                writer.write(_answer(request_line.split(" ")[1]))
                await writer.drain()
        writer.close()

    listener = asyncio.run_coroutine_threadsafe(asyncio.start_server(handle, "127.0.0.1", 0), loop).result(10)
    try:
        yield f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(listener.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.fixture(scope="module")
def blackbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """blackbox_exporter with one http module: its defaults (follow redirects, any 2xx)."""
    modules = {"http": {"prober": "http", "timeout": "2s", "http": {"preferred_ip_protocol": "ip4"}}}
    with blackbox_exporter(tmp_path_factory.mktemp("blackbox"), modules) as url:
        yield url


def theirs(blackbox: str, target: str) -> bool:
    return probe(blackbox, "http", target)[("probe_success", ())] == 1.0


def ours(target: str) -> bool:
    async def probe() -> bool:
        async with new_http_client() as client:
            config = CheckConfig.model_validate({"name": "h", "timeout": "2s", "http": {"url": target}})
            return (await make_probe(config, http_client=client)()).success

    return asyncio.run(probe())


@pytest.mark.parametrize("case", sorted(PATHS))
def test_same_verdict_as_blackbox_exporter(case: str, server: str, blackbox: str) -> None:
    """Each path gets blackbox_exporter's probe_success from healwatch's HTTP check."""
    target = server + PATHS[case]

    assert ours(target) == theirs(blackbox, target)


def test_the_cases_tell_success_from_failure(server: str, blackbox: str) -> None:
    """The oracle is not vacuous: some paths pass and some fail in blackbox_exporter."""
    verdicts = {case: theirs(blackbox, server + path) for case, path in PATHS.items()}

    assert verdicts["ok"] and verdicts["ten_redirects"] and verdicts["see_other_to_ok"]
    assert not verdicts["eleven_redirects"] and not verdicts["not_found"] and not verdicts["server_error"]
