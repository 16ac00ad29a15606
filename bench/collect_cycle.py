"""CPU time of one collection cycle: the host plus 50 services, each a real sleeping process.

Half the services are found by pidfile, half by a command-line regex. Run from the repository
root: ``python3 -m bench.collect_cycle``. Prints a table and writes bench/results/collect_cycle.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from agent.collectors.host import HostCollector
from agent.collectors.process import ProcessScanner, ProcessTracker, ServiceProcessCollector
from agent.config import HostConfig, ProcessMatch
from bench.output import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "collect_cycle.json"
TARGET_MS = 20.0
SLEEPER = "import time; print('ready', flush=True); time.sleep(3600)"


def start_sleepers(count: int, marker: str) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` sleeping interpreters tagged ``marker-i`` and wait until each is running."""
    sleepers = [
        subprocess.Popen([sys.executable, "-S", "-c", SLEEPER, f"{marker}-{i:03d}"], stdout=subprocess.PIPE)
        for i in range(count)
    ]
    for sleeper in sleepers:
        assert sleeper.stdout is not None
        if not sleeper.stdout.readline():
            raise RuntimeError(f"sleeper {sleeper.pid} exited before it was ready")
    return sleepers


def build_collectors(
    sleepers: list[subprocess.Popen[bytes]], marker: str, pid_dir: Path
) -> tuple[HostCollector, list[ServiceProcessCollector]]:
    # One scanner for all services, as the agent wires them, so lost processes share one pass.
    scanner = ProcessScanner(max_age_s=1.0)
    services = []
    for i, sleeper in enumerate(sleepers):
        if i % 2 == 0:
            pidfile = pid_dir / f"svc-{i:03d}.pid"
            pidfile.write_text(f"{sleeper.pid}\n")
            match = ProcessMatch(pidfile=str(pidfile))
        else:
            match = ProcessMatch(cmdline=rf"{marker}-{i:03d}$")
        tracker = ProcessTracker(match, scanner=scanner)
        services.append(ServiceProcessCollector(f"svc-{i:03d}", match, tracker=tracker))
    return HostCollector(HostConfig()), services


def cpu_ms(action: Callable[[], object]) -> float:
    """CPU time of all the process's threads (statvfs runs in threads) spent in ``action``."""
    started = time.process_time()
    action()
    return (time.process_time() - started) * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 3),
        "p90_ms": round(percentile(values, 0.9), 3),
        "max_ms": round(max(values), 3),
    }


def run(services_count: int, cycles: int, warmup: int) -> dict[str, object]:
    marker = f"hwbench-{uuid.uuid4().hex[:8]}"
    sleepers = start_sleepers(services_count, marker)
    try:
        with tempfile.TemporaryDirectory(prefix="hwbench-") as pid_dir:
            host, services = build_collectors(sleepers, marker, Path(pid_dir))
            host_ms: list[float] = []
            process_ms: list[float] = []
            for cycle in range(warmup + cycles):
                now = time.time()
                host_cost = cpu_ms(lambda: host.collect(now))
                process_cost = cpu_ms(lambda: [service.collect(now) for service in services])
                if cycle >= warmup:
                    host_ms.append(host_cost)
                    process_ms.append(process_cost)
            down = [s.service for s in services if s.tracker.pid is None]
            if down:
                raise RuntimeError(f"services not found: {', '.join(down)}")
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait(5)
            assert sleeper.stdout is not None
            sleeper.stdout.close()
    total_ms = [h + p for h, p in zip(host_ms, process_ms)]
    return {
        "benchmark": "collect_cycle",
        "services": services_count,
        "cycles": cycles,
        "warmup_cycles": warmup,
        "target_ms": TARGET_MS,
        "host": summary(host_ms),
        "processes": summary(process_ms),
        "cycle": summary(total_ms),
        "within_target": statistics.median(total_ms) <= TARGET_MS,
        "processes_on_host": len(psutil.pids()),
        "cpus": psutil.cpu_count(),
        "python": platform.python_version(),
        "psutil": psutil.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.services < 1 or args.cycles < 1 or args.warmup < 0:
        parser.error("--services and --cycles must be at least 1, --warmup at least 0")
    result = run(args.services, args.cycles, args.warmup)
    print(f"collection cycle CPU time, host + {args.services} services, {args.cycles} cycles")
    print(f"{'part':<12}{'median ms':>12}{'p90 ms':>10}{'max ms':>10}")
    for part in ("host", "processes", "cycle"):
        numbers = result[part]
        assert isinstance(numbers, dict)
        print(f"{part:<12}{numbers['median_ms']:>12.2f}{numbers['p90_ms']:>10.2f}{numbers['max_ms']:>10.2f}")
    print(f"target <= {TARGET_MS:.0f} ms per cycle: {'met' if result['within_target'] else 'MISSED'}")
    write_json(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
