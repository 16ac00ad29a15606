"""What leaves the process: alerts as Alertmanager models them, and notifications about alert groups."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus

from rules.model import Alert

_FNV64_OFFSET = 14695981039346656037
_FNV64_PRIME = 1099511628211
_SEPARATOR = 0xFF  # model.SeparatorByte: cannot occur in valid UTF-8


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: 64-bit FNV-1a over sorted name/value pairs, as 16 hex digits."""
    value = _FNV64_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                value = ((value ^ byte) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
            value = ((value ^ _SEPARATOR) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


@dataclass(frozen=True)
class AlertPayload:
    """One alert as Alertmanager models it; times are seconds since the epoch."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str
    fingerprint: str

    def status(self, now: float) -> str:
        """``resolved`` once ``ends_at`` has passed, else ``firing`` (Alertmanager's ``Alert.Resolved``)."""
        return "resolved" if self.ends_at is not None and self.ends_at <= now else "firing"

    @classmethod
    def of(
        cls,
        labels: Mapping[str, str],
        starts_at: float,
        ends_at: float | None = None,
        annotations: Mapping[str, str] | None = None,
        generator_url: str = "",
    ) -> AlertPayload:
        """An alert with its fingerprint computed from ``labels``."""
        return cls(dict(labels), dict(annotations or {}), starts_at, ends_at, generator_url, fingerprint(labels))


def generator_url(external_url: str, expr: str) -> str:
    """The link Prometheus puts in ``generatorURL``: the expression in the graph page's table tab."""
    return f"{external_url}/graph?g0.expr={quote_plus(expr, safe='')}&g0.tab=1"


def payload_from_alert(
    alert: Alert, external_url: str, expr: str, external_labels: Mapping[str, str] | None = None,
) -> AlertPayload:
    """The alert a rule engine sends, as Prometheus' ``sendAlerts`` builds it, with each external label it lacks
    (as Prometheus' notifier adds them before sending: its own label of the same name wins)."""
    return AlertPayload.of(
        {**(external_labels or {}), **alert.labels.as_dict()},
        starts_at=alert.fired_at if alert.fired_at is not None else alert.active_at,
        ends_at=alert.resolved_at if alert.resolved_at is not None else alert.valid_until,
        annotations=alert.annotations,
        generator_url=generator_url(external_url, expr),
    )


@dataclass(frozen=True)
class Notification:
    """One message to one receiver about one alert group, as of ``created_at``."""

    id: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[AlertPayload, ...]
    created_at: float
    external_url: str = ""
    truncated_alerts: int = 0

    def status(self) -> str:
        """``firing`` if any alert is firing at ``created_at``, else ``resolved``."""
        firing = any(a.status(self.created_at) == "firing" for a in self.alerts)
        return "firing" if firing else "resolved"

    def common_labels(self) -> dict[str, str]:
        """The label pairs every alert of the notification has."""
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        """The annotation pairs every alert of the notification has."""
        return _common([a.annotations for a in self.alerts])


def notification_id(receiver: str, group_key: str, sequence: int, created_at: float) -> str:
    """An idempotency key that stays the same for every retry of one notification.

    ``created_at`` is part of it so that a restarted dispatcher, counting from 1 again,
    does not reuse the keys of notifications sent before the restart.
    """
    digest = hashlib.sha256(f"{receiver}\x00{group_key}\x00{sequence}\x00{created_at!r}".encode())
    return digest.hexdigest()[:32]


def _common(mappings: list[dict[str, str]]) -> dict[str, str]:
    if not mappings:
        return {}
    common = dict(mappings[0])
    for mapping in mappings[1:]:
        common = {k: v for k, v in common.items() if mapping.get(k) == v}
    return common
