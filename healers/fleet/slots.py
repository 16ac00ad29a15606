"""Taking a fleet slot around a heal: acquire, renew while it runs, give back; deny, or act without the store.

A triggered run of a playbook with ``fleet:`` that would cut traffic or restart first takes a slot
of its group, renews it every third of the lease while it runs and gives it back after. A denied
heal is journaled once per streak and asked again a third of a lease later while the service stays
sick. With the store unreachable, ``fail_open`` heals anyway and ``fail_closed`` runs only the
traffic cuts, retrying a lease later. The agent registers itself as a live member of each group
every third of the member TTL, so percentages follow the live fleet.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

from healers.clock import Clock
from healers.fleet.base import FleetBudget, FleetStore, FleetUnavailable
from healers.runner import Log, RunResult
from healers.safety import Decision

Policy = Literal["fail_open", "fail_closed"]


class FleetMetrics(Protocol):
    def fleet_denied(self, group: str) -> None: ...

    def fleet_store_error(self) -> None: ...


@dataclass(frozen=True)
class FleetSettings:
    """This agent's name in its groups, what to do without the store, and the member TTL."""

    member: str
    policy: Policy = "fail_closed"
    member_ttl_s: float = 15.0


class FleetSlots:
    """The fleet budgets of the playbooks that have one (by playbook name), over one store."""

    def __init__(
        self,
        store: FleetStore,
        budgets: Mapping[str, FleetBudget],
        settings: FleetSettings,
        *,
        clock: Clock,
        metrics: FleetMetrics,
        log: Log,
    ) -> None:
        self.store = store
        self.budgets = dict(budgets)
        self.settings = settings
        self._clock = clock
        self._metrics = metrics
        self._log = log
        self._waiting: set[str] = set()  # services whose denial is journaled; until a slot is granted
        self._busy: set[str] = set()  # services between asking for a slot and giving it back

    def budget(self, playbook: str) -> FleetBudget | None:
        return self.budgets.get(playbook)

    def in_use(self) -> dict[str, int]:
        """Slots in use by group, as last seen in the store."""
        return {budget.group: budget.in_use() for budget in self.budgets.values()}

    def recovered(self, service: str) -> None:
        """The service recovered while waiting: a later denial starts a new streak, journaled again."""
        self._waiting.discard(service)

    async def run(
        self,
        service: str,
        budget: FleetBudget,
        decision: Decision,
        run: Callable[[Decision], Awaitable[RunResult | None]],
        *,
        defer: Callable[[Decision], None],
        journal_denial: Callable[[str], None],
    ) -> RunResult | None:
        """``run`` inside a slot of ``budget``'s group; denied or without the store, as the policy says."""
        if service in self._busy:
            self._log.info("heal not started: already asking for a fleet slot", service=service)
            return None
        holder = f"{self.settings.member}/{service}"
        self._busy.add(service)
        try:
            try:
                granted = await budget.acquire(holder)
            except FleetUnavailable as exc:
                return await self._without_store(service, budget, decision, run, defer, exc)
            if not granted:
                self._deny(service, budget, defer, journal_denial)
                return None
            self._waiting.discard(service)
            self._log.info("fleet slot taken", service=service, group=budget.group, in_use=budget.in_use())
            async with self._holding(budget, holder):
                return await run(decision)
        finally:
            self._busy.discard(service)

    def _deny(
        self, service: str, budget: FleetBudget, defer: Callable[[Decision], None],
        journal_denial: Callable[[str], None],
    ) -> None:
        """Count and log the denial, journal the first of a streak, and ask again a third of a lease later."""
        reason = f"waiting for a fleet slot: {budget.last_denial}"
        self._metrics.fleet_denied(budget.group)
        if service not in self._waiting:
            self._waiting.add(service)
            journal_denial(reason)
        self._log.warning("heal waits for a fleet slot", service=service, reason=reason)
        defer(Decision("wait", reason, not_before=self._clock.now() + budget.lease_ttl_s / 3))

    async def _without_store(
        self,
        service: str,
        budget: FleetBudget,
        decision: Decision,
        run: Callable[[Decision], Awaitable[RunResult | None]],
        defer: Callable[[Decision], None],
        error: FleetUnavailable,
    ) -> RunResult | None:
        """The store did not answer: heal anyway (fail_open) or only cut traffic and try again later."""
        self._metrics.fleet_store_error()
        if self.settings.policy == "fail_open":
            self._log.warning("fleet store unreachable: healing locally (fail_open)", service=service,
                              error=str(error))
            return await run(decision)
        blocked = f"not restarting {service}: the fleet store is unreachable (fail_closed): {error}"
        self._log.warning("fleet store unreachable: cutting traffic only (fail_closed)", service=service,
                          error=str(error))
        result = await run(dataclasses.replace(decision, restart_blocked=blocked))
        if result is not None and result.outcome == "blocked":
            # Nothing else retries a run blocked on the store (a dependency's recovery does for dependencies).
            defer(Decision("wait", blocked, not_before=self._clock.now() + budget.lease_ttl_s))
        return result

    @asynccontextmanager
    async def _holding(self, budget: FleetBudget, holder: str) -> AsyncIterator[None]:
        renewer = asyncio.create_task(self._renew(budget, holder))
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self._release(budget, holder)

    async def _renew(self, budget: FleetBudget, holder: str) -> None:
        while True:
            await self._clock.sleep(budget.lease_ttl_s / 3)
            try:
                if not await budget.renew(holder):
                    self._log.error("fleet slot lost: its lease expired before it was renewed", group=budget.group)
            except FleetUnavailable as exc:
                self._metrics.fleet_store_error()
                self._log.warning("fleet slot not renewed", group=budget.group, error=str(exc))

    async def _release(self, budget: FleetBudget, holder: str) -> None:
        try:
            await budget.release(holder)
        except FleetUnavailable as exc:
            self._metrics.fleet_store_error()
            self._log.warning("fleet slot not released: it expires with its lease", group=budget.group,
                              error=str(exc))

    async def heartbeats(self) -> None:
        """Register this agent as a live member of each of its groups, every third of the member TTL."""
        while True:
            for budget in {budget.group: budget for budget in self.budgets.values()}.values():
                try:
                    await budget.register(self.settings.member)
                except FleetUnavailable as exc:
                    self._metrics.fleet_store_error()
                    self._log.warning("fleet membership not renewed", group=budget.group, error=str(exc))
            await self._clock.sleep(self.settings.member_ttl_s / 3)

    async def aclose(self) -> None:
        await self.store.aclose()
