"""The sample and series model shared by collectors, the store and the rule engine."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
NAME_LABEL = "__name__"

# Prometheus marks a series that disappeared with this exact NaN bit pattern.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale_nan(value: float) -> bool:
    """True only for the staleness marker, not for an ordinary NaN."""
    return math.isnan(value) and struct.pack("<d", value) == struct.pack("<Q", STALE_NAN_BITS)


class Labels(tuple[tuple[str, str], ...]):
    """An immutable label set, sorted by name; empty values are dropped as in Prometheus."""

    __slots__ = ()

    def __new__(cls, pairs: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> Labels:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        return super().__new__(cls, sorted((k, v) for k, v in items if v != ""))

    @classmethod
    def of(cls, name: str, labels: Mapping[str, str] | None = None) -> Labels:
        """Labels of the series ``name{labels}``."""
        merged = dict(labels or {})
        merged[NAME_LABEL] = name
        return cls(merged)

    @property
    def name(self) -> str:
        return self.get(NAME_LABEL)

    def get(self, key: str, default: str = "") -> str:
        for name, value in self:
            if name == key:
                return value
        return default

    def names(self) -> Iterator[str]:
        return (name for name, _ in self)

    def as_dict(self) -> dict[str, str]:
        return dict(self)

    def without(self, *names: str) -> Labels:
        return Labels((k, v) for k, v in self if k not in names)

    def only(self, *names: str) -> Labels:
        return Labels((k, v) for k, v in self if k in names)

    def with_values(self, **values: str) -> Labels:
        merged = dict(self)
        merged.update(values)
        return Labels(merged)

    def __str__(self) -> str:
        inner = ", ".join(
            f'{k}="{_escape(v)}"' for k, v in self if k != NAME_LABEL
        )
        name = self.name
        return f"{name}{{{inner}}}" if inner or not name else name

    def __repr__(self) -> str:
        return f"Labels({str(self)})"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class AlertState(IntEnum):
    """An alert instance's state; the order is Prometheus' (firing > pending > inactive)."""

    INACTIVE = 0
    PENDING = 1
    FIRING = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class Alert:
    """One instance of an alerting rule, identified by its labels (``alertname`` included).

    Times are seconds since the epoch; ``None`` means "not yet".
    """

    labels: Labels
    annotations: dict[str, str]
    value: float
    state: AlertState
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    last_sent_at: float | None = None
    valid_until: float | None = None
    keep_firing_since: float | None = None

    def needs_sending(self, now: float, resend_delay_s: float) -> bool:
        """Prometheus' rule: never while pending; at once after resolving; else every resend delay."""
        if self.state == AlertState.PENDING:
            return False
        if self.resolved_at is not None and (self.last_sent_at is None or self.resolved_at > self.last_sent_at):
            return True
        return self.last_sent_at is None or self.last_sent_at + resend_delay_s < now
