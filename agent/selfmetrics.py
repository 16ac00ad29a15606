"""The agent's own metrics (``healwatch_*`` and ``process_*``), in a registry the agent owns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent import __version__

if TYPE_CHECKING:
    from rules.store import SeriesStore


class SelfMetrics:
    """Instruments the daemon updates, plus live views of the store's counters."""

    def __init__(self, store: Callable[[], SeriesStore]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.collector_duration = Gauge(
            "healwatch_collector_duration_seconds", "Wall time of the last run of a collector.",
            ["collector"], registry=r,
        )
        self.collector_errors = Counter(
            "healwatch_collector_errors", "Collector runs that raised an error.", ["collector"], registry=r
        )
        self.scheduler_lag = Histogram(
            "healwatch_scheduler_lag_seconds", "Delay between a job's scheduled and actual start.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r,
        )
        self.scheduler_skipped = Counter(
            "healwatch_scheduler_skipped_runs", "Runs skipped because the previous run of the job was still going.",
            ["job"], registry=r,
        )
        self.render_duration = Gauge(
            "healwatch_exposition_render_duration_seconds", "Time the last render of /metrics took.", registry=r
        )
        self.render_problems = Gauge(
            "healwatch_exposition_problems", "Families or series left out of the last render (conflicting or invalid).",
            registry=r,
        )
        self.reload_successful = Gauge(
            "healwatch_config_last_reload_successful", "Whether the last config (re)load succeeded.", registry=r
        )
        self.rules_reload_successful = Gauge(
            "healwatch_rules_last_reload_successful", "Whether the last reload of changed rule files succeeded.",
            registry=r,
        )
        self.rules_reload_successful.set(1)
        self.reload_timestamp = Gauge(
            "healwatch_config_last_reload_success_timestamp_seconds", "Time of the last successful config load.",
            registry=r,
        )
        Gauge("healwatch_build_info", "Build information.", ["version"], registry=r).labels(__version__).set(1)
        ProcessCollector(registry=r)
        r.register(_StoreCollector(store))

    def families(self) -> list[Metric]:
        return list(self.registry.collect())


class _StoreCollector:
    """Reads the store's counters at collection time, so they are never stale."""

    def __init__(self, store: Callable[[], SeriesStore]) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        store = self._store()
        yield GaugeMetricFamily("healwatch_series", "Series held in memory.", value=store.series_count)
        yield CounterMetricFamily(
            "healwatch_series_refused", "New series refused because the series limit was reached.",
            value=store.refused_series_total,
        )
        yield CounterMetricFamily(
            "healwatch_samples_out_of_order", "Samples refused for being older than their series' newest sample.",
            value=store.out_of_order_total,
        )
        yield CounterMetricFamily(
            "healwatch_samples_duplicate_timestamp",
            "Samples refused for repeating a timestamp with a different value.",
            value=store.duplicate_timestamp_total,
        )
