"""ICMP checks: real echo requests to loopback over raw sockets (root) and unprivileged ping sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import CheckConfig
from agent.config.probes import ping_socket_kind
from agent.health.icmp import probe_icmp
from harness.processes import require_binary


@contextlib.contextmanager
def sysctl(name: str, value: str) -> Iterator[None]:
    """``net.ipv4.<name>`` set to ``value`` for the test, then restored; the test is skipped where it is read-only."""
    path = Path("/proc/sys/net/ipv4") / name
    saved = path.read_text()
    try:
        path.write_text(value)
    except OSError:
        pytest.skip(f"net.ipv4.{name} is read-only here")
    try:
        yield
    finally:
        path.write_text(saved)


@pytest.fixture()
def ping_sockets_off() -> Iterator[None]:
    """Ping sockets closed to every group (the kernel's default)."""
    with sysctl("ping_group_range", "1 0"):
        yield


@pytest.fixture()
def ping_sockets_on() -> Iterator[None]:
    with sysctl("ping_group_range", "0 2147483647"):
        yield


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_answers_over_raw_sockets(ping_sockets_off: None, host: str) -> None:
    """As root without ping sockets: raw sockets, a reply, the phases reported."""
    if os.geteuid() != 0:
        pytest.skip("raw sockets need root")
    assert ping_socket_kind() == socket.SOCK_RAW
    result = asyncio.run(probe_icmp(host, 56, 2.0))
    assert result.success, result.error
    assert {dict(m.labels)["phase"] for m in result.metrics} == {"resolve", "setup", "rtt"}


def test_loopback_answers_over_ping_sockets(ping_sockets_on: None) -> None:
    assert ping_socket_kind() == socket.SOCK_DGRAM
    result = asyncio.run(probe_icmp("127.0.0.1", 0, 2.0))
    assert result.success, result.error


@pytest.fixture()
def echo_ignored() -> Iterator[None]:
    """Loopback stops answering pings."""
    with sysctl("icmp_echo_ignore_all", "1"):
        yield


def test_no_reply_fails_at_the_timeout(echo_ignored: None) -> None:
    result = asyncio.run(probe_icmp("127.0.0.1", 56, 0.2))
    assert not result.success and result.error == "no echo reply within 200ms"


def test_without_ping_or_raw_sockets_the_check_is_refused_at_load(ping_sockets_off: None) -> None:
    """Without CAP_NET_RAW (setpriv drops it) and with ping sockets closed, the config says what ICMP needs."""
    code = (
        "from agent.config import CheckConfig\n"
        "try:\n"
        "    CheckConfig.model_validate({'name': 'ping', 'icmp': {'host': '127.0.0.1'}})\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    argv = [require_binary("setpriv"), "--bounding-set", "-net_raw", "--inh-caps", "-net_raw",
            sys.executable, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=Path(__file__).resolve().parents[2],
                         check=True).stdout
    assert f"ICMP needs ping sockets (net.ipv4.ping_group_range must include gid {os.getgid()})" in out


def test_an_icmp_check_builds_from_config() -> None:
    check = CheckConfig.model_validate({"name": "ping", "icmp": {"host": "127.0.0.1"}, "timeout": "1s"})
    assert check.kind == "icmp" and check.icmp is not None and check.icmp.payload_size == 56
