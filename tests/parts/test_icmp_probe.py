"""ICMP checks: real echo requests to loopback over raw sockets (root) and unprivileged ping sockets."""

from __future__ import annotations

import asyncio
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

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")


@pytest.fixture()
def ping_sockets_off() -> Iterator[None]:
    """net.ipv4.ping_group_range closed to every group for the test (the kernel's default), then restored."""
    saved = PING_GROUP_RANGE.read_text()
    try:
        PING_GROUP_RANGE.write_text("1 0")
    except OSError:
        pytest.skip("net.ipv4.ping_group_range is read-only here")
    try:
        yield
    finally:
        PING_GROUP_RANGE.write_text(saved)


@pytest.fixture()
def ping_sockets_on() -> Iterator[None]:
    saved = PING_GROUP_RANGE.read_text()
    try:
        PING_GROUP_RANGE.write_text("0 2147483647")
    except OSError:
        pytest.skip("net.ipv4.ping_group_range is read-only here")
    try:
        yield
    finally:
        PING_GROUP_RANGE.write_text(saved)


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
    """net.ipv4.icmp_echo_ignore_all on for the test: loopback stops answering pings."""
    path = Path("/proc/sys/net/ipv4/icmp_echo_ignore_all")
    saved = path.read_text()
    try:
        path.write_text("1")
    except OSError:
        pytest.skip("net.ipv4.icmp_echo_ignore_all is read-only here")
    try:
        yield
    finally:
        path.write_text(saved)


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
