"""The HTTP server under abuse (issue #12): expensive anonymous queries, odd Authorization headers, idle sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from agent.config import parse_config
from agent.daemon import Agent
from tests.realparts import free_port

CONFIG = "state_path: ':memory:'\nhost: {enabled: false}\ndefault_rules: false\n"


# -- item 11: the Authorization header ----------------------------------------------------------


def raw_request(port: int, head: bytes) -> bytes:
    """Send a raw HTTP/1.1 request head and return everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def token_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An agent with api.auth: all and the token ``s3cret`` serving on a thread's loop; yields its port."""
    monkeypatch.setenv("HEALWATCH_TOKEN", "s3cret")
    port = free_port()
    agent = Agent(parse_config(CONFIG + f"listen: 127.0.0.1:{port}\napi: {{auth: all}}\n", "agent.yaml"))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(agent.start())
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(agent.stop())
        loop.close()


@pytest.mark.parametrize(("authorization", "status"), [
    ("Bearer s3cret", 200),
    ("bearer s3cret", 200),
    ("BEARER   s3cret", 200),
    ("s3cret", 401),
    ("Basic s3cret", 401),
    ("Bearer", 401),
    ("Bearer wrong", 401),
])
def test_the_bearer_scheme_is_case_insensitive_and_required(token_agent: int, authorization: str, status: int) -> None:
    """Any case of ``Bearer`` is accepted (RFC 7235); a bare token or another scheme is 401 with a challenge."""
    response = httpx.get(f"http://127.0.0.1:{token_agent}/api/v1/status", headers={"Authorization": authorization})
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer <token>" in response.json()["error"]
        assert "HEALWATCH_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("value", [b"Bearer \xff\xfe\x80", b"\xc3\x28 s3cret", b"Bearer s3cret\xe9"])
def test_non_utf8_authorization_bytes_are_a_client_error_not_a_crash(token_agent: int, value: bytes) -> None:
    """Undecodable bytes in Authorization (sent on a raw socket) get a 400 or 401, never a 500 or a traceback."""
    answer = raw_request(token_agent, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: " + value
                         + b"\r\nConnection: close\r\n\r\n")
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 401 Unauthorized")
    assert b"Traceback" not in answer
