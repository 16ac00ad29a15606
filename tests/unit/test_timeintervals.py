"""Time intervals (issue #18): matching and parsing as Alertmanager's, routes muted or active, playbooks limited.

The matching and parsing cases are ported as data from Alertmanager's own tests,
``timeinterval/timeinterval_test.go`` (prometheus/alertmanager, Apache-2.0, Copyright 2020 Prometheus Team):
a real Alertmanager cannot be given a fixed clock, so its test cases are the oracle for ``contains``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import pytest
import structlog

from agent.config.load import parse_config
from agent.config.timeintervals import intervener
from exporters.dispatcher import Dispatcher
from exporters.inhibit import Inhibitor
from exporters.notification import AlertPayload
from exporters.routing import RouteSpec, build_route
from exporters.silences import Silences
from exporters.timeintervals import (
    Intervener,
    Range,
    TimeInterval,
    TimeRange,
    load_location,
    parse_days_of_month,
    parse_months,
    parse_time_range,
    parse_weekdays,
    parse_years,
)
from agent.state import StateDB
from healers.clock import ManualClock, settle
from healers.journal import MIGRATIONS, Journal
from healers.plan import HealingPlan, ServiceBackends
from healers.playbook import PlaybookSpec, StepSpec, Trigger
from healers.runner import Notice
from healers.runtime import HealingRuntime
from healers.safety import Safety
from rules.errors import SourceError
from tests.unit.test_heal_runtime import CountingRestart, Metrics, Service

SYDNEY = load_location("Australia/Sydney")


def at(text: str) -> datetime:
    """Go's time.RFC822Z layout, "02 Jan 06 15:04 -0700", as the Go tests write instants."""
    return datetime.strptime(text, "%d %b %y %H:%M %z")


def days(*pairs: tuple[int, int]) -> tuple[Range, ...]:
    return tuple(Range(b, e) for b, e in pairs)


# timeIntervalTestCases: (interval, instants it contains, instants it does not).
CONTAINS_CASES = [
    (TimeInterval(), ["02 Jan 06 15:04 +0000", "03 Jan 07 10:04 +0000", "04 Jan 06 09:04 +0000"], []),
    (  # 9am to 5pm, monday to friday
        TimeInterval(times=(TimeRange(540, 1020),), weekdays=days((1, 5))),
        ["04 May 20 15:04 +0000", "05 May 20 10:04 +0000", "09 Jun 20 09:04 +0000"],
        ["03 May 20 15:04 +0000", "04 May 20 08:59 +0000", "05 May 20 05:00 +0000"],
    ),
    (  # Easter 2020
        TimeInterval(days_of_month=days((4, 6)), months=days((4, 4)), years=days((2020, 2020))),
        ["04 Apr 20 15:04 +0000", "05 Apr 20 00:00 +0000", "06 Apr 20 23:05 +0000"],
        ["03 May 18 15:04 +0000", "03 Apr 20 23:59 +0000", "04 Jun 20 23:59 +0000", "06 Apr 19 23:59 +0000",
         "07 Apr 20 00:00 +0000"],
    ),
    (  # negative days of month: the last 3 days of each month
        TimeInterval(days_of_month=days((-3, -1))),
        ["31 Jan 20 15:04 +0000", "30 Jan 20 15:04 +0000", "29 Jan 20 15:04 +0000", "30 Jun 20 00:00 +0000",
         "29 Feb 20 23:05 +0000"],
        ["03 May 18 15:04 +0000", "27 Jan 20 15:04 +0000", "03 Apr 20 23:59 +0000", "04 Jun 20 23:59 +0000",
         "06 Apr 19 23:59 +0000", "07 Apr 20 00:00 +0000", "01 Mar 20 00:00 +0000"],
    ),
    (  # out of bound days are clamped to the month's boundaries
        TimeInterval(months=days((6, 6)), days_of_month=days((-31, 31))),
        ["30 Jun 20 00:00 +0000", "01 Jun 20 00:00 +0000"],
        ["31 May 20 00:00 +0000", "01 Jul 20 00:00 +0000"],
    ),
    (  # AEST 9AM to 5PM, Monday to Friday
        TimeInterval(times=(TimeRange(540, 1020),), weekdays=days((1, 5)), location=SYDNEY),
        ["06 Apr 21 13:00 +1000"],
        ["06 Apr 21 13:00 +0000"],
    ),
    (  # the same during daylight saving time
        TimeInterval(times=(TimeRange(540, 1020),), weekdays=days((1, 5)), months=days((11, 11)), location=SYDNEY),
        ["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"],
        ["31 Oct 21 21:00 +0000"],
    ),
    (  # last-day mutes do not shift during spring-forward months
        TimeInterval(days_of_month=days((-1, -1)), location=load_location("America/New_York")),
        ["31 Mar 21 12:00 -0400"],
        ["30 Mar 21 12:00 -0400"],
    ),
]


@pytest.mark.parametrize(("interval", "inside", "outside"), CONTAINS_CASES)
def test_contains_as_alertmanagers_test_cases(interval: TimeInterval, inside: list[str], outside: list[str]) -> None:
    """Alertmanager's TestContainsTime cases give the same verdicts."""
    assert [t for t in inside if not interval.contains(at(t))] == []
    assert [t for t in outside if interval.contains(at(t))] == []


def spec_of(
    times: list[tuple[str, str]] = [], weekdays: list[str] = [], days_of_month: list[str] = [],
    months: list[str] = [], years: list[str] = [], location: str | None = None,
) -> TimeInterval:
    return TimeInterval(
        tuple(parse_time_range(s, e) for s, e in times), tuple(map(parse_weekdays, weekdays)),
        tuple(map(parse_days_of_month, days_of_month)), tuple(map(parse_months, months)),
        tuple(map(parse_years, years)), None if location is None else load_location(location),
    )


# yamlUnmarshalTestCases and completeTestCases that parse: (interval text, contains, excludes).
PARSED_CASES = [
    (spec_of(times=[("09:00", "17:00")], weekdays=["monday:friday"]),
     ["08 Jul 20 09:00 +0000", "08 Jul 20 16:59 +0000", "01 Apr 21 13:00 +0000"],
     ["08 Jul 20 05:00 +0000", "08 Jul 20 08:59 +0000"]),
    (spec_of(weekdays=["monday:friday", "sunday"], months=["january:march"], days_of_month=["-7:-1"],
             years=["2020:2025", "2030:2035"], times=[("09:00", "17:00")]),
     ["27 Jan 21 09:00 +0000", "28 Jan 21 16:59 +0000", "29 Jan 21 13:00 +0000", "31 Mar 25 13:00 +0000",
      "31 Jan 35 13:00 +0000"],
     ["30 Jan 21 13:00 +0000", "01 Apr 21 13:00 +0000", "30 Jan 26 13:00 +0000", "31 Jan 35 17:01 +0000"]),
    (spec_of(weekdays=["monday:wednesday", "saturday", "sunday"], times=[("13:00", "15:00")],
             days_of_month=["1", "10", "20:-1"], years=["2020:2023"], months=["january:march"]),
     ["10 Jan 21 13:00 +0000", "30 Jan 21 14:24 +0000"],
     ["09 Jan 21 13:00 +0000", "20 Jan 21 12:59 +0000", "02 Feb 21 13:00 +0000"]),
    (spec_of(days_of_month=["30:31"], years=["2020:2023"], months=["february"]), [], ["28 Feb 21 13:00 +0000"]),
]


@pytest.mark.parametrize(("interval", "inside", "outside"), PARSED_CASES)
def test_parsed_intervals_as_alertmanagers_test_cases(
    interval: TimeInterval, inside: list[str], outside: list[str]
) -> None:
    """Alertmanager's TestYamlUnmarshal and TestTimeIntervalComplete cases: parsed, then matched."""
    assert [t for t in inside if not interval.contains(at(t))] == []
    assert [t for t in outside if interval.contains(at(t))] == []


def test_parsed_values_as_alertmanagers() -> None:
    """Ranges parse to Alertmanager's values (TestYamlUnmarshal, TestParseTimeString)."""
    assert parse_weekdays("monday:friday") == Range(1, 5)
    assert parse_weekdays("Sunday") == Range(0, 0)
    assert parse_days_of_month("1:-1") == Range(1, -1)
    assert parse_months("January:december") == Range(1, 12)
    assert parse_months("3") == Range(3, 3)
    assert parse_years("2020:2022") == Range(2020, 2022)
    assert parse_time_range("00:00", "24:00") == TimeRange(0, 1440)
    assert parse_time_range("01:35", "17:39") == TimeRange(95, 1059)
    assert parse_time_range("09:35", "09:39") == TimeRange(575, 579)


@pytest.mark.parametrize(("parse", "text", "error"), [
    (lambda t: parse_time_range(t, "23:59"), "01:99", "couldn't parse timestamp 01:99, invalid format"),
    (lambda t: parse_time_range("00:00", t), "99:99", "couldn't parse timestamp 99:99, invalid format"),
    (lambda t: parse_time_range("12:30", t), "24:01", "couldn't parse timestamp 24:01, invalid format"),
    (lambda t: parse_time_range("17:31", t), "17:31", "start time cannot be equal or greater than end time"),
    (lambda t: parse_time_range("09:30", t), "07:41", "start time cannot be equal or greater than end time"),
    (lambda t: parse_time_range("24:00", t), "17:41", "start time cannot be equal or greater than end time"),
    (lambda t: parse_time_range("14:03", t), "", "both start and end times must be provided"),
    (parse_weekdays, "friday:monday", "start day cannot be before end day"),
    (parse_weekdays, "blurgsday:flurgsday", "blurgsday is not a valid weekday"),
    (parse_weekdays, "1:3", "1 is not a valid weekday"),
    (parse_weekdays, "-2:-1", "-2 is not a valid weekday"),
    (parse_days_of_month, "0", "0 is not a valid day of the month: out of range"),
    (parse_days_of_month, "-50:-20", "-50 is not a valid day of the month: out of range"),
    (parse_days_of_month, "1:50", "50 is not a valid day of the month: out of range"),
    (parse_days_of_month, "-15:5", "end day must be negative if start day is negative"),
    (parse_days_of_month, "10:-25", "end day -25 is always before start day 10"),
    (parse_months, "martius:june", "martius is not a valid month"),
    (parse_months, "march:junius", "junius is not a valid month"),
    (parse_months, "december:january", "end month january is before start month december"),
    (parse_years, "2022:2020", "end year 2020 is before start year 2022"),
    (load_location, "Mars/Olympus", "unknown time zone Mars/Olympus"),
])
def test_bad_ranges_are_refused_with_alertmanagers_message(parse: object, text: str, error: str) -> None:
    """Each invalid case of Alertmanager's tests is refused with its error text."""
    with pytest.raises(ValueError) as caught:
        parse(text)  # type: ignore[operator]
    assert str(caught.value) == error


def test_intervener_evenings_and_weekends_in_sydney() -> None:
    """Alertmanager's TestIntervener_Mutes: which named intervals hold at a time in Sydney."""
    evenings = TimeInterval(times=(TimeRange(0, 540), TimeRange(1020, 1440)), location=SYDNEY)
    weekends = TimeInterval(weekdays=days((6, 6), (0, 0)), location=SYDNEY)
    intervals = Intervener({"evenings": [evenings], "weekends": [weekends]})
    names = ["evenings", "weekends"]

    def sydney(day: int, hour: int) -> float:
        return datetime(2024, 1, day, hour, 0, tzinfo=SYDNEY).timestamp()

    assert intervals.containing(names, sydney(1, 0)) == ("evenings",)  # Monday midnight
    assert intervals.containing(names, sydney(1, 9)) == ()
    assert intervals.containing(names, sydney(1, 17)) == ("evenings",)
    assert intervals.containing(names, sydney(6, 10)) == ("weekends",)  # Saturday
    assert intervals.containing(names, sydney(6, 17)) == ("evenings", "weekends")
    assert intervals.active([], sydney(1, 9))
    assert not intervals.active(["weekends"], sydney(1, 9))


# -- routes -------------------------------------------------------------------------------------------

MONDAY_9 = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc).timestamp()  # a Monday
WORK = Intervener({"work": [spec_of(times=[("09:00", "17:00")], weekdays=["monday:friday"])]})


def routed(**child: object) -> Dispatcher:
    """A root route to 'ops' with one child to 'pager' for severity=page, set with ``child``."""
    from exporters.matchers import parse_matchers

    spec = RouteSpec(receiver="ops", group_by=("alertname",), group_wait_s=30, group_interval_s=300, routes=(
        RouteSpec(receiver="pager", matchers=tuple(parse_matchers('severity="page"')), **child),  # type: ignore[arg-type]
    ))
    return Dispatcher(build_route(spec), Inhibitor(), Silences(), send_resolved=lambda _: True, intervener=WORK)


def page(starts_at: float, ends_at: float | None = None) -> AlertPayload:
    return AlertPayload.of({"alertname": "Down", "severity": "page"}, starts_at, ends_at)


def test_muted_route_sends_nothing_and_notifies_firing_when_the_mute_ends() -> None:
    """Inside a mute interval the flush sends nothing and logs nothing, so the first flush after it sends."""
    d = routed(mute_time_intervals=("work",))
    d.ingest([page(MONDAY_9)], MONDAY_9)
    assert d.due(MONDAY_9 + 30) == []
    assert [g.muted_by for g in d.state(MONDAY_9 + 30)] == [("work",)]
    evening = MONDAY_9 + 8 * 3600  # 17:00: the interval's end is exclusive
    d.ingest([page(MONDAY_9)], evening - 1)
    [sent] = d.due(evening + 30)
    assert sent.receiver == "pager" and sent.status() == "firing"
    assert d.state(evening + 30)[0].muted_by == ()


def test_resolved_during_a_mute_is_dropped() -> None:
    """An alert that resolves while its route is muted is never notified as resolved (Alertmanager drops it)."""
    d = routed(mute_time_intervals=("work",))
    sunday = MONDAY_9 - 12 * 3600  # Sunday 21:00
    d.ingest([page(sunday)], sunday)
    [fired] = d.due(sunday + 30)
    d.ingest([page(sunday, MONDAY_9 + 60)], MONDAY_9 + 60)
    assert d.due(MONDAY_9 + 330) == []  # muted: the resolved alert leaves the group unsent
    assert d.state() == [] and d.next_due() is None
    assert fired.status() == "firing"


def test_active_route_sends_only_inside_its_interval() -> None:
    """Outside its active interval a route sends nothing; the route is not inherited by the root's alerts."""
    d = routed(active_time_intervals=("work",))
    saturday = MONDAY_9 + 5 * 86400
    d.ingest([page(saturday), AlertPayload.of({"alertname": "Disk"}, saturday)], saturday)
    sent = d.due(saturday + 30)
    assert [n.receiver for n in sent] == ["ops"]
    assert [g.muted_by for g in d.state() if g.receiver == "pager"] == [("work",)]
    monday = MONDAY_9 + 7 * 86400
    [paged] = [n for n in d.due(monday) if n.receiver == "pager"]
    assert paged.status() == "firing"


# -- config -------------------------------------------------------------------------------------------

CONFIG = """\
time_intervals:
  - name: offhours
    time_intervals:
      - times: [{start_time: "17:00", end_time: "24:00"}]
        weekdays: ["monday:friday"]
        location: Europe/Berlin
      - weekdays: [saturday, sunday]
        location: Europe/Berlin
services:
  web:
    restart: {exec: [/bin/true]}
    checks: [{name: live, tcp: {address: "127.0.0.1:9"}}]
playbooks:
  - name: web-heal
    when: [{check_failed: {service: web}}]
    steps: [{restart: {}}]
    active_time_intervals: [PLAYBOOK]
notify:
  receivers: [{name: ops, webhook: {url: "http://127.0.0.1:9/hook"}}]
  route:
    receiver: ops
    routes:
      - matchers: ['severity="page"']
        mute_time_intervals: [MUTE]
"""


def config_text(playbook: str, mute: str) -> str:
    return CONFIG.replace("PLAYBOOK", playbook).replace("MUTE", mute)


def test_config_builds_the_named_intervals() -> None:
    """A config's time_intervals become the intervener the dispatcher and playbooks ask (Berlin, weekday evenings)."""
    config = parse_config(config_text("offhours", "offhours"), "agent.yaml")
    offhours = intervener(config.time_intervals)
    tuesday_1730_berlin = datetime(2024, 1, 2, 16, 30, tzinfo=timezone.utc).timestamp()
    assert offhours.containing(["offhours"], tuesday_1730_berlin) == ("offhours",)
    assert offhours.containing(["offhours"], tuesday_1730_berlin - 3600) == ()
    assert config.playbooks[0].spec(False).active_time_intervals == ("offhours",)


def test_unknown_interval_names_are_errors_at_their_line() -> None:
    """A route or playbook naming an undefined interval is an error at the name's own line and column."""
    with pytest.raises(SourceError) as caught:
        parse_config(config_text("nights", "weekends"), "agent.yaml")
    lines = str(caught.value).splitlines()
    assert any(line.startswith("agent.yaml:17:29: playbooks -> 0 -> active_time_intervals -> 0: undefined time "
                               "interval 'nights' (time_intervals: offhours)") for line in lines), lines
    assert any(line.startswith("agent.yaml:24:31: notify -> route -> routes -> 0 -> mute_time_intervals -> 0: "
                               "undefined time interval 'weekends'") for line in lines), lines


def test_bad_times_and_locations_are_positioned() -> None:
    """Bad times, ranges and zones are each reported at their value, with Alertmanager's message."""
    text = config_text("offhours", "offhours").replace('"24:00"', '"24:30"')
    text = text.replace("[saturday, sunday]", "[saturday, sundae]").replace("Berlin\nservices", "Berlim\nservices")
    with pytest.raises(SourceError) as caught:
        parse_config(text, "agent.yaml")
    message = str(caught.value)
    assert "agent.yaml:4:49: time_intervals -> 0 -> time_intervals -> 0 -> times -> 0 -> end_time: couldn't parse " \
           "timestamp 24:30, invalid format" in message
    assert "agent.yaml:7:30: time_intervals -> 0 -> time_intervals -> 1 -> weekdays -> 1: sundae is not a valid " \
           "weekday" in message
    assert "agent.yaml:8:19: time_intervals -> 0 -> time_intervals -> 1 -> location: unknown time zone " \
           "Europe/Berlim" in message


def test_duplicate_names_and_root_intervals_are_refused() -> None:
    """As Alertmanager: interval names are unique, and the root route has no time intervals."""
    text = config_text("offhours", "offhours")
    twice = text.replace("services:", "  - name: offhours\n    time_intervals: []\nservices:")
    with pytest.raises(SourceError, match="time interval 'offhours' is not unique"):
        parse_config(twice, "agent.yaml")
    root = text.replace("    receiver: ops\n", "    receiver: ops\n    active_time_intervals: [offhours]\n")
    with pytest.raises(SourceError, match="the root route must not have mute_time_intervals or active_time_intervals"):
        parse_config(root, "agent.yaml")


def test_example_config_in_the_readme_is_valid(tmp_path: Path) -> None:
    """The README's time-interval example passes validation."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("time_intervals:\n  - name: business-hours")
    example = readme[start:readme.index("```", start)]
    config = parse_config(example, str(tmp_path / "agent.yaml"))
    assert [entry.name for entry in config.time_intervals] == ["business-hours"]


# -- playbooks ----------------------------------------------------------------------------------------

def test_playbook_outside_its_active_intervals_only_cuts_traffic() -> None:
    """Outside its active intervals a triggered run is allowed only to cut traffic; a manual run is not limited."""
    spec = PlaybookSpec("heal", "web", (Trigger("check_failed", "web"),),
                        (StepSpec("traffic", {"op": "cut"}), StepSpec("restart")), active_time_intervals=("work",))
    safety = Safety(600.0)
    safety.time_active = WORK.active
    inside = safety.decide(spec, MONDAY_9)
    assert (inside.verdict, inside.restart_blocked) == ("run", "")
    outside = safety.decide(spec, MONDAY_9 - 3600)
    assert outside.verdict == "run"
    assert outside.restart_blocked == "not restarting web: outside its active time intervals (work)"
    assert safety.decide(spec, MONDAY_9 - 3600, manual=True).restart_blocked == ""


def test_a_run_blocked_outside_its_interval_heals_when_the_interval_begins() -> None:
    """A crash outside the playbook's active interval restarts nothing (journaled blocked, notified); once the
    interval begins and the service is still down, the next health tick heals it."""
    clock = ManualClock(start=1000.0)
    restart = CountingRestart()
    restart.clock = clock
    notices: list[Notice] = []
    db = StateDB(":memory:")
    db.migrate("healers", MIGRATIONS)
    spec = PlaybookSpec("heal-api", "api", (Trigger("process_exited", "api"),), (StepSpec("restart"),),
                        active_time_intervals=("day",))
    plan = HealingPlan(specs=(spec,), backends={"api": ServiceBackends(restart=restart)},
                       health={"api": Service(up=False)}, time_active=lambda names, now: now >= 1100.0)
    journal = Journal(db.conn)
    runtime = HealingRuntime(plan, journal, clock=clock, metrics=Metrics(), log=structlog.get_logger(),
                             notify=notices.append)

    async def scenario() -> None:
        await runtime.start()
        try:
            runtime.on_process_exit("api", 4242)
            await settle()
            assert restart.restarts == []
            [blocked] = journal.incidents(service="api")
            assert blocked.outcome == "blocked"
            assert "outside its active time intervals (day)" in blocked.detail
            assert notices and notices[0].summary.startswith("healing api with heal-api")
            await clock.advance(99.0)
            assert restart.restarts == []
            await clock.advance(1.0)
            await settle()
            assert restart.restarts == [1100.0]
        finally:
            await runtime.stop()

    asyncio.run(scenario())
