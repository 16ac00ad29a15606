"""Memory and read cost of the series store (rules/store.py).

Run from the repository root: ``python3 -m bench.store_memory``. Each scenario runs in a fresh
interpreter so RSS figures do not leak into each other. Prints a table and writes
bench/results/store_memory.json.

Scenarios:
  per_sample     1,000 series x 3,600 samples at 1 s (retention 1 h): tracemalloc bytes per
                 retained sample (store, labels, index, buffers and growth slack all included),
                 then the same feed untraced for the RSS delta.
  per_sample_no_retention  the same with retention None, where growth has no retention hint.
  steady_15s     10,000 series, 15 s interval, 10 min retention, fed through ingest() with
                 evict() every cycle: RSS after 40 cycles (10 minutes) and after 120 cycles.
  window_read    10,000 series at 1 s resolution (6 minutes fed, 10 min retention): time of
                 window() for a 5-minute range over every series, plus select() and last().
  read_vs_length one series with 600 .. 1,000,000 retained samples: time of one 5-minute window().
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from bench.output import write_json
from rules.matchers import Matcher, MatchOp
from rules.model import Labels
from rules.store import SeriesStore

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "store_memory.json"
TARGET_BYTES_PER_SAMPLE = 16.0
METRIC_NAMES = 50
WINDOW_MS = 5 * 60_000


def fleet_labels(count: int) -> list[Labels]:
    """``count`` series spread over 50 metric names, each with instance and job labels."""
    return [
        Labels.of(f"bench_metric_{i % METRIC_NAMES}", {"instance": f"host-{i // METRIC_NAMES}:9100", "job": "bench"})
        for i in range(count)
    ]


def rss_bytes() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def feed_one_second_samples(store: SeriesStore, series: list[Labels], seconds: int) -> None:
    """Append ``seconds`` samples per series, time-major, as collections would arrive."""
    for second in range(seconds):
        t_ms = second * 1000
        value = float(second)
        for labels in series:
            store.append(labels, t_ms, value)


def per_sample(retention_s: float | None) -> dict[str, object]:
    series_count, samples_per_series = 1000, 3600
    retained = series_count * samples_per_series

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = SeriesStore(retention_s=retention_s)
    feed_one_second_samples(store, fleet_labels(series_count), samples_per_series)
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    slots = sum(s.capacity for s in store.select([]))
    del store
    gc.collect()

    # tracemalloc keeps its own tables in the process, so RSS is measured on an untraced run.
    rss_before = rss_bytes()
    store = SeriesStore(retention_s=retention_s)
    feed_one_second_samples(store, fleet_labels(series_count), samples_per_series)
    rss_delta = rss_bytes() - rss_before
    return {
        "series": series_count,
        "retained_samples": retained,
        "retention_s": retention_s,
        "traced_bytes": traced,
        "bytes_per_sample": round(traced / retained, 2),
        "allocated_slots_per_sample": round(slots / retained, 3),
        "rss_delta_bytes": rss_delta,
        "rss_bytes_per_sample": round(rss_delta / retained, 2),
        "target_bytes_per_sample": TARGET_BYTES_PER_SAMPLE,
    }


def steady_15s() -> dict[str, object]:
    series_count, interval_ms = 10_000, 15_000
    rss_start = rss_bytes()
    series = fleet_labels(series_count)
    store = SeriesStore(retention_s=600)
    ingest_ms: list[float] = []
    evict_ms: list[float] = []
    rss_at: dict[int, int] = {}
    for cycle in range(120):
        now_ms = cycle * interval_ms
        samples = [(labels, float(cycle)) for labels in series]
        started = time.perf_counter()
        store.ingest("bench", samples, now_ms)
        ingest_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        store.evict(now_ms)
        evict_ms.append((time.perf_counter() - started) * 1000)
        if cycle + 1 in (40, 120):
            rss_at[cycle + 1] = rss_bytes()
    retained = sum(len(s) for s in store.select([]))
    return {
        "series": series_count,
        "retained_samples_after_120": retained,
        "rss_bytes_after_40": rss_at[40],
        "rss_bytes_after_120": rss_at[120],
        "rss_delta_bytes_after_40": rss_at[40] - rss_start,
        "rss_delta_bytes_after_120": rss_at[120] - rss_start,
        "ingest_ms_median": round(statistics.median(ingest_ms), 2),
        "evict_ms_median": round(statistics.median(evict_ms), 2),
        "evict_ms_max": round(max(evict_ms), 2),
    }


def best_of(repeats: int, action: Callable[[], object]) -> float:
    """Fastest of ``repeats`` runs of ``action``, in milliseconds (the least disturbed by neighbours)."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return min(timings)


def window_read() -> dict[str, object]:
    series_count, seconds = 10_000, 360
    store = SeriesStore(retention_s=600)
    feed_one_second_samples(store, fleet_labels(series_count), seconds)
    end_ms = (seconds - 1) * 1000
    by_name = [[Matcher("__name__", MatchOp.EQ, f"bench_metric_{n}")] for n in range(METRIC_NAMES)]
    everything = [s for matchers in by_name for s in store.select(matchers)]

    def read_windows() -> int:
        return sum(len(s.window(end_ms - WINDOW_MS, end_ms)[1]) for s in everything)

    def read_last() -> object:
        return [s.last(end_ms, WINDOW_MS) for s in everything]

    def select_all() -> object:
        return [store.select(matchers) for matchers in by_name]

    samples_read = read_windows()
    window_ms = best_of(5, read_windows)
    return {
        "series": series_count,
        "retained_per_series": seconds,
        "samples_per_window": samples_read // series_count,
        "window_all_series_ms": round(window_ms, 2),
        "window_per_series_us": round(window_ms * 1000 / series_count, 2),
        "last_all_series_ms": round(best_of(5, read_last), 2),
        "select_50_names_ms": round(best_of(5, select_all), 2),
    }


def read_vs_length() -> dict[str, object]:
    results = {}
    for retained in (600, 86_400, 1_000_000):
        store = SeriesStore(retention_s=None)
        labels = Labels.of("bench_metric")
        for second in range(retained):
            store.append(labels, second * 1000, 1.0)
        (series,) = store.select([])
        end_ms = (retained // 2) * 1000
        reads = 2000
        elapsed_ms = best_of(3, lambda: [series.window(end_ms - WINDOW_MS, end_ms) for _ in range(reads)])
        results[str(retained)] = round(elapsed_ms * 1000 / reads, 2)
    return {"window_us_by_retained_samples": results}


SCENARIOS: dict[str, Callable[[], dict[str, object]]] = {
    "per_sample": lambda: per_sample(3600.0),
    "per_sample_no_retention": lambda: per_sample(None),
    "steady_15s": steady_15s,
    "window_read": window_read,
    "read_vs_length": read_vs_length,
}


def run_isolated(name: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.store_memory", "--scenario", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"scenario {name} failed:\n{completed.stderr}")
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def mib(value: object) -> str:
    return f"{int(value) / 2**20:.1f} MiB"  # type: ignore[call-overload]


def print_table(results: dict[str, dict[str, object]]) -> None:
    rows = []
    for key in ("per_sample", "per_sample_no_retention"):
        r = results[key]
        rows.append(
            (
                f"1,000 x 3,600 samples, retention {r['retention_s']}",
                f"{r['bytes_per_sample']} B/sample traced (target <= {TARGET_BYTES_PER_SAMPLE:g}), "
                f"{r['rss_bytes_per_sample']} B/sample RSS, {r['allocated_slots_per_sample']} slots/sample",
            )
        )
    s = results["steady_15s"]
    rows.append(
        (
            "10,000 series @15 s, 10 min retention",
            f"RSS {mib(s['rss_bytes_after_40'])} after 40 cycles (+{mib(s['rss_delta_bytes_after_40'])}), "
            f"{mib(s['rss_bytes_after_120'])} after 120 (+{mib(s['rss_delta_bytes_after_120'])}); "
            f"ingest {s['ingest_ms_median']} ms, evict {s['evict_ms_median']} ms median",
        )
    )
    w = results["window_read"]
    rows.append(
        (
            "5 min window() over 10,000 series @1 s",
            f"{w['window_all_series_ms']} ms ({w['window_per_series_us']} us/series, "
            f"{w['samples_per_window']} samples each); last() {w['last_all_series_ms']} ms; "
            f"select 50 names {w['select_50_names_ms']} ms",
        )
    )
    lengths = results["read_vs_length"]["window_us_by_retained_samples"]
    rows.append(
        (
            "one window() vs retained samples",
            ", ".join(f"{n}: {us} us" for n, us in lengths.items()),  # type: ignore[attr-defined]
        )
    )
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="run one scenario and print its JSON")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON results go")
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(SCENARIOS[args.scenario]()))
        return
    results = {name: run_isolated(name) for name in SCENARIOS}
    print_table(results)
    report = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": psutil.cpu_count(),
        "scenarios": results,
    }
    write_json(args.output, report)


if __name__ == "__main__":
    main()
