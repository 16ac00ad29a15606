"""The fleet-wide healing budget: slots per group shared by every agent through a coordination store.

``open_store(backend, url)`` connects to Redis (``redis_store``) or etcd (``etcd_store``); its
``budget(BudgetSettings(group, ...))`` gives the ``FleetBudget`` of a group. Both backends keep the
same promises: the check and the take of a slot are atomic across the fleet, slots are leases the
store expires by its own clock, and a store that does not answer raises ``FleetUnavailable`` quickly.
"""

from __future__ import annotations

from typing import Literal

from healers.fleet.base import (
    DEFAULT_TIMEOUT_S,
    BudgetSettings,
    FleetBudget,
    FleetStore,
    FleetUnavailable,
    Limit,
    parse_limit,
)

__all__ = [
    "BACKENDS",
    "BudgetSettings",
    "DEFAULT_TIMEOUT_S",
    "Backend",
    "FleetBudget",
    "FleetStore",
    "FleetUnavailable",
    "Limit",
    "open_store",
    "parse_limit",
]

Backend = Literal["redis", "etcd"]
BACKENDS: tuple[Backend, ...] = ("redis", "etcd")


def open_store(backend: Backend, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> FleetStore:
    """A client of the store at ``url``; nothing is exchanged until a budget is used."""
    # Imported here: an agent coordinating through one store needs no client library of the other.
    if backend == "redis":
        from healers.fleet.redis_store import RedisStore

        return RedisStore(url, timeout_s)
    if backend == "etcd":
        from healers.fleet.etcd_store import EtcdStore

        return EtcdStore(url, timeout_s)
    raise ValueError(f"expected a coordination backend of {', '.join(BACKENDS)}, got {backend!r}")
