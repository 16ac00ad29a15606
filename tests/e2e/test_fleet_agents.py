"""Real agents sharing one fleet budget in a real redis-server: the limit holds, dead holders lose their slot,
and a frozen store leaves every agent running with only traffic cut (issue #8).

Slow by nature: each test starts real ``healwatch run`` processes (the ten-agent test about 15-20 s,
the others about 10 s each on two busy cores), and the store's leases expire in real time.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from harness.fleet import Fleet, heal_of, live_holders, max_in_use
from harness.processes import wait_for
from harness.stores import RedisServer

pytestmark = pytest.mark.integration

LEASE_TTL_S = 2.0


@pytest.mark.timeout(90)
def test_ten_agents_heal_at_most_two_at_a_time_and_every_service_recovers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Ten services fail at once: at no moment do more than 2 agents heal, at some moment 2 do, and all heal."""
    asyncio.run(redis_server.ready())
    with Fleet(tmp_path, 10, redis_server.url, max_concurrent=2, lease_ttl_s=LEASE_TTL_S) as fleet:
        failed_at = fleet.fail_all()
        wait_for(fleet.healed, timeout_s=45, interval_s=0.3)
        heals = [heal_of(agent, failed_at) for agent in fleet.agents]
        # Each interval lies inside its slot's lease, so their overlap never exceeds the slots held.
        assert max_in_use((heal.started_at, heal.ended_at) for heal in heals) == 2
        assert all(heal.outcome == "succeeded" for heal in heals)
        assert all(heal.incidents in (("succeeded",), ("denied", "succeeded")) for heal in heals)
        denied = [heal for heal in heals if heal.denied_at is not None]
        assert len(denied) >= 10 - 2
        assert all(heal.denied_at is not None and heal.denied_at < heal.started_at for heal in denied)
        assert all(len(service.starts()) == 2 for service in fleet.services)  # the first start and one restart
        for agent in fleet.agents:
            if agent.member in {heal.agent for heal in denied}:
                assert (agent.value('healwatch_fleet_denied_total{group="api"}') or 0) >= 1
            assert not agent.log_times("fleet slot lost: its lease expired before it was renewed")


@pytest.mark.timeout(60)
def test_a_killed_agent_frees_its_slot_within_the_lease_and_another_heals(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """SIGKILL the agent holding the only slot mid-heal: its lease lapses within the TTL, the waiting agent heals."""
    asyncio.run(redis_server.ready())
    with Fleet(tmp_path, 2, redis_server.url, start_delays_s=[30.0, 0.5], max_concurrent=1,
               lease_ttl_s=LEASE_TTL_S, wait_healthy_s=60.0) as fleet:
        holder, waiter = fleet.agents
        fleet.services[0].kill()
        wait_for(lambda: len(fleet.services[0].starts()) == 2, timeout_s=10)  # restarted: in wait_healthy now
        taken_at = holder.log_times("fleet slot taken")[0]
        # A live holder renews: its lease outlasts the TTL (real time must pass for that).
        wait_for(lambda: time.time() - taken_at > LEASE_TTL_S * 1.5, timeout_s=LEASE_TTL_S * 2)
        assert live_holders(redis_server.url) == {"agent-0/web"}
        since = time.time()
        fleet.services[1].kill()
        wait_for(lambda: any(i["outcome"] == "denied" for i in waiter.incidents()), timeout_s=10)
        killed_at = time.time()
        holder.kill()
        wait_for(lambda: "agent-0/web" not in live_holders(redis_server.url), timeout_s=LEASE_TTL_S + 2,
                 interval_s=0.02)
        assert time.time() - killed_at <= LEASE_TTL_S + 0.3
        wait_for(lambda: fleet.services[1].answers() and any(
            i["outcome"] == "succeeded" for i in waiter.incidents()), timeout_s=15)
        heal = heal_of(waiter, since)
        assert heal.slot_taken_at is not None
        # The lease lapses within the TTL and the waiter asks again every third of it.
        assert heal.slot_taken_at - killed_at <= LEASE_TTL_S * 4 / 3 + 0.5
        assert heal.incidents == ("denied", "succeeded")


@pytest.mark.timeout(60)
def test_a_frozen_store_with_fail_closed_cuts_traffic_only_and_no_agent_dies(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis frozen (SIGSTOP) while services fail: agents stay up and ready, cut traffic, never restart; then heal."""
    asyncio.run(redis_server.ready())
    with Fleet(tmp_path, 3, redis_server.url, max_concurrent=2, policy="fail_closed",
               lease_ttl_s=LEASE_TTL_S) as fleet:
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            failed_at = fleet.fail_all()

            def blocked_twice() -> bool:  # the policy held on the first try and again on the retry
                return all([i["outcome"] for i in agent.incidents()].count("blocked") >= 2 for agent in fleet.agents)

            wait_for(blocked_twice, timeout_s=20, interval_s=0.2)
            for agent, service in zip(fleet.agents, fleet.services, strict=True):
                assert agent.process.poll() is None and agent.ready()
                assert service.traffic_flag.exists()
                assert len(service.starts()) == 1  # never restarted
                assert (agent.value("healwatch_fleet_store_errors_total") or 0) >= 1
                blocked = next(i for i in agent.incidents() if i["outcome"] == "blocked")
                assert [(step["action"], step["result"]) for step in blocked["steps"]] == [
                    ("traffic cut", "ok"), ("restart", "skipped"), ("wait_healthy", "skipped"),
                    ("traffic restore", "skipped"),
                ]
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        # Once the store answers again, the next retry heals: fail_closed is a pause, not a dead end.
        wait_for(fleet.healed, timeout_s=20, interval_s=0.3)
        for agent in fleet.agents:
            heal = heal_of(agent, failed_at)
            assert heal.outcome == "succeeded" and heal.incidents.count("blocked") >= 2
        assert not any(service.traffic_flag.exists() for service in fleet.services)
