"""The fleet budget against real redis-server and etcd on loopback, and the healing runtime honouring it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, parse_config
from agent.playbooks import fleet_warnings
from healers.fleet import (
    BACKENDS,
    DEFAULT_TIMEOUT_S,
    Backend,
    BudgetSettings,
    FleetStore,
    FleetUnavailable,
    open_store,
    parse_limit,
)
from rules.errors import SourceError
from harness.processes import free_port, until
from harness.stores import EtcdServer, RedisServer
from tests.e2e.test_healing_e2e import Harness, Service, service_config

pytestmark = pytest.mark.timeout(30)


@dataclass(frozen=True)
class Store:
    """A real coordination store under test, and how soon its leases can lapse."""

    backend: Backend
    server: RedisServer | EtcdServer
    short_ttl_s: float  # a short lease the store honours: Redis counts ms, etcd whole seconds (1 s at least)
    reaped_within_s: float  # how long after its TTL an expired lease may still hold (etcd reaps every 0.5 s)

    @property
    def url(self) -> str:
        return self.server.url

    def open(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> FleetStore:
        return open_store(self.backend, self.url, timeout_s=timeout_s)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Each backend-level test runs against a real redis-server and a real etcd."""
    if request.param == "redis":
        yield Store("redis", request.getfixturevalue("redis_server"), short_ttl_s=0.5, reaped_within_s=0.15)
    else:
        yield Store("etcd", request.getfixturevalue("etcd_server"), short_ttl_s=1.0, reaped_within_s=0.75)


def test_max_concurrent_holds_at_every_moment_and_every_holder_gets_a_slot(store: Store) -> None:
    """Ten holders with max_concurrent 2: the recorded timeline never shows more than 2 holding, and all 10 held."""

    async def scenario() -> list[tuple[float, int, str]]:
        await store.server.ready()
        clients = [store.open() for _ in range(10)]
        timeline: list[tuple[float, int, str]] = []  # (when, +1 taken / -1 given back, holder)

        async def agent(number: int) -> None:
            fleet, holder = clients[number].budget(BudgetSettings("api", max_concurrent=2, lease_ttl_s=2.0)), f"agent-{number}"
            while not await fleet.acquire(holder):
                await asyncio.sleep(0.01)
            # Recorded after the store granted and before it hears the release: inside the real lease.
            timeline.append((time.monotonic(), 1, holder))
            await asyncio.sleep(0.03)
            assert await fleet.renew(holder)
            await asyncio.sleep(0.03)
            timeline.append((time.monotonic(), -1, holder))
            await fleet.release(holder)

        try:
            await asyncio.gather(*(agent(number) for number in range(10)))
        finally:
            for client in clients:
                await client.aclose()
        return timeline

    timeline = asyncio.run(scenario())
    holding, peak = 0, 0
    for _, change, _ in sorted(timeline, key=lambda event: (event[0], event[1])):
        holding += change
        peak = max(peak, holding)
    assert peak == 2
    assert sorted(holder for _, change, holder in timeline if change == 1) == sorted(f"agent-{n}" for n in range(10))


def test_a_holder_that_stops_renewing_loses_its_slot_within_the_lease(store: Store) -> None:
    """A renewing holder keeps its slot past the TTL; once it stops, another takes the slot within the TTL."""
    ttl_s = store.short_ttl_s

    async def scenario() -> None:
        await store.server.ready()
        client = store.open()
        try:
            fleet = client.budget(BudgetSettings("api", max_concurrent=1, lease_ttl_s=ttl_s))
            assert await fleet.acquire("alive")
            for _ in range(6):  # twice the lease, kept by renewals
                await asyncio.sleep(ttl_s / 3)
                assert await fleet.renew("alive")
                assert not await fleet.acquire("other")
            assert "all 1 slots" in fleet.last_denial
            stopped = time.monotonic()
            while not await fleet.acquire("other"):
                await asyncio.sleep(0.02)
            assert time.monotonic() - stopped <= ttl_s + store.reaped_within_s
            assert not await fleet.renew("alive")  # its lease is gone, and now another's
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_percentage_follows_the_live_members_or_a_fixed_fleet_size(store: Store) -> None:
    """50% of 4 registered members is 2 slots; with fleet_size 10 it is 5; a lapsed member stops counting."""

    async def scenario() -> None:
        await store.server.ready()
        client = store.open()
        try:
            fleet = client.budget(BudgetSettings("api", max_concurrent="50%", member_ttl_s=5.0))
            for member in ("a", "b", "c", "d"):
                await fleet.register(member)
            assert [await fleet.acquire(h) for h in ("a", "b", "c")] == [True, True, False]
            assert fleet.in_use() == 2
            fixed = client.budget(BudgetSettings("web", max_concurrent="50%", fleet_size=10))
            assert [await fixed.acquire(str(n)) for n in range(6)] == [True] * 5 + [False]
            short = client.budget(BudgetSettings("db", max_concurrent="50%", member_ttl_s=store.short_ttl_s))
            assert [await short.register(m) for m in ("a", "b", "c", "d")] == [1, 2, 3, 4]

            async def only_a_is_live() -> bool:
                return await short.register("a") == 1

            # The store's clock decides expiry: real time must pass, while "a" keeps registering.
            await until(only_a_is_live, timeout_s=store.short_ttl_s + store.reaped_within_s + 1.0)
            assert [await short.acquire(h) for h in ("a", "b")] == [True, False]  # never below 1 slot
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_max_runs_within_the_window_is_enforced_across_holders(store: Store) -> None:
    """Three acquisitions within the window use up max_runs 3; the fourth is denied until the window moves on."""
    within_s = store.short_ttl_s

    async def scenario() -> None:
        await store.server.ready()
        client = store.open()
        try:
            fleet = client.budget(BudgetSettings("api", max_concurrent=5, max_runs=3, within_s=within_s))
            for holder in ("a", "b", "c"):
                assert await fleet.acquire(holder)
                await fleet.release(holder)
            assert not await fleet.acquire("d")
            assert fleet.last_denial == f"fleet group api already healed 3 times within {within_s:g}s"
            await until(lambda: fleet.acquire("d"), timeout_s=within_s + store.reaped_within_s + 1.0)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_store_stopped_or_frozen_raises_fleet_unavailable_quickly(store: Store) -> None:
    """A frozen server (SIGSTOP) and a stopped one both give FleetUnavailable within the timeout, never a hang."""

    async def quickly_unavailable(call: Any, bound_s: float) -> None:
        began = time.monotonic()
        with pytest.raises(FleetUnavailable, match="fleet store"):
            await call
        assert time.monotonic() - began < bound_s

    async def scenario() -> None:
        await store.server.ready()
        client = store.open(timeout_s=0.3)
        try:
            fleet = client.budget(BudgetSettings("api"))
            assert await fleet.acquire("a")
            store.server.process.send_signal(signal.SIGSTOP)
            await quickly_unavailable(fleet.renew("a"), 1.0)
            store.server.stop()
            await quickly_unavailable(fleet.acquire("b"), 1.0)
            await quickly_unavailable(fleet.release("a"), 1.0)
            await quickly_unavailable(fleet.register("a"), 1.0)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_bad_limits_are_refused_with_a_clear_message() -> None:
    """Counts below 1, booleans and percentages outside (0%, 100%] are ValueErrors naming the value."""
    assert parse_limit(2).count == 2 and parse_limit("10%").percent == 10.0
    for bad in (0, True, "0%", "150%", "ten", "10"):
        with pytest.raises(ValueError, match="expected"):
            parse_limit(bad)


def test_an_unknown_backend_is_refused_naming_the_known_ones() -> None:
    """open_store with a backend it does not know is a ValueError listing redis and etcd."""
    with pytest.raises(ValueError, match="expected a coordination backend of redis, etcd, got 'zookeeper'"):
        open_store("zookeeper", "zk://127.0.0.1:2181")  # type: ignore[arg-type]


def fleet_config(
    tmp_path: Path, service: Service, url: str, policy: str, backend: Backend = "redis"
) -> dict[str, Any]:
    """api healed by a playbook in fleet group api: cut traffic, restart, wait until healthy, restore."""
    return {
        "coordination": {"backend": backend, "url": url, "policy": policy, "lease_ttl": "3s"},
        "services": {"api": service_config(service, traffic={"file": {"path": str(tmp_path / "api.down")}})},
        "playbooks": [{
            "name": "heal-api", "when": [{"check_failed": {"service": "api"}}],
            "steps": [{"traffic": "cut"}, {"restart": {}}, {"wait_healthy": {"timeout": "5s"}}, {"traffic": "restore"}],
            "fleet": {"group": "api", "max_concurrent": 1},
        }],
    }


def test_fail_closed_with_the_store_down_only_cuts_traffic(tmp_path: Path) -> None:
    """Redis unreachable and fail_closed: the run cuts traffic, skips the restart, counts a store error."""
    api = Service(tmp_path, "api")
    harness = Harness(tmp_path, fleet_config(tmp_path, api, f"redis://127.0.0.1:{free_port()}/0", "fail_closed"))

    async def scenario() -> None:
        await harness.healing.start()
        try:
            for check in harness.checks["api"]:  # api is not running: its check fails
                await check.run(time.time())
            incident, steps = await harness.first_run("api")
            assert incident.outcome == "blocked"
            assert [(s.action, s.result) for s in steps] == [
                ("traffic cut", "ok"), ("restart", "skipped"), ("wait_healthy", "skipped"), ("traffic restore", "skipped")
            ]
            assert "fleet store is unreachable (fail_closed)" in (steps[1].error or "")
            assert (tmp_path / "api.down").exists() and api.start_count() == 0
            assert (harness.metric("healwatch_fleet_store_errors_total") or 0) >= 1
        finally:
            await harness.close()
            api.kill()

    asyncio.run(scenario())


def test_a_heal_denied_a_slot_is_journaled_and_runs_once_the_slot_is_free(tmp_path: Path, store: Store) -> None:
    """Another agent holds the group's only slot: the heal is journaled as denied, then runs after the release."""
    api = Service(tmp_path, "api")
    harness = Harness(tmp_path, fleet_config(tmp_path, api, store.url, "fail_closed", store.backend))

    async def scenario() -> None:
        await store.server.ready()
        other = store.open()
        fleet = other.budget(BudgetSettings("api", max_concurrent=1, lease_ttl_s=3.0))
        assert await fleet.acquire("other-agent/api")
        await harness.healing.start()
        try:
            for check in harness.checks["api"]:
                await check.run(time.time())
            await until(lambda: harness.runtime.journal.incidents(service="api"))
            denied = harness.runtime.journal.incidents(service="api")[0]
            assert denied.outcome == "denied" and "all 1 slots of fleet group api" in denied.detail
            assert harness.metric("healwatch_fleet_denied_total", group="api") == 1
            assert api.start_count() == 0
            await fleet.release("other-agent/api")
            await until(lambda: any(i.outcome == "succeeded" for i in harness.runtime.journal.incidents(service="api")))
            assert api.start_count() == 1
            await until(lambda: harness.metric("healwatch_fleet_slots_in_use", group="api") == 0)
        finally:
            await harness.close()
            await other.aclose()
            api.kill()

    asyncio.run(scenario())


def test_fail_open_with_the_store_down_heals_locally(tmp_path: Path) -> None:
    """Redis unreachable and fail_open: the whole playbook runs, the service answers again, the error is counted."""
    api = Service(tmp_path, "api")
    harness = Harness(tmp_path, fleet_config(tmp_path, api, f"redis://127.0.0.1:{free_port()}/0", "fail_open"))

    async def scenario() -> None:
        await harness.healing.start()
        try:
            for check in harness.checks["api"]:
                await check.run(time.time())
            await until(lambda: any(i.outcome == "succeeded" for i in harness.runtime.journal.incidents(service="api")))
            assert api.start_count() == 1 and await api.answers()
            assert not (tmp_path / "api.down").exists()
            assert (harness.metric("healwatch_fleet_store_errors_total") or 0) >= 1
        finally:
            await harness.close()
            api.kill()

    asyncio.run(scenario())


def config_with_fleet(coordination: dict[str, Any]) -> AgentConfig:
    """A playbook with a fleet budget, under the given coordination section."""
    return parse_config(json.dumps({
        "coordination": coordination,
        "services": {"api": {"restart": {"exec": ["true"]}}},
        "playbooks": [{"name": "heal-api", "service": "api", "steps": [{"restart": {}}],
                       "fleet": {"group": "api", "max_concurrent": 1}}],
    }), "healwatch.yaml")


def test_the_store_url_defaults_to_the_backend_and_must_speak_its_protocol() -> None:
    """Without url each backend gets its local default; a URL of the other backend's scheme is refused."""
    assert config_with_fleet({"backend": "redis"}).coordination.url == "redis://127.0.0.1:6379/0"
    assert config_with_fleet({"backend": "etcd"}).coordination.url == "http://127.0.0.1:2379"
    assert config_with_fleet({"backend": "etcd", "url": "https://etcd:2379"}).coordination.url == "https://etcd:2379"
    for backend, url, expected in (("etcd", "redis://127.0.0.1:6379/0", "http:// or https://"),
                                   ("redis", "http://127.0.0.1:2379", "redis://, rediss:// or unix://")):
        with pytest.raises(SourceError) as info:
            config_with_fleet({"backend": backend, "url": url})
        assert f"coordination -> url: expected a URL starting with {expected} for backend {backend}" in str(info.value)


def test_a_fleet_budget_without_coordination_is_warned_about() -> None:
    """fleet: on a playbook while coordination.backend is none validates, with a warning that it is ignored."""
    assert fleet_warnings(config_with_fleet({"backend": "none"})) == [
        "playbooks -> 0 -> fleet: ignored, coordination.backend is none (the playbook heals without a fleet budget)"
    ]
    assert fleet_warnings(config_with_fleet({"backend": "etcd"})) == []
