"""What every fleet-budget backend shares: the limit, the error, and the budget and store contracts."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

DEFAULT_TIMEOUT_S = 1.0
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


class FleetUnavailable(Exception):
    """The coordination store did not answer (in time); the message says what failed."""


@dataclass(frozen=True)
class Limit:
    """At most ``count`` holders, or ``percent`` of the group's size when that is set."""

    count: int = 1
    percent: float | None = None

    def of(self, size: int) -> int:
        """The holders allowed in a group of ``size``: a percentage rounds down but never below 1."""
        if self.percent is None:
            return self.count
        return max(1, math.floor(size * self.percent / 100))


def parse_limit(value: int | str) -> Limit:
    """``2`` -> at most 2 holders; ``"10%"`` -> 10 % of the group; anything else is a ValueError."""
    if isinstance(value, str):
        match = _PERCENT.match(value.strip())
        if match is None or not 0 < float(match.group(1)) <= 100:
            raise ValueError(f"expected a positive count or a percentage in (0%, 100%], got {value!r}")
        return Limit(percent=float(match.group(1)))
    if value is True or value is False or value < 1:
        raise ValueError(f"expected a positive count or a percentage such as 10%, got {value!r}")
    return Limit(count=value)


@dataclass(frozen=True)
class BudgetSettings:
    """What a fleet group allows: ``max_concurrent`` holders (a count or ``"10%"`` of ``fleet_size``, else of
    the live members) and at most ``max_runs`` heals within ``within_s``; slots are leases of ``lease_ttl_s``,
    memberships last ``member_ttl_s``."""

    group: str
    max_concurrent: int | str = 1
    fleet_size: int | None = None
    max_runs: int | None = None
    within_s: float = 600.0
    lease_ttl_s: float = 10.0
    member_ttl_s: float = 15.0

    def __post_init__(self) -> None:
        parse_limit(self.max_concurrent)  # a bad limit is refused here, with parse_limit's message


class BudgetState:
    """What every backend's budget keeps beside its store: the settings, why the last acquire was denied,
    and the slots in use as the store said at the last exchange with it."""

    def __init__(self, settings: BudgetSettings) -> None:
        self.settings = settings
        self.group = settings.group
        self.limit = parse_limit(settings.max_concurrent)
        self.lease_ttl_s = settings.lease_ttl_s
        self.last_denial = ""
        self._in_use = 0

    def in_use(self) -> int:
        """Slots of the group in use, as the store said at the last exchange with it."""
        return self._in_use


class FleetBudget(Protocol):
    """The slots of one group: ``acquire``/``renew``/``release`` a holder's lease, ``register`` a live member.

    Every method raises ``FleetUnavailable`` when the store does not answer within its timeout.
    """

    group: str
    lease_ttl_s: float
    # Why the last acquire was denied, for the journal and the log.
    last_denial: str

    def in_use(self) -> int:
        """Slots of the group in use, as the store said at the last exchange with it."""
        ...

    async def acquire(self, holder_id: str) -> bool:
        """Take a slot for ``holder_id`` (renewing it if already held); False when the budget denies it."""
        ...

    async def renew(self, holder_id: str) -> bool:
        """Extend the lease; False when it had already expired (the slot is lost and may be someone else's)."""
        ...

    async def release(self, holder_id: str) -> None:
        """Give the slot back; releasing a slot not held does nothing."""
        ...

    async def register(self, member_id: str) -> int:
        """Announce ``member_id`` as live for the member TTL; returns the group's live members."""
        ...


class FleetStore(Protocol):
    """A connection to one coordination store, handing out the budgets of its groups."""

    def budget(self, settings: BudgetSettings) -> FleetBudget:
        """The budget of ``settings.group``, exchanging with the store within the store's timeout."""
        ...

    async def aclose(self) -> None:
        """Close the connections; budgets handed out stop working."""
        ...
