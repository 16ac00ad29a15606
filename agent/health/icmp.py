"""The ICMP probe: one echo request, healthy when its reply comes within the timeout (blackbox_exporter's ICMP prober).

Unprivileged ping sockets (``SOCK_DGRAM``, allowed to the groups in ``net.ipv4.ping_group_range``)
are used where the kernel allows them, else raw sockets (root or CAP_NET_RAW). With neither the
check is refused when the config is loaded (``agent.config.probes.ping_socket_kind``), not at every probe.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import time

from agent.config.probes import ICMP_PROTOCOL, ping_socket_kind
from agent.health.results import ProbeMetric, ProbeResult
from agent.httpclient import os_reason
from healers.backends.children import agent_side_errno
from rules.durations import format_duration

_ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
_sequence = itertools.count(1)


async def probe_icmp(host: str, payload_size: int, timeout_s: float) -> ProbeResult:
    """Send one echo request to ``host`` and wait for its reply."""
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            family, _, _, _, address = (await loop.getaddrinfo(host, None, type=socket.SOCK_RAW))[0]
            resolved = time.monotonic()
            kind = ping_socket_kind(family)
            with socket.socket(family, kind, ICMP_PROTOCOL[family]) as sock:
                sock.setblocking(False)
                sequence = next(_sequence) & 0xFFFF
                identifier = os.getpid() & 0xFFFF
                payload = bytes(index & 0xFF for index in range(payload_size))
                await loop.sock_sendto(sock, _echo_request(family, identifier, sequence, payload), address)
                sent = time.monotonic()
                while True:
                    packet, _ = await loop.sock_recvfrom(sock, 65535)
                    if _is_reply(packet, family, kind, identifier, sequence):
                        break
    except TimeoutError:
        return ProbeResult(False, time.monotonic() - start, None, f"no echo reply within {format_duration(timeout_s)}")
    except socket.gaierror as exc:
        return ProbeResult(False, time.monotonic() - start, None, f"cannot resolve {host!r}: {exc.strerror}")
    except OSError as exc:
        reason = f"echo request failed: {os_reason(exc)}"
        return ProbeResult(False, time.monotonic() - start, None, reason, agent_side_errno(exc))
    done = time.monotonic()
    phases = (("resolve", resolved - start), ("setup", sent - resolved), ("rtt", done - sent))
    metrics = tuple(ProbeMetric("probe_icmp_duration_seconds", "Duration of the ICMP request by phase.", value,
                                (("phase", phase),)) for phase, value in phases)
    return ProbeResult(True, done - start, metrics=metrics)


def _echo_request(family: int, identifier: int, sequence: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, 0, identifier, sequence)
    if family == socket.AF_INET6:
        return header + payload  # the kernel fills in the ICMPv6 checksum
    checksum = _checksum(header + payload)
    return struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, checksum, identifier, sequence) + payload


def _is_reply(packet: bytes, family: int, kind: int, identifier: int, sequence: int) -> bool:
    """Whether ``packet`` is the reply to our request (a ping socket's kernel sets the identifier itself)."""
    if family == socket.AF_INET and kind == socket.SOCK_RAW:
        packet = packet[(packet[0] & 0x0F) * 4:]  # a raw IPv4 socket hands over the IP header too
    if len(packet) < 8:
        return False
    kind_of, _, _, their_identifier, their_sequence = struct.unpack("!BBHHH", packet[:8])
    same_sender = kind == socket.SOCK_DGRAM or their_identifier == identifier
    return kind_of == _ECHO_REPLY[family] and their_sequence == sequence and same_sender


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
