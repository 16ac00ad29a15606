"""Running rule groups inside the agent: loading rule files, evaluation jobs, restore and metrics."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.samples import Sample

from agent.collectors.base import samples_of
from agent.config import AgentConfig, EvaluationConfig
from agent.schedule.arrival import feeders, placed_offset
from agent.schedule.jobs import Observation
from agent.schedule.phase import offset_of
from rules.alerting import ALERTS_FOR_STATE_METRIC, ALERTS_METRIC
from rules.group import RuleGroup, history_needed_s
from rules.model import NAME_LABEL, Alert, AlertState, Labels
from rules.persistence import load_for_state, save_for_state
from rules.promql import Engine
from rules.rulefile import GroupSpec
from rules.store import SeriesStore

log = structlog.get_logger("healwatch.rules")

# Prometheus restores `for` state after the second evaluation, once the first has had data to work with.
RESTORE_AFTER_EVALUATIONS = 2
# How early a run may start and still count as its grid point's (at most a tenth of the interval).
EARLY_RUN_MS = 1000


def file_stamps(files: Iterable[str]) -> dict[str, tuple[int, int] | None]:
    """(mtime, size) of each file, None for one that is gone: a change means the rules need reloading."""
    stamps: dict[str, tuple[int, int] | None] = {}
    for file in files:
        try:
            stat = Path(file).stat()
        except OSError:
            stamps[file] = None
        else:
            stamps[file] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def retention_needed_s(groups: Iterable[RuleGroup], lookback_s: float) -> float:
    """The history the rules read, plus one evaluation interval of slack."""
    return max(
        (history_needed_s(rule.expr, lookback_s) + group.interval_s for group in groups for rule in group.rules),
        default=0.0,
    )


@dataclass
class RuleJob:
    """Evaluates one rule group on the agent's loop, on a grid placed just after the jobs that feed it."""

    name: str
    interval_s: float
    spec: Any
    group: RuleGroup
    store: SeriesStore
    evaluation: EvaluationConfig
    state: sqlite3.Connection | None
    on_alerts: Callable[[list[Alert]], None]
    offset_s: float = 0.0  # the grid's place within the interval (agent.schedule.arrival)
    feeders: frozenset[str] = frozenset()  # jobs whose samples each tick waits for, if in flight
    evaluations: int = 0
    restored: bool = False
    _logged: dict[Labels, AlertState] = field(default_factory=dict)

    async def observe(self, now: float) -> Observation:
        now = self.scheduled_time(now)
        written: list[tuple[Labels, float]] = []
        for samples in self.group.evaluation(self.store, now):
            written.extend(samples)
            await asyncio.sleep(0)  # let scrapes and requests in between rules
        self.evaluations += 1
        if not self.restored and self.evaluations >= RESTORE_AFTER_EVALUATIONS:
            self._restore(now)
        if self.restored and self.state is not None:
            alerts = [a for rule in self.group.alerting_rules() for a in rule.active.values()]
            save_for_state(self.state, self.group.key, alerts, now)
        self._log_transitions()
        due = self.group.alerts_to_send(now, self.evaluation.resend_delay)
        if due:
            self.on_alerts(due)
        meta = group_families(self.group)
        return Observation(meta + result_families(written), samples_of(meta))

    def scheduled_time(self, now: float) -> float:
        """The grid point (agent.schedule.phase) of a run that began at ``now``, as Prometheus evaluates a group at
        its tick, not when the run began: evaluations are whole intervals apart, so ``for: 30s`` at 15 s fires at
        the second evaluation after the first, never the third for a millisecond of jitter."""
        interval_ms = max(round(self.interval_s * 1000), 1)
        slack_ms = min(EARLY_RUN_MS, interval_ms // 10)
        now_ms = round(now * 1000)
        since_tick_ms = (now_ms - round(self.offset_s * 1000) + slack_ms) % interval_ms
        return (now_ms - since_tick_ms + slack_ms) / 1000

    def _restore(self, now: float) -> None:
        self.restored = True
        if self.state is None:
            return
        saved = load_for_state(self.state, self.group.key, now - self.evaluation.for_outage_tolerance)
        for rule in self.group.alerting_rules():
            rule.restore(now, saved.get, self.evaluation.for_grace_period)
        if saved:
            log.info("alert state restored", rule_group=self.group.key, alerts=len(saved))

    def _log_transitions(self) -> None:
        current: dict[Labels, AlertState] = {}
        for rule in self.group.alerting_rules():
            for labels, alert in rule.active.items():
                current[labels] = alert.state
                if self._logged.get(labels) != alert.state:
                    log.info(f"alert {alert.state}", rule_group=self.group.key, alert=str(labels),
                             value=alert.value)
        self._logged = current


def build_rule_jobs(
    specs: list[GroupSpec],
    *,
    engine: Engine,
    store: SeriesStore,
    evaluation: EvaluationConfig,
    state: sqlite3.Connection | None,
    on_alerts: Callable[[list[Alert]], None],
    previous: dict[str, Any],
    phases: Mapping[str, tuple[float, float]],
) -> dict[str, RuleJob]:
    """A job per group, placed after its feeders among ``phases`` (job name -> (offset, interval) of the other jobs).

    An unchanged group in an unchanged place keeps its job; a changed one keeps its alerts' state.
    """
    jobs: dict[str, RuleJob] = {}
    for spec in specs:
        interval = spec.interval_s or evaluation.interval
        name = f"rules:{spec.file};{spec.name}"
        found = previous.get(name)
        old = found if isinstance(found, RuleJob) else None
        same = old is not None and old.spec == (spec, evaluation)
        group = old.group if old is not None and same else RuleGroup(
            spec, interval, engine, dict(evaluation.external_labels), evaluation.external_url)
        recorded = [rule.spec.name for rule in group.rules if rule.spec.kind == "record"]
        fed = feeders((rule.expr for rule in group.rules), phases, recorded)
        offset = placed_offset(interval, (phases[job] for job in fed))
        offset = offset_of(name, interval) if offset is None else offset
        if old is not None and same and (old.offset_s, old.feeders) == (offset, fed):
            jobs[name] = old
            continue
        job = RuleJob(name, interval, (spec, evaluation), group, store, evaluation, state, on_alerts, offset, fed)
        if old is not None:
            if not same:
                group.adopt(old.group)
            job.evaluations, job.restored = old.evaluations, old.restored
        jobs[name] = job
    return jobs


def group_families(group: RuleGroup) -> list[Metric]:
    """The group's health, named like Prometheus' ``prometheus_rule_group_*`` metrics."""
    labels, key = ["rule_group"], [group.key]
    stats = group.stats

    def gauge(name: str, help_text: str, value: float) -> Metric:
        family = GaugeMetricFamily(name, help_text, labels=labels)
        family.add_metric(key, value)
        return family

    def counter(name: str, help_text: str, value: float) -> Metric:
        family = CounterMetricFamily(name, help_text, labels=labels)
        family.add_metric(key, value)
        return family

    return [
        gauge("healwatch_rule_group_last_duration_seconds", "Duration of the last rule group evaluation.",
              stats.last_duration_s),
        gauge("healwatch_rule_group_last_evaluation_timestamp_seconds", "Time of the last rule group evaluation.",
              stats.last_evaluation or 0.0),
        gauge("healwatch_rule_group_interval_seconds", "The interval of a rule group.", group.interval_s),
        gauge("healwatch_rule_group_rules", "The number of rules.", len(group.rules)),
        gauge("healwatch_rule_group_last_evaluation_samples", "Samples returned by the last evaluation.",
              stats.last_samples),
        counter("healwatch_rule_evaluations", "Rule evaluations.", stats.evaluations_total * len(group.rules)),
        counter("healwatch_rule_evaluation_failures", "Rule evaluations that failed.", stats.failures_total),
    ]


def result_families(samples: list[tuple[Labels, float]]) -> list[Metric]:
    """ALERTS, ALERTS_FOR_STATE and recorded series, as families for /metrics."""
    by_name: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for labels, value in samples:
        by_name[labels.name].append((labels, value))
    families: list[Metric] = []
    for name, members in sorted(by_name.items()):
        if name == ALERTS_METRIC:
            family: Metric = GaugeMetricFamily(name, "Alerts of the agent's alerting rules (1 while pending or firing).")
        elif name == ALERTS_FOR_STATE_METRIC:
            family = GaugeMetricFamily(name, "Active-since time of each pending or firing alert.")
        else:
            family = UnknownMetricFamily(name, "Recorded by a recording rule.")
        for labels, value in members:
            family.samples.append(Sample(name, {k: v for k, v in labels if k != NAME_LABEL}, value, None))
        families.append(family)
    return families
