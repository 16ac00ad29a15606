"""Prometheus-style durations: ``500ms``, ``15s``, ``1h30m``."""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
# Units must appear largest first and at most once, as in Prometheus.
_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError naming the expected form."""
    text = text.strip()
    match = _DURATION_RE.match(text)
    if not text or match is None or not any(match.groups()):
        if text.startswith("-"):
            raise ValueError(f"duration {text!r} is negative; expected a positive duration")
        raise ValueError(
            f"invalid duration {text!r}: expected a number with a unit "
            "(ms, s, m, h, d, w, y), e.g. 500ms, 15s, 1h30m"
        )
    return sum(
        int(amount) * _UNIT_SECONDS[unit]
        for amount, unit in zip(match.groups(), _ORDER)
        if amount is not None
    )


def format_duration(seconds: float) -> str:
    """Render seconds the way Prometheus prints durations (``1h30m``, ``500ms``, ``0s``)."""
    total_ms = round(seconds * 1000)
    if total_ms == 0:
        return "0s"
    parts = []
    for unit in _ORDER:
        unit_ms = round(_UNIT_SECONDS[unit] * 1000)
        amount, total_ms = divmod(total_ms, unit_ms)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
