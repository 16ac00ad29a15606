"""Probes against real servers, sockets and processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from agent.health.probes import ProbeResult, make_probe
from agent.httpclient import new_http_client
from agent.config import CheckConfig
from harness.endpoints import BIG_BODY_BYTES, Served, misbehaving_routes
from harness.endpoints import serve as serve_app

pytestmark = pytest.mark.timeout(10)

CHUNK = b"a" * 65536


def _app(served: Served) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="status: healthy\n")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def auth(request: web.Request) -> web.Response:
        authorized = request.headers.get("Authorization") == "Bearer s3cret-token"
        return web.Response(status=200 if authorized else 401)

    app = web.Application()
    app.add_routes(
        [
            web.get("/ok", ok),
            web.get("/status/{code}", status),
            web.get("/auth", auth),
            *misbehaving_routes(served, trickle=b"x", big_head=b"marker ", big_chunk=CHUNK),
        ]
    )
    return app


def serve(served: Served, ssl_context: ssl.SSLContext | None = None) -> AbstractAsyncContextManager[str]:
    return serve_app(_app(served), ssl_context)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check(**fields: object) -> CheckConfig:
    return CheckConfig.model_validate({"name": "c", "timeout": "300ms", **fields})


async def http_probe(url: str, **http: object) -> ProbeResult:
    async with new_http_client() as client:
        return await make_probe(check(http={"url": url, **http}), http_client=client)()


# --- HTTP -------------------------------------------------------------------------------------


def test_http_200_is_healthy() -> None:
    """A 200 answer is a success carrying its status and a measured duration."""

    async def main() -> ProbeResult:
        async with serve(Served()) as base:
            return await http_probe(f"{base}/ok")

    result = asyncio.run(main())
    assert result.success and result.status_code == 200 and result.error == ""
    assert 0 < result.duration_s < 1


def test_http_probes_of_one_target_reuse_a_connection() -> None:
    """Three probes of a keep-alive server without a body_regex travel over one connection, not three."""
    connections: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
        writer.close()

    async def main() -> list[ProbeResult]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with server, new_http_client() as client:
            probe = make_probe(check(http={"url": url}), http_client=client)
            return [await probe() for _ in range(3)]

    results = asyncio.run(main())
    assert all(result.success for result in results)
    assert len(connections) == 1


def test_http_500_fails_with_status_reason() -> None:
    """A 500 fails when any 2xx is expected, and passes when 500 is listed as expected."""

    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with serve(Served()) as base:
            return (
                await http_probe(f"{base}/status/500"),
                await http_probe(f"{base}/status/500", expect_status=[500]),
            )

    default, listed = asyncio.run(main())
    assert not default.success
    assert default.status_code == 500
    assert default.error == "status 500, expected 2xx"
    assert listed.success


def test_http_body_regex() -> None:
    """body_regex passes on a match and fails, naming the regex, on a mismatch."""

    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with serve(Served()) as base:
            return (
                await http_probe(f"{base}/ok", body_regex="status: (healthy|ok)"),
                await http_probe(f"{base}/ok", body_regex="status: degraded"),
            )

    match, mismatch = asyncio.run(main())
    assert match.success
    assert not mismatch.success and mismatch.status_code == 200
    assert mismatch.error == "body does not match 'status: degraded'"


@pytest.mark.parametrize("path", ["/hang", "/trickle"])
def test_http_hung_or_trickling_server_fails_at_timeout(path: str) -> None:
    """A server that never answers, or sends one byte at a time, fails at the check's timeout."""

    async def main() -> ProbeResult:
        async with serve(Served()) as base:
            return await http_probe(f"{base}{path}", body_regex="never")

    result = asyncio.run(main())
    assert not result.success and result.status_code is None
    assert result.error == "timed out after 300ms"
    assert 0.3 <= result.duration_s < 1.5


def test_http_50mb_body_is_read_only_up_to_max_body_bytes() -> None:
    """A 50 MB body is read only up to max_body_bytes: matching its start passes, later text is not seen."""
    served = Served()

    async def main() -> tuple[ProbeResult, ProbeResult, ProbeResult]:
        async with serve(served) as base:
            url = f"{base}/big"
            return (
                await http_probe(url, body_regex="^marker a+$", max_body_bytes=1 << 20),
                await http_probe(url, body_regex="b", max_body_bytes=1 << 20),
                await http_probe(url),
            )

    matched, not_found, no_regex = asyncio.run(main())
    assert matched.success
    assert not not_found.success
    assert not_found.error == "body does not match 'b' in the first 1048576 bytes"
    assert no_regex.success and no_regex.status_code == 200
    # Three requests each stop early: far less than 3 x 50 MB ever left the server.
    assert served.big_bytes_sent < BIG_BODY_BYTES


def test_http_connection_refused() -> None:
    """A closed port fails with the OS reason and no status code."""
    result = asyncio.run(http_probe(f"http://127.0.0.1:{closed_port()}/"))
    assert not result.success and result.status_code is None
    assert result.error == "connect failed: Connection refused"


def test_http_sends_configured_headers() -> None:
    """Configured headers reach the server: the right token passes, a wrong one gets the 401 reported."""

    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with serve(Served()) as base:
            return (
                await http_probe(f"{base}/auth", headers={"Authorization": "Bearer s3cret-token"}),
                await http_probe(f"{base}/auth", headers={"Authorization": "Bearer wrong-token"}),
            )

    good, bad = asyncio.run(main())
    assert good.success
    assert not bad.success and bad.error == "status 401, expected 2xx"
    assert "wrong-token" not in bad.error


def test_http_header_values_never_appear_in_errors() -> None:
    """A header value h11 refuses to send is reported without quoting the value."""

    async def main() -> ProbeResult:
        async with serve(Served()) as base:
            return await http_probe(f"{base}/auth", headers={"Authorization": "Bearer s3cret\n-token"})

    result = asyncio.run(main())
    assert not result.success
    assert result.error.startswith("invalid request (")
    assert "s3cret" not in result.error


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a freshly generated self-signed certificate for 127.0.0.1."""
    folder: Path = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_https_self_signed_needs_an_unverifying_client(self_signed: ssl.SSLContext) -> None:
    """A self-signed server fails verification with the default client and passes with verify=False."""

    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with serve(Served(), self_signed) as base:
            config = check(http={"url": f"{base}/ok", "tls_verify": False})
            results = []
            for verify in (True, False):
                async with new_http_client(verify=verify) as client:
                    results.append(await make_probe(config, http_client=client)())
            return results[0], results[1]

    strict, lenient = asyncio.run(main())
    assert not strict.success
    assert strict.error == "connect failed: TLS certificate not trusted (self-signed certificate)"
    assert lenient.success and lenient.status_code == 200


# --- TCP --------------------------------------------------------------------------------------


async def tcp_probe(address: str) -> ProbeResult:
    async with new_http_client() as client:
        return await make_probe(check(tcp={"address": address}), http_client=client)()


def test_tcp_open_port_is_healthy_and_closed_port_fails() -> None:
    """Connecting to a listening port succeeds; a closed port fails with 'Connection refused'."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        open_result = asyncio.run(tcp_probe(f"127.0.0.1:{port}"))
    closed_result = asyncio.run(tcp_probe(f"127.0.0.1:{closed_port()}"))
    assert open_result.success
    assert not closed_result.success
    assert closed_result.error == "connect failed: Connection refused"


def test_tcp_unanswered_connect_fails_at_timeout() -> None:
    """When a listener's accept queue is full the SYN goes unanswered and the probe fails at its timeout."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        result = asyncio.run(tcp_probe(f"127.0.0.1:{listener.getsockname()[1]}"))
    assert not result.success
    assert result.error == "timed out after 300ms"
    assert 0.3 <= result.duration_s < 1.5


# --- exec -------------------------------------------------------------------------------------


async def exec_probe(*argv: str, env: dict[str, str] | None = None, timeout: str = "2s") -> ProbeResult:
    config = check(exec={"command": list(argv), "env": env or {}}, timeout=timeout)
    async with new_http_client() as client:
        return await make_probe(config, http_client=client)()


def test_exec_exit_status_decides() -> None:
    """`true` is healthy; `false` fails with its exit status."""
    assert asyncio.run(exec_probe("true")).success
    failed = asyncio.run(exec_probe("false"))
    assert not failed.success and failed.error == "exit status 1"


def test_exec_failure_reason_carries_output_tail() -> None:
    """The reason ends with the tail of the command's output, bounded to about 1 KiB."""
    script = "import sys; print('x' * 100000); print('disk full', file=sys.stderr); sys.exit(3)"
    result = asyncio.run(exec_probe(sys.executable, "-c", script))
    assert result.error.startswith("exit status 3: xxx")
    assert result.error.endswith("disk full")
    assert len(result.error) < 1100


def test_exec_env_is_added_to_the_environment() -> None:
    """Configured env values reach the command, alongside the inherited environment."""
    script = "import os, sys; sys.exit(0 if os.environ['HW_MODE'] == 'probe' and 'PATH' in os.environ else 1)"
    assert asyncio.run(exec_probe(sys.executable, "-c", script, env={"HW_MODE": "probe"})).success


def test_exec_missing_executable() -> None:
    """A command that does not exist fails with a clear reason instead of raising."""
    result = asyncio.run(exec_probe("/nonexistent/healwatch-check"))
    assert not result.success
    assert result.error == "executable not found: /nonexistent/healwatch-check"


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members


def _wait_group_gone(pgid: int) -> list[int]:
    """The group's survivors once SIGKILL had up to 2 s to land (delivery is asynchronous)."""
    deadline = time.monotonic() + 2
    while (members := _group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return members


def test_exec_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A command outliving its timeout fails, and it and its background child are killed."""
    pidfile = tmp_path / "pid"
    script = f'echo $$ > {pidfile}; sleep 60 & sleep 60'
    result = asyncio.run(exec_probe("sh", "-c", script, timeout="300ms"))
    assert not result.success
    assert result.error == "timed out after 300ms"
    assert 0.3 <= result.duration_s < 1.5
    leader = int(pidfile.read_text())
    assert _wait_group_gone(leader) == []


def test_exec_background_child_holding_output_is_killed(tmp_path: Path) -> None:
    """A command that exits 0 but leaves a child holding its output is judged by its exit and cleaned up."""
    pidfile = tmp_path / "pid"
    result = asyncio.run(exec_probe("sh", "-c", f"echo $$ > {pidfile}; sleep 60 & exit 0", timeout="300ms"))
    assert result.success
    assert _wait_group_gone(int(pidfile.read_text())) == []


# --- process ----------------------------------------------------------------------------------


def test_process_probe_follows_alive() -> None:
    """A process check is healthy exactly when the tracker's alive() says so."""
    state = {"alive": True}

    async def main() -> list[ProbeResult]:
        async with new_http_client() as client:
            probe = make_probe(check(process={}), http_client=client, alive=lambda: state["alive"])
            first = await probe()
            state["alive"] = False
            return [first, await probe()]

    up, down = asyncio.run(main())
    assert up.success
    assert not down.success and down.error == "process not running"


def test_process_probe_without_tracker_is_a_wiring_error() -> None:
    """make_probe refuses a process check when no alive() callable is given."""
    with pytest.raises(ValueError, match="process tracker"):
        make_probe(check(process={}), http_client=new_http_client())
