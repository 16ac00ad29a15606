"""TLS for probes: the client context a check's ``tls_config`` asks for, and what the handshake showed.

The certificate series are blackbox_exporter's: ``probe_ssl_earliest_cert_expiry`` (the earliest
notAfter of the certificates the server presented), ``probe_ssl_last_chain_expiry_timestamp_seconds``
(the earliest notAfter of the chain verified to a trusted root; only when verification is on) and
``probe_tls_version_info{version}``.
"""

from __future__ import annotations

import ssl
from typing import Any

from agent.config.probes import TlsConfig
from agent.health.results import ProbeMetric

_DAY_S = 86400.0
# ssl's protocol names -> Go's tls.VersionName, as blackbox_exporter's version label carries them.
_VERSION_NAMES = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}


def client_context(config: TlsConfig) -> ssl.SSLContext:
    """A client context verifying (or, with insecure_skip_verify, only recording) the server's certificates."""
    context = ssl.create_default_context(cafile=config.ca_file)
    if config.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def handshake_failure(exc: ssl.SSLError) -> str:
    """A failed handshake in words: the verification's own reason (expired, self-signed, wrong host) when it has one."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"TLS certificate not accepted: {exc.verify_message}"
    return f"TLS handshake failed: {exc.reason or exc}"


def tls_facts(ssl_object: ssl.SSLObject, config: TlsConfig, now: float) -> tuple[list[ProbeMetric], str]:
    """The handshake's series, and why the certificates fail ``min_days_left`` ("" when they pass)."""
    presented = [ssl.cert_time_to_seconds(info["notAfter"]) for info in _chain_info(ssl_object, verified=False)]
    metrics = [ProbeMetric("probe_tls_version_info", "The TLS version used.", 1.0,
                           (("version", _VERSION_NAMES.get(ssl_object.version() or "", ssl_object.version() or "")),))]
    if presented:
        metrics.append(ProbeMetric("probe_ssl_earliest_cert_expiry",
                                   "Earliest expiry of the certificates presented, in Unix time.", min(presented)))
    if not config.insecure_skip_verify:
        chain = [ssl.cert_time_to_seconds(info["notAfter"]) for info in _chain_info(ssl_object, verified=True)]
        if chain:
            metrics.append(ProbeMetric("probe_ssl_last_chain_expiry_timestamp_seconds",
                                       "Earliest expiry in the verified chain, in Unix time.", min(chain)))
    if config.min_days_left is not None and presented:
        days_left = (min(presented) - now) / _DAY_S
        if days_left < config.min_days_left:
            if days_left < 0:
                return metrics, f"TLS certificate expired {-days_left:.1f} days ago"
            return metrics, f"TLS certificate expires in {days_left:.1f} days (min_days_left {config.min_days_left:g})"
    return metrics, ""


def _chain_info(ssl_object: ssl.SSLObject, *, verified: bool) -> list[dict[str, Any]]:
    """The decoded certificates of the presented (or verified) chain, leaf first."""
    # Public on SSLObject from Python 3.13; on 3.11 and 3.12 the same methods sit on its _sslobj.
    holder: Any = ssl_object if hasattr(ssl_object, "get_unverified_chain") else ssl_object._sslobj  # type: ignore[attr-defined]
    chain = holder.get_verified_chain() if verified else holder.get_unverified_chain()
    return [certificate.get_info() for certificate in chain or []]
