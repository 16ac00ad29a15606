"""Rule groups evaluated over the real store and engine: sequencing, ALERTS series, templates, failures."""

from __future__ import annotations

import math

from rules.group import RuleGroup, history_needed_s
from rules.model import AlertState, Labels, is_stale_nan
from rules.promql import Engine, VectorResult, parse
from rules.rulefile import parse_rules
from rules.store import SeriesStore

T0 = 1_700_000_000.0
RULES = """
groups:
  - name: api
    rules:
      - record: job:errors:rate1m
        expr: sum by (job) (rate(errors_total[1m]))
      - alert: ErrorsHigh
        expr: job:errors:rate1m > 1
        for: 30s
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.job }} fails {{ $value | humanize }}/s"
          others: "{{ query \\"count(errors_total)\\" | first | value }} series"
"""


def make_group(text: str = RULES) -> RuleGroup:
    (spec,) = parse_rules(text, "api.rules.yaml")
    return RuleGroup(spec, 15.0, Engine(), external_url="http://hw")


def feed(store: SeriesStore, until_s: float, per_second: float) -> None:
    """errors_total of two instances of job api, one sample every 15 s up to ``until_s``."""
    for step in range(int(until_s // 15) + 1):
        t = step * 15
        for instance in ("a", "b"):
            store.append(Labels.of("errors_total", {"job": "api", "instance": instance}),
                         round((T0 + t) * 1000), per_second * t)


def instant(store: SeriesStore, expr: str, t: float) -> list[tuple[Labels, float]]:
    result = Engine().instant(parse(expr), store, round(t * 1000))
    assert isinstance(result, VectorResult)
    return result.samples


def test_a_recording_rule_feeds_the_alert_after_it_in_the_same_evaluation() -> None:
    """The alert reads the series recorded moments before, then pends and fires after `for`."""
    store = SeriesStore(retention_s=None)
    group = make_group()
    feed(store, 120, per_second=1.0)
    group.evaluate(store, T0 + 90)
    ((labels, value),) = instant(store, "job:errors:rate1m", T0 + 90)
    assert labels == Labels.of("job:errors:rate1m", {"job": "api"}) and math.isclose(value, 2.0)
    (alert,) = group.alerting_rules()[0].active.values()
    assert alert.state == AlertState.PENDING
    group.evaluate(store, T0 + 120)
    assert alert.state == AlertState.FIRING
    assert alert.annotations == {"summary": "api fails 2/s", "others": "2 series"}


def test_alerts_are_written_to_the_store_and_go_stale_when_resolved() -> None:
    """ALERTS{alertstate} and ALERTS_FOR_STATE are queryable; a resolved alert's series get a staleness marker."""
    store = SeriesStore(retention_s=None)
    group = make_group()
    feed(store, 120, per_second=1.0)
    group.evaluate(store, T0 + 90)
    group.evaluate(store, T0 + 120)
    firing = instant(store, 'ALERTS{alertstate="firing"}', T0 + 120)
    assert firing == [(Labels({"__name__": "ALERTS", "alertname": "ErrorsHigh", "alertstate": "firing",
                               "job": "api", "severity": "page"}), 1.0)]
    (for_state,) = instant(store, "ALERTS_FOR_STATE", T0 + 120)
    assert for_state[1] == math.floor(T0 + 90)

    for t in (135, 150, 165, 180, 195):  # the counters stop growing: the rate drops to 0
        for instance in ("a", "b"):
            store.append(Labels.of("errors_total", {"job": "api", "instance": instance}), round((T0 + t) * 1000), 120.0)
    group.evaluate(store, T0 + 195)
    assert instant(store, "ALERTS", T0 + 195) == []
    (series,) = store.select(parse('ALERTS{alertstate="firing"}').matchers)  # type: ignore[attr-defined]
    _, values = series.window(round((T0 + 120) * 1000), round((T0 + 195) * 1000))
    assert is_stale_nan(float(values[-1]))


def test_a_failing_rule_is_counted_and_the_rest_of_the_group_runs() -> None:
    """A recording rule producing duplicate series fails alone; the next rule still evaluates."""
    group = make_group("""
groups:
  - name: g
    rules:
      - record: dup
        expr: errors_total
        labels: {instance: same}
      - record: ok
        expr: vector(1)
""")
    store = SeriesStore(retention_s=None)
    feed(store, 30, per_second=1.0)
    group.evaluate(store, T0 + 30)
    dup, ok = group.rules
    assert (dup.health, dup.last_error) == ("err", "vector contains metrics with the same labelset after applying rule labels")
    assert (ok.health, ok.last_samples) == ("ok", 1)
    assert group.stats.failures_total == 1 and group.stats.evaluations_total == 1


def test_a_reloaded_group_keeps_the_state_of_unchanged_alerts() -> None:
    """After a reload, an alert whose rule did not change keeps its active-since time."""
    store = SeriesStore(retention_s=None)
    feed(store, 120, per_second=1.0)
    old = make_group()
    old.evaluate(store, T0 + 90)
    new = make_group()
    new.adopt(old)
    new.evaluate(store, T0 + 120)
    (alert,) = new.alerting_rules()[0].active.values()
    assert (alert.state, alert.active_at) == (AlertState.FIRING, T0 + 90)


def test_history_needed_covers_ranges_offsets_subqueries_and_lookback() -> None:
    """Retention derived from rules covers the longest window a rule reads."""
    assert history_needed_s(parse("up"), 300) == 300
    assert history_needed_s(parse("predict_linear(x[30m] offset 5m, 3600) < 0 and up"), 300) == 2100
    assert history_needed_s(parse("max_over_time(rate(x[1m])[10m:1m])"), 300) == 660


def test_a_rule_over_the_engines_bounds_fails_alone() -> None:
    """A recording rule whose subquery needs more samples than allowed fails its evaluation; the next rule runs."""
    (spec,) = parse_rules("""
groups:
  - name: g
    rules:
      - record: too_big
        expr: max_over_time(vector(1)[1h:1ms])
      - record: fine
        expr: vector(2)
""", "g.rules.yaml")
    group = RuleGroup(spec, 15.0, Engine(max_samples=100_000))
    written = group.evaluate(SeriesStore(), T0)
    assert [rule.health for rule in group.rules] == ["err", "ok"]
    assert "too many samples" in group.rules[0].last_error
    assert [labels.get("__name__") for labels, _ in written] == ["fine"]
