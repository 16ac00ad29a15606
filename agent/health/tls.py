"""TLS for probes: the client context a check's ``tls_config`` asks for, and what the handshake showed.

The certificate series are blackbox_exporter's: ``probe_ssl_earliest_cert_expiry`` (the earliest
notAfter of the certificates the server presented), ``probe_ssl_last_chain_expiry_timestamp_seconds``
(the earliest notAfter of the chain verified to a trusted root; only when verification is on) and
``probe_tls_version_info{version}``.
"""

from __future__ import annotations

import functools
import os
import ssl

from agent.config.probes import TlsConfig
from agent.health.results import ProbeMetric
from agent.tlsinfo import TlsSeen

_DAY_S = 86400.0


def client_context(config: TlsConfig) -> ssl.SSLContext:
    """A client context verifying (or, with insecure_skip_verify, only recording) the server's certificates.

    Checks with the same settings share one context (each loads its CAs, ~1 MiB for the system's); a
    ca_file changed on disk gets a new one.
    """
    changed = os.stat(config.ca_file).st_mtime_ns if config.ca_file else 0
    return _context(config.ca_file, changed, config.insecure_skip_verify)


@functools.lru_cache(maxsize=64)
def _context(ca_file: str | None, changed: int, insecure_skip_verify: bool) -> ssl.SSLContext:
    if insecure_skip_verify:  # verifies nothing, so it loads no CAs
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file)


def handshake_failure(exc: ssl.SSLError) -> str:
    """A failed handshake in words: the verification's own reason (expired, self-signed, wrong host) when it has one."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"TLS certificate not accepted: {exc.verify_message}"
    return f"TLS handshake failed: {exc.reason or exc}"


def tls_facts(seen: TlsSeen, config: TlsConfig, now: float) -> tuple[list[ProbeMetric], str]:
    """The handshake's series, and why the certificates fail ``min_days_left`` ("" when they pass)."""
    metrics = [ProbeMetric("probe_tls_version_info", "The TLS version used.", 1.0, (("version", seen.version),))]
    if seen.presented:
        metrics.append(ProbeMetric("probe_ssl_earliest_cert_expiry",
                                   "Earliest expiry of the certificates presented, in Unix time.", min(seen.presented)))
    if seen.verified:
        metrics.append(ProbeMetric("probe_ssl_last_chain_expiry_timestamp_seconds",
                                   "Earliest expiry in the verified chain, in Unix time.", min(seen.verified)))
    if config.min_days_left is not None and seen.presented:
        days_left = (min(seen.presented) - now) / _DAY_S
        if days_left < config.min_days_left:
            if days_left < 0:
                return metrics, f"TLS certificate expired {-days_left:.1f} days ago"
            return metrics, f"TLS certificate expires in {days_left:.1f} days (min_days_left {config.min_days_left:g})"
    return metrics, ""
