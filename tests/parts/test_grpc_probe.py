"""gRPC checks against a real gRPC server with the standard health service (grpcio-health-checking)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from agent.config import CheckConfig
from agent.health.probes import ProbeResult, make_probe
from agent.httpclient import new_http_client
from harness.processes import free_port
from harness.tlscerts import TestCA


@asynccontextmanager
async def health_server(statuses: dict[str, int], credentials: grpc.ServerCredentials | None = None
                        ) -> AsyncIterator[str]:
    """A gRPC server on loopback whose health service reports ``statuses`` (service name -> ServingStatus)."""
    server = grpc.aio.server()
    servicer = health_aio.HealthServicer()
    for service, status in statuses.items():
        await servicer.set(service, status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"127.0.0.1:{free_port()}"
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    await server.start()
    try:
        yield address
    finally:
        await server.stop(None)


async def probe(grpc_settings: dict[str, Any], timeout: str = "2s") -> ProbeResult:
    config = CheckConfig.model_validate({"name": "grpc", "timeout": timeout, "grpc": grpc_settings})
    client = new_http_client()
    try:
        return await make_probe(config, http_client=client)()
    finally:
        await client.aclose()


def series(result: ProbeResult) -> dict[str, float]:
    return {m.name + "".join(f"/{v}" for _, v in m.labels): m.value for m in result.metrics if "duration" not in m.name}


SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_serving_not_serving_and_unknown_services() -> None:
    """SERVING passes; NOT_SERVING fails with its status; a service the server does not know fails NOT_FOUND."""
    async def main() -> tuple[ProbeResult, ProbeResult, ProbeResult, ProbeResult]:
        async with health_server({"": SERVING, "orders": SERVING, "billing": NOT_SERVING}) as address:
            return (await probe({"address": address}), await probe({"address": address, "service": "orders"}),
                    await probe({"address": address, "service": "billing"}),
                    await probe({"address": address, "service": "nope"}))

    whole, orders, billing, unknown = asyncio.run(main())
    assert whole.success and orders.success, (whole.error, orders.error)
    assert series(orders) == {
        "probe_grpc_status_code": 0.0, "probe_grpc_ssl": 0.0,
        "probe_grpc_healthcheck_response/UNKNOWN": 0.0, "probe_grpc_healthcheck_response/SERVING": 1.0,
        "probe_grpc_healthcheck_response/NOT_SERVING": 0.0, "probe_grpc_healthcheck_response/SERVICE_UNKNOWN": 0.0,
    }
    assert not billing.success and billing.error == "serving status NOT_SERVING"
    assert series(billing)["probe_grpc_healthcheck_response/NOT_SERVING"] == 1.0
    assert not unknown.success and unknown.error.startswith("gRPC NOT_FOUND")
    assert series(unknown)["probe_grpc_status_code"] == 5.0


def test_a_server_that_is_down_is_unavailable() -> None:
    result = asyncio.run(probe({"address": f"127.0.0.1:{free_port()}"}, timeout="1s"))
    assert not result.success and result.error.startswith("gRPC UNAVAILABLE")
    assert series(result)["probe_grpc_status_code"] == 14.0


def test_tls_verified_against_a_test_ca(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    leaf = ca.issue("grpc", hosts=("localhost",))
    credentials = grpc.ssl_server_credentials([(leaf.key.read_bytes(), leaf.cert.read_bytes())])

    async def main() -> tuple[ProbeResult, ProbeResult]:
        async with health_server({"": SERVING}, credentials) as address:
            tls = {"ca_file": str(ca.cert), "server_name": "localhost"}
            good = await probe({"address": address, "tls": True, "tls_config": tls})
            untrusted = await probe({"address": address, "tls": True, "tls_config": {"server_name": "localhost"}},
                                    timeout="1s")
            return good, untrusted

    good, untrusted = asyncio.run(main())
    assert good.success, good.error
    assert series(good)["probe_grpc_ssl"] == 1.0
    assert not untrusted.success and untrusted.error.startswith("gRPC UNAVAILABLE")


def test_without_the_grpc_extra_the_check_is_a_config_error() -> None:
    """In an interpreter where grpc cannot be imported (None in sys.modules), a gRPC check names the extra."""
    code = ("import sys; sys.modules['grpc'] = None\n"
            "from agent.config import CheckConfig\n"
            "try:\n    CheckConfig.model_validate({'name': 'g', 'grpc': {'address': '127.0.0.1:1'}})\n"
            "except ValueError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert "gRPC checks need the grpc extra: pip install 'healwatch[grpc]'" in out
