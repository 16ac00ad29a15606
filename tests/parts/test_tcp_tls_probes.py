"""TLS and dialogues: TCP and HTTPS checks on certificates made in the test, a STARTTLS line server, a real Redis."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.config import CheckConfig
from agent.config.probes import TlsConfig
from agent.health.tls import client_context
from agent.health.probes import ProbeResult, make_probe
from agent.httpclient import new_http_client
from harness.stores import RedisServer
from harness.tlscerts import TestCA

DAY_S = 86400

LineHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def check(tcp: dict[str, Any], timeout: str = "2s") -> CheckConfig:
    return CheckConfig.model_validate({"name": "tcp", "timeout": timeout, "tcp": tcp})


async def probe_once(config: CheckConfig) -> ProbeResult:
    client = new_http_client()
    try:
        return await make_probe(config, http_client=client)()
    finally:
        await client.aclose()


def run_against(handler: LineHandler, tcp: dict[str, Any], ssl_context: ssl.SSLContext | None = None,
                timeout: str = "2s") -> ProbeResult:
    """Serve ``handler`` on a loopback port (over TLS when given a context) and probe it once."""
    async def main() -> ProbeResult:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await probe_once(check({**tcp, "address": f"127.0.0.1:{port}"}, timeout))

    return asyncio.run(main())


async def hold_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()
    writer.close()


def gauges(result: ProbeResult) -> dict[str, float]:
    return {metric.name + "".join(f"/{v}" for _, v in metric.labels): metric.value for metric in result.metrics}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def test_a_valid_certificate_passes_and_is_reported(ca: TestCA) -> None:
    """Verified against the test CA: TLS 1.3, the leaf's expiry as earliest, the chain's earliest as last chain."""
    leaf = ca.issue("valid", days_left=90)
    result = run_against(hold_open, {"tls": True, "tls_config": {"ca_file": str(ca.cert)}}, leaf.server_context())
    assert result.success, result.error
    found = gauges(result)
    assert found["probe_tls_version_info/TLS 1.3"] == 1.0
    assert abs(found["probe_ssl_earliest_cert_expiry"] - (time.time() + 90 * DAY_S)) < 120
    assert found["probe_ssl_last_chain_expiry_timestamp_seconds"] == found["probe_ssl_earliest_cert_expiry"]


def test_a_certificate_near_expiry_fails_min_days_left(ca: TestCA) -> None:
    leaf = ca.issue("soon", days_left=10)
    tls = {"ca_file": str(ca.cert), "min_days_left": 14}
    result = run_against(hold_open, {"tls": True, "tls_config": tls}, leaf.server_context())
    assert not result.success
    assert result.error.startswith("TLS certificate expires in 9.9") or result.error.startswith(
        "TLS certificate expires in 10.0"), result.error
    assert "probe_ssl_earliest_cert_expiry" in gauges(result)


@pytest.mark.parametrize(("name", "issue", "reason"), [
    ("expired", {"days_left": -2}, "certificate has expired"),
    ("self_signed", {"self_signed": True}, "self-signed certificate"),
    ("other_host", {"hosts": ("other.example",)}, "IP address mismatch, certificate is not valid for '127.0.0.1'"),
])
def test_bad_certificates_say_what_is_wrong(ca: TestCA, name: str, issue: dict[str, Any], reason: str) -> None:
    """Expired, self-signed and another host's certificates fail with the verification's own words."""
    leaf = ca.issue(name, **issue)
    result = run_against(hold_open, {"tls": True, "tls_config": {"ca_file": str(ca.cert)}}, leaf.server_context())
    assert not result.success
    assert result.error.startswith("TLS certificate not accepted:") and reason in result.error, result.error


def test_skipping_verification_still_reports_an_expired_certificate(ca: TestCA) -> None:
    """insecure_skip_verify accepts the handshake; the expiry is reported, and min_days_left still fails it."""
    leaf = ca.issue("expired_anyway", days_left=-2)
    tls = {"insecure_skip_verify": True, "min_days_left": 1}
    result = run_against(hold_open, {"tls": True, "tls_config": tls}, leaf.server_context())
    assert not result.success and result.error.startswith("TLS certificate expired 2.0 days ago"), result.error
    found = gauges(result)
    assert found["probe_ssl_earliest_cert_expiry"] < time.time()
    assert "probe_ssl_last_chain_expiry_timestamp_seconds" not in found  # nothing was verified


def smtp_like(context: ssl.SSLContext) -> LineHandler:
    """A line server speaking just enough SMTP: banner, EHLO offering STARTTLS, the upgrade, QUIT over TLS."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP ready\r\n")
        if (await reader.readline()).startswith(b"EHLO"):
            writer.write(b"250-test\r\n250 STARTTLS\r\n")
        if (await reader.readline()).strip() == b"STARTTLS":
            writer.write(b"220 go ahead\r\n")
            await writer.drain()
            await writer.start_tls(context)
            if (await reader.readline()).strip() == b"QUIT":
                writer.write(b"221 bye\r\n")
        await writer.drain()
        writer.close()

    return handle


SMTP_DIALOGUE = [
    {"expect": "^220 "}, {"send": "EHLO healwatch"}, {"expect": "^250 STARTTLS"},
    {"send": "STARTTLS"}, {"expect": "^220 ", "starttls": True},
    {"send": "QUIT"}, {"expect": "^221 "},
]


def test_a_starttls_dialogue_upgrades_and_reports_the_certificate(ca: TestCA) -> None:
    leaf = ca.issue("smtp", days_left=30)
    tcp = {"query_response": SMTP_DIALOGUE, "tls_config": {"ca_file": str(ca.cert)}}
    result = run_against(smtp_like(leaf.server_context()), tcp)
    assert result.success, result.error
    assert abs(gauges(result)["probe_ssl_earliest_cert_expiry"] - (time.time() + 30 * DAY_S)) < 120


def test_a_dialogue_the_server_does_not_follow_fails_with_its_step(ca: TestCA) -> None:
    """The server closes after QUIT without a 221 line this dialogue wants: step 7 fails, naming its regex."""
    leaf = ca.issue("smtp2", days_left=30)
    dialogue = [*SMTP_DIALOGUE[:-1], {"expect": "^250 "}]
    result = run_against(smtp_like(leaf.server_context()), {"query_response": dialogue,
                                                            "tls_config": {"ca_file": str(ca.cert)}})
    assert not result.success
    assert result.error == "step 7: connection closed before a line matched '^250 '"


def test_redis_ping_pong(tmp_path: Path) -> None:
    """A real redis-server answers PING with +PONG; a dialogue waiting for something else times out."""
    redis = RedisServer()
    try:
        asyncio.run(redis.ready())
        address = f"127.0.0.1:{redis.port}"
        pong = asyncio.run(probe_once(check({"address": address,
                                             "query_response": [{"send": "PING"}, {"expect": r"^\+PONG"}]})))
        assert pong.success, pong.error
        wrong = asyncio.run(probe_once(check({"address": address,
                                              "query_response": [{"send": "PING"}, {"expect": r"^\+NOPE"}]},
                                             timeout="300ms")))
        assert not wrong.success and wrong.error == "timed out after 300ms"
    finally:
        redis.stop()


def test_a_dialogue_entry_must_do_something() -> None:
    with pytest.raises(ValueError, match="at least one of expect, send or starttls"):
        check({"address": "127.0.0.1:1", "query_response": [{}]})


def test_a_ca_file_that_does_not_load_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot load ca_file"):
        check({"address": "127.0.0.1:1", "tls": True, "tls_config": {"ca_file": str(tmp_path / "ca.pem")}})
    with pytest.raises(ValueError, match="cannot load ca_file"):
        check({"address": "127.0.0.1:1", "tls": True, "tls_config": {"ca_file": str(tmp_path / "missing.pem")}})


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def https_probe(ca: TestCA, days_left: float, http: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> ProbeResult:
    """Probe an HTTPS server on loopback whose certificate has ``days_left``, trusting the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.socket = ca.issue(f"https{days_left}", days_left=days_left).server_context().wrap_socket(
        server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = CheckConfig.model_validate({"name": "https", "timeout": "2s", "http": {
            "url": f"https://127.0.0.1:{server.server_address[1]}/", **http}})
        return asyncio.run(probe_once(config))
    finally:
        server.shutdown()


def test_https_reports_its_certificates(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    """An https check reports probe_http_ssl, the certificates' expiries and the TLS version."""
    result = https_probe(ca, 60, {}, monkeypatch)
    assert result.success, result.error
    found = gauges(result)
    assert found["probe_http_ssl"] == 1.0 and found["probe_tls_version_info/TLS 1.3"] == 1.0
    assert abs(found["probe_ssl_earliest_cert_expiry"] - (time.time() + 60 * DAY_S)) < 120
    assert found["probe_ssl_last_chain_expiry_timestamp_seconds"] == found["probe_ssl_earliest_cert_expiry"]


def test_https_fails_min_days_left_with_status_200(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    result = https_probe(ca, 5, {"tls_config": {"min_days_left": 14}}, monkeypatch)
    assert not result.success and result.status_code == 200
    assert result.error.startswith("TLS certificate expires in 4.9") or result.error.startswith(
        "TLS certificate expires in 5.0"), result.error


def test_plain_http_says_no_tls() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        config = CheckConfig.model_validate({"name": "http", "http": {"url": url}})
        result = asyncio.run(probe_once(config))
    finally:
        server.shutdown()
    assert result.success and gauges(result) == {"probe_http_ssl": 0.0}


def test_an_http_check_takes_only_min_days_left_from_tls_config() -> None:
    with pytest.raises(ValueError, match="takes min_days_left only, not insecure_skip_verify"):
        CheckConfig.model_validate({"name": "h", "http": {
            "url": "https://127.0.0.1:1/", "tls_config": {"insecure_skip_verify": True}}})


def test_checks_with_the_same_tls_settings_share_one_context(ca: TestCA) -> None:
    """Each context holds its CAs (~1 MiB for the system's): equal settings share one; not verifying loads none."""
    system, again = client_context(TlsConfig()), client_context(TlsConfig(min_days_left=3))
    assert system is again and system.cert_store_stats()["x509_ca"] > 0
    assert client_context(TlsConfig(insecure_skip_verify=True)).cert_store_stats()["x509_ca"] == 0
    ours = client_context(TlsConfig(ca_file=str(ca.cert)))
    assert ours is not system and ours.cert_store_stats()["x509_ca"] == 1
