"""Events the healers react to; producers (the agent's checks) build these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckStateChanged:
    """A check crossed its threshold: healthy -> unhealthy or back."""

    service: str
    check: str
    healthy: bool
    at: float  # seconds since the epoch
    reason: str  # the last probe's error, or "" when it turned healthy
    liveness: bool = True  # a liveness (or startup) check, whose failure heals; False for a readiness-only check
