"""The fleet budget against a real redis-server on loopback, and the healing runtime honouring it."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from healers.fleet import Client, FleetBudget, FleetUnavailable, connect, parse_limit
from tests.realparts import free_port
from tests.storeparts import RedisServer
from tests.test_healing_e2e import Harness, Service, service_config, until

pytestmark = pytest.mark.timeout(30)


def budget(client: Client, **settings: Any) -> FleetBudget:
    return FleetBudget(client, "api", **settings)


def test_max_concurrent_holds_at_every_moment_and_every_holder_gets_a_slot(redis_server: RedisServer) -> None:
    """Ten holders with max_concurrent 2: the recorded timeline never shows more than 2 holding, and all 10 held."""

    async def scenario() -> list[tuple[float, int, str]]:
        await redis_server.ready()
        clients = [connect(redis_server.url) for _ in range(10)]
        timeline: list[tuple[float, int, str]] = []  # (when, +1 taken / -1 given back, holder)

        async def agent(number: int) -> None:
            fleet, holder = budget(clients[number], max_concurrent=2, lease_ttl_s=2.0), f"agent-{number}"
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


def test_a_holder_that_stops_renewing_loses_its_slot_within_the_lease(redis_server: RedisServer) -> None:
    """A renewing holder keeps its slot past the TTL; once it stops, another takes the slot within the TTL."""

    async def scenario() -> None:
        await redis_server.ready()
        client = connect(redis_server.url)
        try:
            fleet = budget(client, max_concurrent=1, lease_ttl_s=0.3)
            assert await fleet.acquire("alive")
            for _ in range(6):  # 0.6 s: twice the lease, kept by renewals
                await asyncio.sleep(0.1)
                assert await fleet.renew("alive")
                assert not await fleet.acquire("other")
            assert "all 1 slots" in fleet.last_denial
            stopped = time.monotonic()
            while not await fleet.acquire("other"):
                await asyncio.sleep(0.02)
            assert time.monotonic() - stopped <= 0.3 + 0.15
            assert not await fleet.renew("alive")  # its lease is gone, and now another's
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_percentage_follows_the_live_members_or_a_fixed_fleet_size(redis_server: RedisServer) -> None:
    """50% of 4 registered members is 2 slots; with fleet_size 10 it is 5; a lapsed member stops counting."""

    async def scenario() -> None:
        await redis_server.ready()
        client = connect(redis_server.url)
        try:
            fleet = budget(client, max_concurrent="50%", member_ttl_s=5.0)
            for member in ("a", "b", "c", "d"):
                await fleet.register(member)
            assert [await fleet.acquire(h) for h in ("a", "b", "c")] == [True, True, False]
            assert fleet.in_use() == 2
            fixed = FleetBudget(client, "web", max_concurrent="50%", fleet_size=10)
            assert [await fixed.acquire(str(n)) for n in range(6)] == [True] * 5 + [False]
            short = FleetBudget(client, "db", max_concurrent="50%", member_ttl_s=0.2)
            assert [await short.register(m) for m in ("a", "b", "c", "d")] == [1, 2, 3, 4]
            await asyncio.sleep(0.3)  # the store's clock decides expiry: real time must pass
            assert await short.register("a") == 1
            assert [await short.acquire(h) for h in ("a", "b")] == [True, False]  # never below 1 slot
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_max_runs_within_the_window_is_enforced_across_holders(redis_server: RedisServer) -> None:
    """Three acquisitions within the window use up max_runs 3; the fourth is denied until the window moves on."""

    async def scenario() -> None:
        await redis_server.ready()
        client = connect(redis_server.url)
        try:
            fleet = budget(client, max_concurrent=5, max_runs=3, within_s=0.5)
            for holder in ("a", "b", "c"):
                assert await fleet.acquire(holder)
                await fleet.release(holder)
            assert not await fleet.acquire("d")
            assert fleet.last_denial == "fleet group api already healed 3 times within 0.5s"
            await until(lambda: fleet.acquire("d"), timeout_s=2.0)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_store_stopped_or_frozen_raises_fleet_unavailable_quickly(redis_server: RedisServer) -> None:
    """A frozen server (SIGSTOP) and a stopped one both give FleetUnavailable within the timeout, never a hang."""

    async def quickly_unavailable(call: Any, bound_s: float) -> None:
        began = time.monotonic()
        with pytest.raises(FleetUnavailable, match="fleet store"):
            await call
        assert time.monotonic() - began < bound_s

    async def scenario() -> None:
        await redis_server.ready()
        client = connect(redis_server.url, timeout_s=0.3)
        try:
            fleet = budget(client, timeout_s=0.3)
            assert await fleet.acquire("a")
            redis_server.process.send_signal(signal.SIGSTOP)
            await quickly_unavailable(fleet.renew("a"), 1.0)
            redis_server.stop()
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
            parse_limit(bad)  # type: ignore[arg-type]


def fleet_config(tmp_path: Path, service: Service, url: str, policy: str) -> dict[str, Any]:
    """api healed by a playbook in fleet group api: cut traffic, restart, wait until healthy, restore."""
    return {
        "coordination": {"backend": "redis", "url": url, "policy": policy, "lease_ttl": "3s"},
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
            await until(lambda: harness.healing.journal.incidents(service="api"))
            incident = harness.healing.journal.incidents(service="api")[0]
            await until(lambda: (harness.healing.journal.incident(incident.id) or incident).outcome == "blocked")
            steps = harness.healing.journal.steps(incident.id)
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


def test_a_heal_denied_a_slot_is_journaled_and_runs_once_the_slot_is_free(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Another agent holds the group's only slot: the heal is journaled as denied, then runs after the release."""
    api = Service(tmp_path, "api")
    harness = Harness(tmp_path, fleet_config(tmp_path, api, redis_server.url, "fail_closed"))

    async def scenario() -> None:
        await redis_server.ready()
        other = connect(redis_server.url)
        fleet = budget(other, max_concurrent=1, lease_ttl_s=3.0)
        assert await fleet.acquire("other-agent/api")
        await harness.healing.start()
        try:
            for check in harness.checks["api"]:
                await check.run(time.time())
            await until(lambda: harness.healing.journal.incidents(service="api"))
            denied = harness.healing.journal.incidents(service="api")[0]
            assert denied.outcome == "denied" and "all 1 slots of fleet group api" in denied.detail
            assert harness.metric("healwatch_fleet_denied_total", group="api") == 1
            assert api.start_count() == 0
            await fleet.release("other-agent/api")
            await until(lambda: any(i.outcome == "succeeded" for i in harness.healing.journal.incidents(service="api")))
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
            await until(lambda: any(i.outcome == "succeeded" for i in harness.healing.journal.incidents(service="api")))
            assert api.start_count() == 1 and await api.answers()
            assert not (tmp_path / "api.down").exists()
            assert (harness.metric("healwatch_fleet_store_errors_total") or 0) >= 1
        finally:
            await harness.close()
            api.kill()

    asyncio.run(scenario())
