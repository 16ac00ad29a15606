"""Probes against the real blackbox_exporter: the same question to the same real server, the same verdict and series.

dnsmasq serves a zone from files on loopback; blackbox_exporter 0.23 (Debian) and our probe ask it
alike, module by module, and must agree on ``probe_success`` and every ``probe_dns_*`` count. A
TLS server with a certificate from a test CA gets the same ``probe_ssl_*`` and ``probe_tls_*``.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import CheckConfig
from agent.config.probes import DnsProbe
from agent.health.dns import probe_dns
from agent.health.probes import ProbeResult, make_probe
from agent.httpclient import new_http_client
from harness.blackbox import blackbox_exporter, probe
from harness.processes import free_port, require_binary, stop, wait_for
from harness.tlscerts import TestCA

pytestmark = pytest.mark.integration

ZONE = """127.0.0.5 svc.test
::5 svc.test
"""
DNSMASQ_CONF = """no-resolv
no-hosts
mx-host=test,mail.test,10
txt-record=svc.test,"v=spf1 -all"
srv-host=_http._tcp.svc.test,svc.test,8080
cname=alias.test,svc.test
"""
# Each case: a DNS check as written in healwatch's config (blackbox's keys, but `transport`).
CASES: dict[str, dict[str, Any]] = {
    "a_matches": {"query_name": "svc.test", "query_type": "A",
                  "validate_answer_rrs": {"fail_if_not_matches_regexp": [r"svc\.test\.\t\d+\tIN\tA\t127\.0\.0\.5"]}},
    "a_wrong_address": {"query_name": "svc.test", "query_type": "A",
                        "validate_answer_rrs": {"fail_if_not_matches_regexp": [r"\tA\t10\.0\.0\.1$"]}},
    "aaaa": {"query_name": "svc.test", "query_type": "AAAA",
             "validate_answer_rrs": {"fail_if_none_matches_regexp": [r"\tAAAA\t::5$"]}},
    "aaaa_forbidden": {"query_name": "svc.test", "query_type": "AAAA",
                       "validate_answer_rrs": {"fail_if_matches_regexp": [r"::5"]}},
    "mx": {"query_name": "test", "query_type": "MX",
           "validate_answer_rrs": {"fail_if_not_matches_regexp": [r"\tMX\t10 mail\.test\.$"]}},
    "txt": {"query_name": "svc.test", "query_type": "TXT",
            "validate_answer_rrs": {"fail_if_not_matches_regexp": ["v=spf1"]}},
    "srv": {"query_name": "_http._tcp.svc.test", "query_type": "SRV",
            "validate_answer_rrs": {"fail_if_not_matches_regexp": [r"\tSRV\t0 0 8080 svc\.test\.$"]}},
    "cname": {"query_name": "alias.test", "query_type": "CNAME",
              "validate_answer_rrs": {"fail_if_none_matches_regexp": [r"\tCNAME\tsvc\.test\.$"]}},
    "nxdomain": {"query_name": "nope.test", "query_type": "A"},
    "nxdomain_expected": {"query_name": "nope.test", "query_type": "A", "valid_rcodes": ["NXDOMAIN"]},
    "no_records_but_required": {"query_name": "nope.test", "query_type": "A", "valid_rcodes": ["NXDOMAIN"],
                                "validate_answer_rrs": {"fail_if_none_matches_regexp": ["."]}},
    "tcp": {"query_name": "svc.test", "query_type": "A", "transport": "tcp"},
}


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """dnsmasq answering on 127.0.0.1 (UDP and TCP) from a hosts file and a few records."""
    binary = require_binary("dnsmasq")
    directory = tmp_path_factory.mktemp("dnsmasq")
    (directory / "hosts").write_text(ZONE)
    (directory / "dnsmasq.conf").write_text(DNSMASQ_CONF + f"addn-hosts={directory / 'hosts'}\n")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--keep-in-foreground", f"--conf-file={directory / 'dnsmasq.conf'}", "--listen-address=127.0.0.1",
         "--bind-interfaces", f"--port={port}", "--pid-file", "--user=root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = f"127.0.0.1:{port}"
    try:
        wait_for(lambda: asyncio.run(probe_dns(DnsProbe(server=server, query_name="svc.test"), 1.0)).success,
                 timeout_s=10)
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="module")
def blackbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """blackbox_exporter with one DNS module per case."""
    modules = {}
    for name, case in CASES.items():
        settings = {k: v for k, v in case.items() if k != "transport"}
        modules[name] = {"prober": "dns", "timeout": "2s", "dns": {
            **settings, "preferred_ip_protocol": "ip4", "transport_protocol": case.get("transport", "udp")}}
    with blackbox_exporter(tmp_path_factory.mktemp("blackbox"), modules) as url:
        yield url


def theirs(blackbox: str, module: str, target: str) -> dict[str, float]:
    return {name: value for (name, _), value in probe(blackbox, module, target).items()
            if name == "probe_success" or (name.startswith("probe_dns_") and "duration" not in name
                                           and "lookup_time" not in name)}


def ours(case: dict[str, Any], server: str) -> dict[str, float]:
    result = asyncio.run(probe_dns(DnsProbe(server=server, **case), 2.0))
    return {"probe_success": float(result.success), **{m.name: m.value for m in result.metrics}}


@pytest.mark.parametrize("module", sorted(CASES))
def test_same_verdict_and_counts_as_blackbox_exporter(module: str, dns_server: str, blackbox: str) -> None:
    """Each question gets blackbox_exporter's probe_success and probe_dns_* counts."""
    assert ours(CASES[module], dns_server) == theirs(blackbox, module, dns_server)


def test_a_server_that_does_not_answer(blackbox: str) -> None:
    """Nothing listening: no answer within the timeout, a failure in both, query_succeeded 0."""
    silent = f"127.0.0.1:{free_port()}"
    result = asyncio.run(probe_dns(DnsProbe(server=silent, query_name="svc.test"), 0.3))
    assert not result.success and result.error
    assert {m.name: m.value for m in result.metrics} == {"probe_dns_query_succeeded": 0.0}
    assert theirs(blackbox, "a_matches", silent)["probe_success"] == 0.0


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestCA]]:
    """A TLS server on loopback (a certificate from a test CA, 45 days left) that holds connections open."""
    ca = TestCA(tmp_path_factory.mktemp("ca"))
    context = ca.issue("leaf", days_left=45).server_context()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = asyncio.run_coroutine_threadsafe(asyncio.start_server(hold, "127.0.0.1", 0, ssl=context), loop).result(5)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", ca
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_tls_series_as_blackbox_exporter(tls_server: tuple[str, TestCA], tmp_path: Path) -> None:
    """A TCP check with tls: the same verdict, certificate expiries and TLS version as blackbox_exporter's."""
    address, ca = tls_server
    modules = {"tls": {"prober": "tcp", "timeout": "2s", "tcp": {
        "tls": True, "preferred_ip_protocol": "ip4", "tls_config": {"ca_file": str(ca.cert)}}}}
    with blackbox_exporter(tmp_path, modules) as url:
        found = probe(url, "tls", address)
    wanted = ("probe_success", "probe_ssl_earliest_cert_expiry", "probe_ssl_last_chain_expiry_timestamp_seconds",
              "probe_tls_version_info")
    theirs = {(name, dict(labels).get("version", "")): value for (name, labels), value in found.items()
              if name in wanted}
    check = CheckConfig.model_validate({"name": "tls", "timeout": "2s", "tcp": {
        "address": address, "tls": True, "tls_config": {"ca_file": str(ca.cert)}}})
    result = asyncio.run(probe_once(check))
    ours = {("probe_success", ""): float(result.success),
            **{(m.name, dict(m.labels).get("version", "")): m.value for m in result.metrics}}
    assert ours == theirs


async def probe_once(check: CheckConfig) -> ProbeResult:
    client = new_http_client()
    try:
        return await make_probe(check, http_client=client)()
    finally:
        await client.aclose()
