"""What the fleet budget costs, and the ten-agent heal as a timeline (issue #8).

Run from the repository root: ``python3 -m bench.fleet [--quick] [--output bench/results/fleet.json]``.
Everything runs on loopback against a throwaway redis-server (and etcd, a single member) that the
benchmark starts and stops; every agent and service it starts is stopped before it returns.

1. Slot latency: one client takes and gives back a slot of an otherwise idle group, ``--rounds``
   times after a warm-up, through the same ``healers.fleet`` budget the agent uses; p50/p99 of the
   acquire, the release and the round, for each store.
2. Extra wait when the budget is free: one real agent per coordination backend (``none``, ``redis``,
   ``etcd``), each beside its own service, all running the same playbook. Round-robin over the
   agents, a service is SIGKILLed and healed; the wait is the agent's log line of the failing check
   (``check_state_changed``) to the first step's start in its journal. Medians over ``--heals``.
3. The ten-agent scenario of ``tests/e2e/test_fleet_agents.py`` (max_concurrent 2, lease 2 s, each
   service needing ~1 s to come back), once, drawn to ``bench/results/fleet_timeline.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.output import write_json
from healers.fleet import BudgetSettings, open_store
from harness.fleet import Fleet, Heal, heal_of, in_use, max_in_use, parse_time
from harness.processes import wait_for
from harness.stores import EtcdServer, RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"
MAX_CONCURRENT = 2
LEASE_TTL_S = 2.0
STORES = ("redis", "etcd")


# -- 1. slot latency -------------------------------------------------------------------------


async def slot_latency(backend: str, url: str, rounds: int, warmup: int) -> dict[str, Any]:
    """Acquire then release one slot ``rounds`` times; milliseconds per call."""
    store = open_store(backend, url)  # type: ignore[arg-type]
    budget = store.budget(BudgetSettings("bench", max_concurrent=1, lease_ttl_s=10.0))
    acquire_ms, release_ms = [], []
    try:
        for round_number in range(warmup + rounds):
            began = time.perf_counter()
            if not await budget.acquire("bench-holder"):
                raise RuntimeError(f"{backend}: the idle group denied a slot: {budget.last_denial}")
            acquired = time.perf_counter()
            await budget.release("bench-holder")
            released = time.perf_counter()
            if round_number >= warmup:
                acquire_ms.append((acquired - began) * 1000)
                release_ms.append((released - acquired) * 1000)
    finally:
        await store.aclose()
    rounds_ms = [a + r for a, r in zip(acquire_ms, release_ms, strict=True)]
    return {"rounds": rounds, "acquire_ms": _quantiles(acquire_ms), "release_ms": _quantiles(release_ms),
            "acquire_release_ms": _quantiles(rounds_ms)}


def _quantiles(values: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(max(values), 3)}


# -- 2. the wait a free budget adds -----------------------------------------------------------


def free_budget_wait(workdir: Path, urls: dict[str, str], heals: int) -> dict[str, Any]:
    """One agent per backend heals its own service ``heals`` times, in turns; check failed -> first step."""
    with contextlib.ExitStack() as stack:
        fleets = {
            backend: stack.enter_context(Fleet(workdir / backend, 1, urls.get(backend), start_delays_s=[0.0],
                                               backend=backend, max_concurrent=MAX_CONCURRENT,
                                               lease_ttl_s=LEASE_TTL_S))
            for backend in ("none", *urls)
        }
        waits: dict[str, list[float]] = {backend: [] for backend in fleets}
        for _ in range(heals):
            for backend, fleet in fleets.items():
                waits[backend].append(_one_heal(fleet).waited_s * 1000)
    medians = {backend: round(statistics.median(values), 2) for backend, values in waits.items()}
    return {
        "heals": heals,
        "check_failed_to_first_step_ms": {
            backend: {"median": medians[backend], "min": round(min(values), 2), "max": round(max(values), 2)}
            for backend, values in waits.items()
        },
        "extra_median_ms": {backend: round(medians[backend] - medians["none"], 2) for backend in urls},
    }


def _one_heal(fleet: Fleet) -> Heal:
    """Kill the fleet's only service and wait until its agent healed it again."""
    agent, service = fleet.agents[0], fleet.services[0]
    since = time.time()
    service.kill()
    wait_for(lambda: service.answers() and any(
        i["outcome"] == "succeeded" and parse_time(i["startedAt"]) >= since for i in agent.incidents()),
        timeout_s=20, interval_s=0.1)
    heal = heal_of(agent, since)
    if heal.failed_at is None:
        raise RuntimeError(f"{agent.member}: no check_state_changed logged before the heal")
    return heal


# -- 3. the ten-agent timeline ---------------------------------------------------------------


def ten_agents(workdir: Path, redis_url: str, chart: Path) -> dict[str, Any]:
    """Fail ten services at once; every agent's wait and heal, the slots in use, drawn to ``chart``."""
    with Fleet(workdir, 10, redis_url, max_concurrent=MAX_CONCURRENT, lease_ttl_s=LEASE_TTL_S) as fleet:
        failed_at = fleet.fail_all()
        wait_for(fleet.healed, timeout_s=60, interval_s=0.3)
        all_healed_s = time.time() - failed_at
        heals = [heal_of(agent, failed_at) for agent in fleet.agents]
    healing = [(heal.started_at, heal.ended_at) for heal in heals]
    draw_timeline(heals, failed_at, chart)

    def offset(moment: float | None) -> float | None:
        return None if moment is None else round(moment - failed_at, 3)

    return {
        "agents": len(heals), "max_concurrent": MAX_CONCURRENT, "lease_ttl_s": LEASE_TTL_S,
        "max_healing_at_once": max_in_use(healing),
        "all_healed_after_s": round(all_healed_s, 2),
        "heal_s": _spread([heal.ended_at - heal.started_at for heal in heals]),
        "waited_s": _spread([heal.waited_s for heal in heals]),
        "denied_agents": sum(heal.denied_at is not None for heal in heals),
        "slot_handover_s": _spread(handovers(heals)),
        "timeline": [
            {"agent": heal.agent, "check_failed_s": offset(heal.failed_at), "denied_s": offset(heal.denied_at),
             "slot_taken_s": offset(heal.slot_taken_at), "first_step_s": offset(heal.started_at),
             "last_step_end_s": offset(heal.ended_at), "outcome": heal.outcome, "incidents": list(heal.incidents)}
            for heal in heals
        ],
        "chart": str(chart.relative_to(REPO_ROOT)) if chart.is_relative_to(REPO_ROOT) else str(chart),
    }


def handovers(heals: list[Heal]) -> list[float]:
    """For each heal that waited: from the last heal ending before it started to its start.

    How long a freed slot stays unused while someone waits: denied agents ask again every third
    of the lease, so a slot can idle up to ``lease_ttl / 3`` between heals.
    """
    ends = sorted(heal.ended_at for heal in heals)
    return [heal.started_at - max(end for end in ends if end < heal.started_at)
            for heal in heals if heal.denied_at is not None and any(end < heal.started_at for end in ends)]


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def draw_timeline(heals: list[Heal], zero: float, path: Path) -> None:
    """One row per agent (waiting light, healing dark), and the heals in progress over time below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rows, slots) = plt.subplots(
        2, 1, figsize=(9, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True)
    ordered = sorted(heals, key=lambda heal: heal.started_at)
    labels = {"wait": "waiting (check failed to first step)", "heal": "healing (first step to last step)",
              "deny": "denial journaled"}
    for row, heal in enumerate(ordered):  # each legend entry once: pop hands out a label only the first time
        failed = (heal.failed_at if heal.failed_at is not None else heal.started_at) - zero
        started, ended = heal.started_at - zero, heal.ended_at - zero
        bar = (row - 0.35, 0.7)
        rows.broken_barh([(failed, started - failed)], bar, color="#f2c894", label=labels.pop("wait", None))
        rows.broken_barh([(started, ended - started)], bar, color="#2f6f9f", label=labels.pop("heal", None))
        if heal.denied_at is not None:
            rows.plot([heal.denied_at - zero], [row], marker="|", markersize=12, linestyle="none", color="#a03020",
                      label=labels.pop("deny", None))
    rows.set_yticks(range(len(ordered)), [heal.agent for heal in ordered])
    rows.invert_yaxis()
    rows.set_title(f"{len(heals)} agents, their services killed at t = 0; fleet group max_concurrent {MAX_CONCURRENT}")
    rows.legend(loc="upper right", fontsize=8)
    times, counts = zip(*in_use((heal.started_at - zero, heal.ended_at - zero) for heal in heals), strict=True)
    slots.step([0.0, *times], [0, *counts], where="post", color="#2f6f9f", label="agents healing (journal)")
    slots.axhline(MAX_CONCURRENT, color="#a03020", linestyle="--", linewidth=1, label="max_concurrent")
    slots.set_ylim(0, MAX_CONCURRENT + 1)
    slots.set_yticks(range(MAX_CONCURRENT + 2))
    slots.set_ylabel("slots in use")
    slots.set_xlabel("seconds since the services were killed")
    slots.legend(loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- running it all --------------------------------------------------------------------------


@contextlib.contextmanager
def stores(workdir: Path) -> Iterator[dict[str, str]]:
    """A redis-server and an etcd on loopback, by backend name; both stopped on the way out."""
    for program in ("redis-server", "etcd"):
        if shutil.which(program) is None:
            raise SystemExit(f"bench.fleet: {program} is not installed (make system-deps installs it)")
    redis_server, etcd_server = RedisServer(), EtcdServer(workdir)
    try:
        asyncio.run(_ready(redis_server, etcd_server))
        yield {"redis": redis_server.url, "etcd": etcd_server.url}
    finally:
        redis_server.stop()
        etcd_server.stop()


async def _ready(*servers: RedisServer | EtcdServer) -> None:
    await asyncio.gather(*(server.ready() for server in servers))


def timed(label: str, step: Callable[[], Any]) -> Any:
    began = time.monotonic()
    print(f"{label} ...", file=sys.stderr, flush=True)
    result = step()
    print(f"{label}: {time.monotonic() - began:.1f}s", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS / "fleet.json")
    parser.add_argument("--chart", type=Path, default=RESULTS / "fleet_timeline.png")
    parser.add_argument("--quick", action="store_true", help="200 latency rounds and 3 heals per backend")
    parser.add_argument("--rounds", type=int, help="latency rounds per store (default 1000)")
    parser.add_argument("--heals", type=int, help="heals per backend for the free-budget wait (default 10)")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else 200 if args.quick else 1000
    heals = args.heals if args.heals is not None else 3 if args.quick else 10
    if rounds < 1 or heals < 1:
        parser.error("--rounds and --heals must be at least 1")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as scratch, stores(Path(scratch)) as urls:
        workdir = Path(scratch)

        def measure(backend: str) -> dict[str, Any]:
            return asyncio.run(slot_latency(backend, urls[backend], rounds, warmup=max(rounds // 20, 5)))

        latency = {backend: timed(f"slot latency ({backend})", functools.partial(measure, backend)) for backend in STORES}
        wait = timed("free-budget wait", lambda: free_budget_wait(workdir / "wait", urls, heals))
        timeline = timed("ten agents", lambda: ten_agents(workdir / "ten", urls["redis"], args.chart))
    results = {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "slot_latency": latency, "free_budget_wait": wait, "ten_agents": timeline,
    }
    write_json(args.output, results)
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    print("slot acquire + release, ms       p50      p99")
    for backend, numbers in results["slot_latency"].items():
        for part in ("acquire_ms", "release_ms", "acquire_release_ms"):
            print(f"  {backend:6} {part:20} {numbers[part]['p50']:8.3f} {numbers[part]['p99']:8.3f}")
    wait = results["free_budget_wait"]
    print(f"check failed -> first step, median of {wait['heals']} heals, ms")
    for backend, numbers in wait["check_failed_to_first_step_ms"].items():
        print(f"  {backend:6} {numbers['median']:8.2f}  (min {numbers['min']}, max {numbers['max']})")
    ten = results["ten_agents"]
    print(f"ten agents: max healing at once {ten['max_healing_at_once']}, all healed after "
          f"{ten['all_healed_after_s']} s, {ten['denied_agents']} denied first")


if __name__ == "__main__":
    raise SystemExit(main())
