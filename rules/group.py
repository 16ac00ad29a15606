"""Evaluating one rule group at a given time: recording rules write back, alerting rules advance.

Rules run in file order, as in Prometheus, so a rule sees what the recording
rules before it wrote in the same evaluation. Results (recorded series and the
``ALERTS``/``ALERTS_FOR_STATE`` series) are ingested into the store per rule,
so a series a rule stops producing gets a staleness marker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rules.alerting import AlertEvalError, AlertingRule
from rules.model import NAME_LABEL, Alert, Labels
from rules.promql import Engine, PromQLError, ScalarResult, VectorResult, parse
from rules.promql.ast import Expr, MatrixSelector, SubqueryExpr, VectorSelector, children
from rules.rulefile import GroupSpec, RuleSpec
from rules.store import SeriesStore
from rules.template import QuerySample, Template, TemplateError


class RuleEvalError(Exception):
    """A rule's evaluation failed; the group goes on with the next rule."""


@dataclass
class RuleState:
    """One rule with what its last evaluation left: health, error, duration, samples written."""

    spec: RuleSpec
    expr: Expr
    alerting: AlertingRule | None
    health: str = "unknown"  # "ok" | "err" | "unknown", as Prometheus' API reports it
    last_error: str = ""
    last_evaluation: float | None = None
    last_duration_s: float = 0.0
    last_samples: int = 0


@dataclass
class GroupStats:
    evaluations_total: int = 0
    failures_total: int = 0
    last_duration_s: float = 0.0
    last_evaluation: float | None = None
    last_samples: int = 0


@dataclass
class RuleGroup:
    """A group's rules and their alert state; ``evaluate`` is a function of the store and ``now``."""

    spec: GroupSpec
    interval_s: float
    engine: Engine
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    rules: list[RuleState] = field(default_factory=list)
    stats: GroupStats = field(default_factory=GroupStats)

    def __post_init__(self) -> None:
        self._templates: dict[str, Template] = {}
        if not self.rules:
            self.rules = [self._state(rule) for rule in self.spec.rules]

    @property
    def key(self) -> str:
        """The ``rule_group`` label value Prometheus uses: ``file;name``."""
        return f"{self.spec.file};{self.spec.name}"

    def source(self, index: int) -> str:
        return f"rule:{self.key}:{index}"

    def evaluate(self, store: SeriesStore, now: float) -> list[tuple[Labels, float]]:
        """Evaluate every rule at ``now`` (less the group's query offset); return what was written."""
        return [sample for samples in self.evaluation(store, now) for sample in samples]

    def evaluation(self, store: SeriesStore, now: float) -> Iterator[list[tuple[Labels, float]]]:
        """Evaluate rule by rule, yielding what each wrote, so a caller can let other work run between rules."""
        t_ms = round((now - self.spec.query_offset_s) * 1000)
        busy_s, written = 0.0, 0
        for index, rule in enumerate(self.rules):
            started = time.perf_counter()
            try:
                samples = self._evaluate_rule(rule, store, t_ms, now)
            except RuleEvalError as exc:
                rule.health, rule.last_error = "err", str(exc)
                samples = []
                self.stats.failures_total += 1
            else:
                rule.health, rule.last_error = "ok", ""
                store.ingest(self.source(index), samples, t_ms)
            rule.last_samples = len(samples)
            rule.last_evaluation = now
            rule.last_duration_s = time.perf_counter() - started
            busy_s += rule.last_duration_s
            written += len(samples)
            yield samples
        self.stats.evaluations_total += 1
        self.stats.last_evaluation = now
        self.stats.last_samples = written
        self.stats.last_duration_s = busy_s

    def alerts_to_send(self, now: float, resend_delay_s: float) -> list[Alert]:
        due: list[Alert] = []
        for rule in self.rules:
            if rule.alerting is not None:
                due.extend(rule.alerting.alerts_to_send(now, resend_delay_s, self.interval_s))
        return due

    def alerting_rules(self) -> list[AlertingRule]:
        return [rule.alerting for rule in self.rules if rule.alerting is not None]

    def adopt(self, previous: RuleGroup) -> None:
        """Carry alert state over from the group this one replaces, rule by rule (name, labels, annotations)."""
        old = {
            (r.alerting.name, tuple(sorted(r.alerting.labels.items())), r.spec.expr): r.alerting
            for r in previous.rules if r.alerting is not None
        }
        for rule in self.rules:
            if rule.alerting is None:
                continue
            match = old.get((rule.alerting.name, tuple(sorted(rule.alerting.labels.items())), rule.spec.expr))
            if match is not None:
                rule.alerting.active = match.active

    def _state(self, spec: RuleSpec) -> RuleState:
        labels = {**self.spec.labels, **spec.labels}
        alerting = None
        if spec.kind == "alert":
            alerting = AlertingRule(spec.name, spec.expr, spec.for_s, spec.keep_firing_for_s, labels, spec.annotations)
        return RuleState(spec, parse(spec.expr), alerting)

    def _evaluate_rule(self, rule: RuleState, store: SeriesStore, t_ms: int, now: float) -> list[tuple[Labels, float]]:
        result = self._query(rule.expr, store, t_ms)
        if rule.alerting is not None:
            expand = self._expander(rule.alerting.name, store, t_ms)
            try:
                return rule.alerting.evaluate(result, now, expand, self.spec.limit)
            except AlertEvalError as exc:
                raise RuleEvalError(str(exc)) from None
        return self._recorded(rule, result)

    def _recorded(self, rule: RuleState, result: list[tuple[Labels, float]]) -> list[tuple[Labels, float]]:
        overrides = {**self.spec.labels, **rule.spec.labels, NAME_LABEL: rule.spec.name}
        samples: dict[Labels, float] = {}
        for labels, value in result:
            merged = labels.as_dict()
            merged.update(overrides)
            key = Labels(merged)
            if key in samples:
                raise RuleEvalError("vector contains metrics with the same labelset after applying rule labels")
            samples[key] = value
        if self.spec.limit and len(samples) > self.spec.limit:
            raise RuleEvalError(f"exceeded limit of {self.spec.limit} with {len(samples)} series")
        return list(samples.items())

    def _query(self, expr: Expr | str, store: SeriesStore, t_ms: int) -> list[tuple[Labels, float]]:
        """A rule's (or template's) query: a vector, or a scalar as one sample without labels."""
        try:
            result = self.engine.instant(expr, store, t_ms)
        except PromQLError as exc:
            raise RuleEvalError(str(exc)) from None
        if isinstance(result, VectorResult):
            return result.samples
        if isinstance(result, ScalarResult):
            return [(Labels(), result.value)]
        raise RuleEvalError("rule result is not a vector or scalar")

    def _expander(self, alertname: str, store: SeriesStore, t_ms: int) -> Callable[[str, Labels, float], str]:
        def query(text: str) -> list[QuerySample]:
            # A failure here becomes the template's own "error calling query" text.
            return [QuerySample(labels.as_dict(), value) for labels, value in self._query(text, store, t_ms)]

        def expand(text: str, labels: Labels, value: float) -> str:
            template = self._templates.get(text)
            if template is None:
                try:
                    template = Template.parse(text, f"__alert_{alertname}")
                except TemplateError as exc:
                    return f"<error expanding template: error parsing template __alert_{alertname}: {exc}>"
                self._templates[text] = template
            return template.render(labels.as_dict(), value, self.external_labels, self.external_url, query)

        return expand


def history_needed_s(expr: Expr, lookback_s: float) -> float:
    """How far back from the evaluation time ``expr`` reads: ranges, offsets, subqueries and lookback."""
    if isinstance(expr, VectorSelector):
        return expr.offset_ms / 1000 + lookback_s
    if isinstance(expr, MatrixSelector):
        return (expr.selector.offset_ms + expr.range_ms) / 1000
    if isinstance(expr, SubqueryExpr):
        return (expr.offset_ms + expr.range_ms) / 1000 + history_needed_s(expr.expr, lookback_s)
    return max((history_needed_s(child, lookback_s) for child in children(expr)), default=0.0)
