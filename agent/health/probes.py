"""Health probes (HTTP, TCP, exec, process): each runs once and reports, never raising on target failure."""

from __future__ import annotations

import asyncio
import functools
import re
import signal
import time
from collections.abc import Awaitable, Callable

from agent.config import CheckConfig, ExecProbe, HttpProbe
from agent.health.results import ProbeMetric
from agent.health.results import ProbeResult as ProbeResult  # where checks and tests import it from
from agent.httpclient import FetchError, HttpClient, fetch, os_reason
from healers.backends.children import agent_side_errno, child_env, kill_group
from rules.durations import format_duration

# How much of an exec probe's output is kept for the failure reason (and, as lines, for notifications).
EXEC_OUTPUT_TAIL_BYTES = 1024
EXEC_OUTPUT_TAIL_LINES = 10
# How long a killed exec probe's output pipe may take to reach EOF.
_EOF_GRACE_S = 1.0


Probe = Callable[[], Awaitable[ProbeResult]]


def make_probe(
    check: CheckConfig,
    *,
    http_client: HttpClient,
    alive: Callable[[], bool] | None = None,
) -> Probe:
    """The probe ``check`` describes; raise ValueError if a process check gets no ``alive``.

    ``http_client`` is used as given: the caller passes one built with ``verify=False``
    for a check with ``tls_verify: false``.
    """
    timeout_s = check.timeout
    if check.http is not None:
        return functools.partial(probe_http, http_client, check.http, timeout_s)
    if check.tcp is not None and (check.tcp.tls or check.tcp.query_response):
        from agent.health.dialogue import probe_tcp_dialogue  # ssl only where a check speaks TLS
        from agent.health.tls import client_context

        tls = check.tcp.tls or any(step.starttls for step in check.tcp.query_response)
        context = client_context(check.tcp.tls_config) if tls else None
        return functools.partial(probe_tcp_dialogue, check.tcp, context, timeout_s)
    if check.tcp is not None:
        return functools.partial(probe_tcp, check.tcp.address, timeout_s)
    if check.exec is not None:
        return functools.partial(probe_exec, check.exec, timeout_s)
    if check.dns is not None:
        from agent.health.dns import probe_dns  # dnspython only where a DNS check exists

        return functools.partial(probe_dns, check.dns, timeout_s)
    if check.icmp is not None:
        from agent.health.icmp import probe_icmp

        return functools.partial(probe_icmp, check.icmp.host, check.icmp.payload_size, timeout_s)
    if check.grpc is not None:
        from agent.health.grpc_health import probe_grpc  # the optional grpc extra, ~22 MiB

        return functools.partial(probe_grpc, check.grpc, timeout_s)
    if alive is None:
        raise ValueError(f"process check {check.name!r} needs the service's process tracker")
    return functools.partial(probe_process, alive)


# --- HTTP -------------------------------------------------------------------------------------


async def probe_http(client: HttpClient, probe: HttpProbe, timeout_s: float) -> ProbeResult:
    """GET (or ``probe.method``) the URL; healthy on an expected status, a matching body if set, and certificates
    within ``tls_config.min_days_left`` if set."""
    start = time.monotonic()
    try:
        response = await fetch(
            client,
            probe.url,
            method=probe.method,
            headers=probe.headers,
            timeout_s=timeout_s,
            read_limit=probe.max_body_bytes if probe.body_regex is not None else 0,
        )
    except FetchError as exc:
        return ProbeResult(False, time.monotonic() - start, None, str(exc), exc.agent_error)
    duration_s = time.monotonic() - start
    status = response.status_code
    metrics = [ProbeMetric("probe_http_ssl", "Whether the final response came over TLS.",
                           1.0 if response.tls is not None else 0.0)]
    tls_error = ""
    if response.tls is not None:
        from agent.health.tls import tls_facts  # only https checks read certificates

        seen, tls_error = tls_facts(response.tls, probe.tls_config, time.time())
        metrics += seen
    if not _status_expected(status, probe.expect_status):
        wanted = ", ".join(map(str, probe.expect_status)) or "2xx"
        return ProbeResult(False, duration_s, status, f"status {status}, expected {wanted}", metrics=tuple(metrics))
    if probe.body_regex is not None:
        text = response.body.decode(response.encoding, errors="replace")
        if re.search(probe.body_regex, text) is None:
            within = f" in the first {len(response.body)} bytes" if response.truncated else ""
            reason = f"body does not match {probe.body_regex!r}{within}"
            return ProbeResult(False, duration_s, status, reason, metrics=tuple(metrics))
    return ProbeResult(not tls_error, duration_s, status, tls_error, metrics=tuple(metrics))


def _status_expected(status: int, expected: list[int]) -> bool:
    return status in expected if expected else 200 <= status < 300


# --- TCP --------------------------------------------------------------------------------------


async def probe_tcp(address: str, timeout_s: float) -> ProbeResult:
    """Healthy when a TCP connection to HOST:PORT opens within ``timeout_s``; it is closed at once."""
    host, _, port = address.rpartition(":")
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.close()
            await writer.wait_closed()
    except TimeoutError:
        reason = f"timed out after {format_duration(timeout_s)}"
        return ProbeResult(False, time.monotonic() - start, None, reason)
    except OSError as exc:
        reason = f"connect failed: {os_reason(exc)}"
        return ProbeResult(False, time.monotonic() - start, None, reason, agent_side_errno(exc))
    return ProbeResult(True, time.monotonic() - start)


# --- exec -------------------------------------------------------------------------------------


async def probe_exec(probe: ExecProbe, timeout_s: float) -> ProbeResult:
    """Run the argv (no shell) in its own process group with a minimal environment; healthy on exit status 0.

    On timeout the whole group is killed and reaped, so a probe never leaves children behind.
    """
    argv = probe.command
    start = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=child_env(probe.env),
            start_new_session=True,
        )
    except FileNotFoundError:
        return ProbeResult(False, time.monotonic() - start, None, f"executable not found: {argv[0]}")
    except PermissionError:
        return ProbeResult(False, time.monotonic() - start, None, f"permission denied: {argv[0]}")
    except OSError as exc:
        reason = f"cannot run {argv[0]}: {os_reason(exc)}"
        return ProbeResult(False, time.monotonic() - start, None, reason, agent_side_errno(exc, spawning=True))

    assert process.stdout is not None  # stdout=PIPE above
    tail = bytearray()
    reader = asyncio.create_task(_keep_tail(process.stdout, tail, EXEC_OUTPUT_TAIL_BYTES))
    try:
        async with asyncio.timeout(timeout_s):
            await process.wait()
            # EOF arrives once every process holding the output pipe is gone. Unlike awaiting
            # the task itself, asyncio.wait leaves the reader running when the deadline hits.
            await asyncio.wait({reader})
    except TimeoutError:
        pass
    finally:
        exit_code = process.returncode
        if exit_code is None or not reader.done():
            # Timed out or cancelled, or the leader exited leaving children on the pipe: kill
            # the group. Its pipe then reaches EOF at once; only a child that left the group
            # (setsid) could hold it open, hence the bound.
            kill_group(process.pid)
            await asyncio.wait({reader}, timeout=_EOF_GRACE_S)
            reader.cancel()
        await process.wait()
    duration_s = time.monotonic() - start
    if exit_code == 0:
        return ProbeResult(True, duration_s)
    if exit_code is None:
        reason = f"timed out after {format_duration(timeout_s)}"
    elif exit_code < 0:
        reason = f"killed by {signal.Signals(-exit_code).name}"
    else:
        reason = f"exit status {exit_code}"
    text = tail.decode("utf-8", errors="replace")
    output = " ".join(text.split())
    lines = "\n".join(text.rstrip().splitlines()[-EXEC_OUTPUT_TAIL_LINES:])
    return ProbeResult(False, duration_s, None, f"{reason}: {output}" if output else reason, output=lines)


async def _keep_tail(stream: asyncio.StreamReader, tail: bytearray, limit: int) -> None:
    """Read ``stream`` to EOF keeping only its last ``limit`` bytes, so a chatty child costs no memory."""
    while chunk := await stream.read(65536):
        tail += chunk
        del tail[:-limit]


# --- process ----------------------------------------------------------------------------------


async def probe_process(alive: Callable[[], bool]) -> ProbeResult:
    """Healthy while the service's tracked process is alive."""
    start = time.monotonic()
    is_alive = alive()
    return ProbeResult(is_alive, time.monotonic() - start, None, "" if is_alive else "process not running")
