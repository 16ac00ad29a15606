"""How a delivery attempt ended, judged as Alertmanager judges it, and the receiver contract."""

from __future__ import annotations

import email.utils
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from exporters.notification import Notification

# Alertmanager quotes at most this much of a failed response in its error.
MAX_ERROR_BODY_BYTES = 1024


class OutcomeKind(enum.Enum):
    OK = "ok"
    RETRY = "retry"  # the receiver may accept it later: 5xx, 429, connection errors
    FAIL = "fail"  # the receiver refused it: sending it again would not help


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    detail: str = ""  # why it was not OK, secrets redacted
    status: int | None = None
    retry_after_s: float | None = None  # the receiver's Retry-After, when it gave one

    @classmethod
    def ok(cls, status: int | None = None) -> Outcome:
        return cls(OutcomeKind.OK, status=status)


class Receiver(Protocol):
    """Sends one notification at ``now``; returns the outcome instead of raising for refusals and network errors."""

    name: str

    @property
    def timeout_s(self) -> float:
        """The wall-clock deadline of one attempt."""
        ...

    async def send(self, client: httpx.AsyncClient, notification: Notification, now: float) -> Outcome: ...


def classify_response(
    response: httpx.Response, now: float, redact: Callable[[str], str]
) -> Outcome:
    """2xx is OK; 5xx and 429 are retried (honouring Retry-After); any other status fails at once."""
    status = response.status_code
    if 200 <= status < 300:
        return Outcome.ok(status)
    detail = f"HTTP {status}: {error_body(response.content, redact)}"
    if status >= 500 or status == 429:
        return Outcome(OutcomeKind.RETRY, detail, status, retry_after_s(response.headers, now))
    return Outcome(OutcomeKind.FAIL, detail, status)


def classify_error(exc: Exception, redact: Callable[[str], str]) -> Outcome:
    """Transport errors (refused, reset, timed out) are retried; the message names the error, redacted."""
    return Outcome(OutcomeKind.RETRY, redact(f"{type(exc).__name__}: {exc}"))


def error_body(body: bytes, redact: Callable[[str], str]) -> str:
    """The response body as quoted in an error: its first KiB, decoded leniently, secrets redacted."""
    text = body[:MAX_ERROR_BODY_BYTES].decode("utf-8", "replace")
    suffix = f" ... ({len(body) - MAX_ERROR_BODY_BYTES} more bytes)" if len(body) > MAX_ERROR_BODY_BYTES else ""
    return redact(text.strip()) + suffix


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date); None when absent or invalid."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)
