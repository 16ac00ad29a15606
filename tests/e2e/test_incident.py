"""Issue #7 end to end: the "see it heal" scenario (examples/incident) with real HAProxy, supervisord,
Prometheus and Alertmanager, six ways to make web1 sick (the last a bad deploy healed by a rollback, issue #17),
and healwatch SIGKILLed mid-heal.

The scenario runs once for the module (about 2.5 minutes); each test asserts one aspect of every case.
Client failures before the cut are expected (they are what healing is for) and reported, not asserted:
they are in the assertion messages and in ``incident-report.json`` in the scenario directory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.incident.scenario import (
    BINARIES,
    CASES,
    GOOD_VERSION,
    SICK,
    AgentCrashReport,
    CaseReport,
    Stack,
    agent_crash_problems,
    case_problems,
    kill_agent_mid_heal,
    run_case,
)
from harness.processes import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(330)]

NAMES = [case.name for case in CASES]
# heal-web1's configured step timeouts (examples/incident/healwatch.yaml and the defaults); rollback-web1's are lower.
PLAYBOOK_TIMEOUTS_S = 10 + 60 + 20 + 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for binary in BINARIES:
        require_binary(binary)
    with Stack(tmp_path_factory.mktemp("incident")) as running:
        yield running


@pytest.fixture(scope="module")
def reports(stack: Stack) -> dict[str, CaseReport]:
    """The six cases, in order, each waited out until every alert about web1 has resolved."""
    done = {case.name: run_case(stack, case) for case in CASES}
    summary = {name: {"requests": r.requests, "failed_before_cut": r.failed_before_cut,
                      "failed_after_cut": r.failed_after_cut, "recovery_s": r.recovery_s,
                      "budget_s": r.case.recovery_budget_s, "steps": r.steps()} for name, r in done.items()}
    (stack.dir / "incident-report.json").write_text(json.dumps(summary, indent=2))
    return done


@pytest.fixture(scope="module")
def agent_crash(stack: Stack, reports: dict[str, CaseReport]) -> AgentCrashReport:
    """After the six cases: web1 crashes again and healwatch is SIGKILLed in the middle of healing it."""
    return kill_agent_mid_heal(stack)


def test_every_config_passes_its_own_checker(stack: Stack) -> None:
    """healwatch check config, promtool check rules/config, haproxy -c and amtool check-config accept the files."""
    results = stack.check_configs()
    assert [command.split()[:3] for command, _, _ in results][:4] == [
        [Path(sys.executable).name, "-m", "agent.cli"], ["promtool", "check", "rules"], ["promtool", "check", "config"],
        ["haproxy", "-c", "-f"]]
    assert [(command, status, output) for command, status, output in results if status != 0] == []


@pytest.mark.parametrize("name", NAMES)
def test_the_right_alert_fires_in_healwatch_prometheus_and_alertmanager(reports: dict[str, CaseReport], name: str) -> None:
    """The case's alert fires in healwatch and, from the same rule file, in Prometheus; Alertmanager lists it."""
    report = reports[name]
    assert report.fired_at is not None
    assert report.prometheus_fired_at is not None
    assert report.alertmanager_active_at is not None
    assert report.resolved_at is not None and report.resolved_at > report.fired_at


@pytest.mark.parametrize("name", NAMES)
def test_the_heal_starts_on_the_cases_own_alert(reports: dict[str, CaseReport], name: str) -> None:
    """The journaled heal was triggered by the alert the case advertises (the crash: by the process exit), and
    no other alert about web1 fired before the cut: a slow web1 is healed on WebLatencyHigh, not WebNotAnswering."""
    report = reports[name]
    assert report.case.expected_trigger in report.trigger, report.trigger
    assert report.other_alerts_before_cut == [], report.trigger
    assert case_problems(report) == []


def test_the_error_ratio_alert_waits_its_30_seconds(reports: dict[str, CaseReport]) -> None:
    """WebErrorRatioHigh (errors > 5% for 30 s) fires no sooner than 30 s after the errors began, and heals then."""
    report = reports["errors"]
    assert report.fired_at is not None and report.cut_at is not None
    assert 30 <= report.fired_at - report.began <= 40
    assert report.cut_at - report.began >= 30  # the heal waited for the alert, not for a failed health check


@pytest.mark.parametrize("name", NAMES)
def test_slack_webhook_and_alertmanager_get_firing_then_resolved(reports: dict[str, CaseReport], name: str) -> None:
    """Each receiver got the case's alert firing once and then resolved once."""
    report = reports[name]
    assert report.slack == ["firing", "resolved"]
    assert report.webhook == ["firing", "resolved"]
    assert report.alertmanager_webhook == ["firing", "resolved"]


@pytest.mark.parametrize("name", NAMES)
def test_haproxy_drains_web1_while_sick_and_no_client_fails_after_the_cut(
        reports: dict[str, CaseReport], name: str) -> None:
    """web1 goes ready -> drain -> ready in HAProxy; once drained no request reaches it and none fails."""
    report = reports[name]
    seen = f"{name}: {report.requests} requests, {report.failed_before_cut} failed before the cut"
    assert report.haproxy_states == ["ready", "drain", "ready"], seen
    assert report.served_by_sick_while_cut == 0, seen
    assert report.failed_after_cut == 0, seen
    assert report.requests > 100, seen


@pytest.mark.parametrize("name", NAMES)
def test_one_journaled_heal_within_budget(reports: dict[str, CaseReport], name: str) -> None:
    """One incident whose steps all succeeded (a deploy's first verify fails, then its rollback's passes), a new
    web1 process, recovery within the case's budget."""
    report = reports[name]
    assert [(i["playbook"], i["outcome"]) for i in report.incidents] == [(report.case.playbook, "succeeded")]
    assert [(action, result) for action, result, _ in report.steps()] == [
        (step, "failed" if step == "verify" else "ok") for step in report.case.steps]
    assert all(seconds is not None for _, _, seconds in report.steps())
    assert report.incidents[0]["durationSeconds"] <= PLAYBOOK_TIMEOUTS_S
    assert report.recovery_s is not None and report.recovery_s <= report.case.recovery_budget_s, report.steps()
    assert report.pid_after != report.pid_before
    assert report.suspended == 0


def test_a_sigkilled_agent_comes_back_and_finishes_the_heal(stack: Stack, agent_crash: AgentCrashReport) -> None:
    """Restarted on its state, healwatch closes the run as interrupted with traffic restored, web1 serves in
    HAProxy again, no client request failed, and the outbox delivers what was pending and nothing already sent."""
    report = agent_crash
    assert report.incident["outcome"] == "interrupted"
    assert "traffic restored" in report.incident["detail"]
    assert [(s["action"], s["result"]) for s in report.incident["steps"]] == [
        ("traffic cut", "ok"), ("restart", "interrupted"), ("traffic restore", "ok")]
    assert report.later_incidents == []  # supervisord finished the start it was given: nothing left to heal
    assert report.haproxy_state == "ready" and report.web1_serves
    assert report.failed == 0, f"{report.requests} requests"
    assert agent_crash_problems(report) == []
    assert report.pending_at_kill <= set(report.delivered_after_restart)
    assert not (set(report.delivered_after_restart) & (report.delivered_before_kill - report.pending_at_kill))
    assert stack.value(f'healwatch_autoheal_suspended{{service="{SICK}"}}') == 0


def test_the_report_holds_what_the_client_saw(stack: Stack, reports: dict[str, CaseReport]) -> None:
    """incident-report.json records, per case, the client's requests and failures before and after the cut."""
    summary = json.loads((stack.dir / "incident-report.json").read_text())
    assert {name: (s["failed_after_cut"], s["requests"] > 0) for name, s in summary.items()} == {
        name: (0, True) for name in NAMES}
    assert {name: s["failed_before_cut"] for name, s in summary.items()} == {
        name: report.failed_before_cut for name, report in reports.items()}


def test_a_bad_deploy_is_rolled_back_and_ramped_back_in(stack: Stack, reports: dict[str, CaseReport]) -> None:
    """The deploy case: healed on WebDeployFailing by rollback-web1, whose rollback put the good version back (web1's
    webapp_version_info says so) before traffic returned through a 50% -> 100% ramp in HAProxy."""
    report = reports["deploy"]
    assert report.case.expected_trigger in report.trigger and report.trigger.startswith("alert")
    assert (stack.dir / f"{SICK}.version").read_text() == f"{GOOD_VERSION}\n"
    metrics = stack.http.get(f"http://127.0.0.1:{stack.ports['WEB1_PORT']}/metrics").text
    assert f'webapp_version_info{{version="{GOOD_VERSION}"}} 1' in metrics
    steps = {action: seconds for action, _, seconds in report.steps()}
    assert steps["verify"] is not None and steps["verify"] >= 4  # failed at its timeout on the bad version
    assert steps["traffic ramp 50/100%"] is not None and steps["traffic ramp 50/100%"] >= 2  # two 1 s holds
