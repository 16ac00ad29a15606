"""The ``api`` section: the HTTP API's token, limits, TLS and query bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.config.types import PositiveDuration, Section


class TlsConfig(Section):
    cert_file: str = Field(description="PEM file of the certificate (and chain) the HTTPS server presents.")
    key_file: str = Field(description="PEM file of cert_file's private key.")


class ApiConfig(Section):
    """The JSON API's protection: a bearer token for mutations (or everything), body limits, TLS."""

    auth: Literal["mutations", "all"] = Field("mutations", description="Which requests need the token.")
    token_env: str = Field("HEALWATCH_TOKEN", description="Environment variable holding the API token.")
    token_file: str | None = Field(None, description="File holding the API token (wins over token_env).")
    max_body_bytes: int = Field(
        64 << 10, gt=0, description="Largest request body in bytes; a larger one is answered 413. The API's bodies "
        "(silences, heal requests) are small, so 64 KiB bounds memory without limiting them.",
    )
    tls: TlsConfig | None = Field(None, description="Serve HTTPS with this certificate; plain HTTP when unset.")
    query_timeout: PositiveDuration = Field(10.0, description="A PromQL query through the API is stopped after this.")
    # Far below Prometheus' 50M: each point a subquery computes is a few Python objects, and at 100k the
    # garbage collector's pauses (they stop the event loop too) stay near 30 ms and a query near 0.3 s of CPU.
    query_max_samples: int = Field(
        100_000, gt=0, description="Samples and points one API query may load or compute (like Prometheus' "
        "--query.max-samples)."
    )
    query_max_concurrency: int = Field(2, gt=0, description="API queries evaluated at once; more wait their turn.")
    max_connections: int | None = Field(
        None, gt=0, description="Open HTTP connections; default min(256, a quarter of the open-file limit)."
    )
    idle_timeout: PositiveDuration = Field(
        10.0, description="A connection without a complete request for this long is closed."
    )
