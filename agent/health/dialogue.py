"""The TCP probe with TLS or a dialogue: blackbox_exporter's TCP prober with ``tls`` and ``query_response``.

Each dialogue entry reads lines until one matches ``expect``, then sends ``send`` and a newline,
then upgrades to TLS on ``starttls``; the whole run shares the check's timeout. Enough to check
SMTP (``^220`` ... STARTTLS), Redis (``PING`` / ``^\\+PONG``) and similar line protocols.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time

from agent.config.probes import TlsConfig
from agent.config.services import TcpProbe
from agent.health.results import ProbeMetric, ProbeResult
from agent.health.tls import handshake_failure, tls_facts
from agent.httpclient import os_reason
from agent.tlsinfo import tls_seen
from healers.backends.children import agent_side_errno
from rules.durations import format_duration

# A longer line fails the probe: a dialogue reads a line protocol, not a stream.
MAX_LINE_BYTES = 64 * 1024


class DialogueFailed(Exception):
    """The server said something else, or closed the connection, before the dialogue was done."""


async def probe_tcp_dialogue(probe: TcpProbe, context: ssl.SSLContext | None, timeout_s: float) -> ProbeResult:
    """Connect (over TLS when ``probe.tls``), hold the dialogue, and report the certificates seen."""
    host, _, port = probe.address.rpartition(":")
    host = host.strip("[]")
    server_name = probe.tls_config.server_name or host
    metrics: list[ProbeMetric] = []
    start = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                host, int(port), ssl=context if probe.tls else None,
                server_hostname=server_name if probe.tls else None, limit=MAX_LINE_BYTES)
            error = _tls_checked(writer, probe.tls_config, metrics) if probe.tls else ""
            for number, step in enumerate(probe.query_response, 1):
                if error:
                    break
                if step.expect is not None:
                    await _expect(reader, step.expect, number)
                if step.send is not None:
                    writer.write(step.send.encode() + b"\n")
                    await writer.drain()
                if step.starttls:
                    assert context is not None  # built whenever a step upgrades
                    await writer.start_tls(context, server_hostname=server_name)
                    error = _tls_checked(writer, probe.tls_config, metrics)
    except TimeoutError:
        error = f"timed out after {format_duration(timeout_s)}"
    except ssl.SSLError as exc:
        error = handshake_failure(exc)
    except DialogueFailed as exc:
        error = str(exc)
    except OSError as exc:
        reason = f"connect failed: {os_reason(exc)}"
        return ProbeResult(False, time.monotonic() - start, None, reason, agent_side_errno(exc), tuple(metrics))
    finally:
        if writer is not None:
            writer.close()
    return ProbeResult(not error, time.monotonic() - start, None, error, metrics=tuple(metrics))


def _tls_checked(writer: asyncio.StreamWriter, config: TlsConfig, metrics: list[ProbeMetric]) -> str:
    seen = tls_seen(writer.get_extra_info("ssl_object"), verified=not config.insecure_skip_verify)
    found, error = tls_facts(seen, config, time.time())
    metrics[:] = found
    return error


async def _expect(reader: asyncio.StreamReader, pattern: str, number: int) -> None:
    """Read lines until one matches ``pattern``; DialogueFailed at EOF or on an overlong line."""
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial and re.search(pattern, exc.partial.decode("utf-8", "replace").rstrip("\r")):
                return
            raise DialogueFailed(f"step {number}: connection closed before a line matched {pattern!r}") from None
        except asyncio.LimitOverrunError:
            raise DialogueFailed(f"step {number}: a line longer than {MAX_LINE_BYTES} bytes") from None
        if re.search(pattern, line.decode("utf-8", "replace").rstrip("\r\n")):
            return
