"""Evaluate on arrival: a rule group's feeders follow from its selectors, and its grid sits just after theirs."""

from __future__ import annotations

import pytest

from agent.schedule.arrival import ARRIVAL_LEAD_S, feeders, placed_offset, wait_bound_s
from agent.schedule.phase import offset_of
from agent.schedule.rules import RuleJob, build_rule_jobs
from agent.config.load import parse_config
from rules.promql import Engine, parse
from rules.rulefile import parse_rules
from rules.store import SeriesStore

JOBS = ["host", "process:web", "check:web/http", "scrape:web", "process:db", "scrape:db",
        "rules:a.yaml;web"]


def fed(*exprs: str, recorded: tuple[str, ...] = ()) -> set[str]:
    return set(feeders([parse(expr) for expr in exprs], JOBS, recorded))


@pytest.mark.parametrize(("expr", "jobs"), [
    ("1 - avg(rate(node_cpu_seconds_total[5m]))", {"host"}),
    ('healwatch_process_up{service="web"} == 0', {"process:web"}),
    ("healwatch_process_up == 0", {"process:web", "process:db"}),
    ('probe_success{service="web"} == 0', {"check:web/http"}),
    ('healwatch_check_healthy == 0', {"check:web/http"}),
    ('rate(http_requests_total{service="web",code=~"5.."}[1m]) > 1', {"scrape:web"}),
    ("up == 0", {"scrape:web", "scrape:db"}),
    ("max_over_time(flip[5m:1s]) > 0", {"scrape:web", "scrape:db"}),
    ('{service="db"}', {"process:db", "scrape:db"}),
    ("healwatch_notifications_failed_total > 0", set()),
    ("ALERTS", set()),
    ("vector(1)", set()),
])
def test_feeders_follow_from_names_and_the_service_label(expr: str, jobs: set[str]) -> None:
    """Each job kind writes its own names; `service` narrows to that service's jobs; agent series need none."""
    assert fed(expr) == jobs


def test_series_the_group_records_itself_need_no_feeder() -> None:
    assert fed("job:errors:rate1m > 1", recorded=("job:errors:rate1m",)) == set()


def test_the_group_sits_just_after_its_feeder() -> None:
    """One feeder on the same interval: the group's offset is the feeder's plus the lead."""
    assert placed_offset(1.0, [(0.25, 1.0)]) == pytest.approx(0.25 + ARRIVAL_LEAD_S)
    assert placed_offset(15.0, [(14.999, 15.0)]) == pytest.approx((14.999 + ARRIVAL_LEAD_S) % 15.0)
    assert placed_offset(1.0, []) is None


def test_of_several_feeders_the_place_keeps_the_stalest_freshest() -> None:
    """Feeders at 0.1, 0.2 and 0.9 of a second: right after 0.2 the stalest (0.9) is 0.3 s old, the least."""
    assert placed_offset(1.0, [(0.1, 1.0), (0.2, 1.0), (0.9, 1.0)]) == pytest.approx(0.2 + ARRIVAL_LEAD_S)


def test_feeders_of_other_intervals_are_seen_modulo_the_common_period() -> None:
    """A 15 s group fed by a 1 s scrape at +0.4 s sits at +0.4 s of some second; a 1 s group fed by a
    15 s scrape at +7.3 s sits at +0.3 s, so one of its ticks follows each scrape at once."""
    assert placed_offset(15.0, [(0.4, 1.0)]) == pytest.approx(0.4 + ARRIVAL_LEAD_S)
    assert placed_offset(1.0, [(7.3, 15.0)]) == pytest.approx(0.3 + ARRIVAL_LEAD_S)


def test_the_wait_is_bounded_by_half_the_interval() -> None:
    assert wait_bound_s(1.0) == 0.5
    assert wait_bound_s(60.0) == 5.0


RULES = """groups:
  - name: web
    rules:
      - alert: Flipped
        expr: flip > 0
"""


def test_rule_jobs_are_placed_after_their_feeders_and_replaced_when_the_feeders_move() -> None:
    """build_rule_jobs places the group after scrape:web; a reload that drops the scrape moves it back to its
    hashed offset in a new job that keeps the group (and its alerts)."""
    (spec,) = parse_rules(RULES, "a.yaml")
    evaluation = parse_config("evaluation: {interval: 1s}", "agent.yaml").evaluation
    store, engine = SeriesStore(retention_s=None), Engine()

    def build(previous: dict[str, RuleJob], phases: dict[str, tuple[float, float]]) -> RuleJob:
        (job,) = build_rule_jobs([spec], engine=engine, store=store, evaluation=evaluation, state=None,
                                 on_alerts=lambda alerts: None, previous=previous, phases=phases).values()
        return job

    phases = {"scrape:web": (offset_of("scrape:web", 1.0), 1.0), "host": (offset_of("host", 1.0), 1.0)}
    job = build({}, phases)
    assert job.feeders == {"scrape:web"}
    assert job.offset_s == pytest.approx(phases["scrape:web"][0] + ARRIVAL_LEAD_S)
    assert build({job.name: job}, phases) is job
    moved = build({job.name: job}, {})
    assert moved is not job and moved.group is job.group
    assert moved.feeders == frozenset() and moved.offset_s == offset_of(job.name, 1.0)
