"""What a TLS handshake showed: the protocol version and the expiry of the certificates presented and verified."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

# ssl's protocol names -> Go's tls.VersionName, as blackbox_exporter's version label carries them.
_VERSION_NAMES = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}


@dataclass(frozen=True)
class TlsSeen:
    """One handshake: ``presented`` and ``verified`` are notAfter times (Unix s), leaf first; ``verified`` is
    empty when the chain was not verified."""

    version: str
    presented: tuple[float, ...]
    verified: tuple[float, ...]


def tls_seen(ssl_object: ssl.SSLObject, *, verified: bool) -> TlsSeen:
    """The facts of the handshake behind ``ssl_object`` (read at once: they go with the connection)."""
    version = ssl_object.version() or ""
    return TlsSeen(
        _VERSION_NAMES.get(version, version),
        _not_after(ssl_object, verified=False),
        _not_after(ssl_object, verified=True) if verified else (),
    )


def _not_after(ssl_object: ssl.SSLObject, *, verified: bool) -> tuple[float, ...]:
    # Public on SSLObject from Python 3.13; on 3.11 and 3.12 the same methods sit on its _sslobj.
    public = hasattr(ssl_object, "get_unverified_chain")
    holder: Any = ssl_object if public else ssl_object._sslobj  # type: ignore[attr-defined]
    chain = holder.get_verified_chain() if verified else holder.get_unverified_chain()
    return tuple(ssl.cert_time_to_seconds(certificate.get_info()["notAfter"]) for certificate in chain or [])
