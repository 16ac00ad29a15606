"""The gRPC probe: grpc.health.v1.Health/Check, judged and reported as blackbox_exporter's gRPC prober does.

grpcio comes with the optional ``grpc`` extra and is imported only when a gRPC check exists (it
costs ~22 MiB); without it such a check is refused when the config is loaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2

from agent.config.probes import GrpcProbe
from agent.health.results import ProbeMetric, ProbeResult
from rules.durations import format_duration

SERVING_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")


async def probe_grpc(probe: GrpcProbe, timeout_s: float) -> ProbeResult:
    """Ask the server's health service about ``probe.service``; healthy on SERVING."""
    start = time.monotonic()
    channel = _channel(probe)
    serving = ""
    code = grpc.StatusCode.OK
    error = ""
    try:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        response = await check(health_pb2.HealthCheckRequest(service=probe.service), timeout=timeout_s)
        serving = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            error = f"timed out after {format_duration(timeout_s)}"
        else:
            error = f"gRPC {code.name}: {exc.details() or 'no details'}"
    finally:
        await channel.close()
    duration_s = time.monotonic() - start
    if not error and serving != "SERVING":
        error = f"serving status {serving}"
    metrics = [
        ProbeMetric("probe_grpc_status_code", "Response gRPC status code.", float(code.value[0])),
        ProbeMetric("probe_grpc_ssl", "Whether the connection used TLS.", 1.0 if probe.tls else 0.0),
        ProbeMetric("probe_grpc_duration_seconds", "Duration of the gRPC request by phase.", duration_s,
                    (("phase", "check"),)),
        *(ProbeMetric("probe_grpc_healthcheck_response", "Response of the health check by serving status.",
                      1.0 if status == serving else 0.0, (("serving_status", status),))
          for status in SERVING_STATUSES),
    ]
    return ProbeResult(not error, duration_s, error=error, metrics=tuple(metrics))


def _channel(probe: GrpcProbe) -> grpc.aio.Channel:
    if not probe.tls:
        return grpc.aio.insecure_channel(probe.address)
    roots = Path(probe.tls_config.ca_file).read_bytes() if probe.tls_config.ca_file else None
    options = [("grpc.ssl_target_name_override", probe.tls_config.server_name)] if probe.tls_config.server_name else []
    return grpc.aio.secure_channel(probe.address, grpc.ssl_channel_credentials(roots), options=options)
