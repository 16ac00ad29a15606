"""The check state machine: thresholds, initial delay, transition events and metrics, on a scripted clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from prometheus_client.core import Metric
from pydantic import ValidationError
from structlog.testing import capture_logs

from agent.health.checks import Check
from agent.collectors.base import samples_of
from agent.health.probes import ProbeResult, make_probe
from agent.health.results import ProbeMetric
from agent.httpclient import new_http_client
from agent.config import CheckConfig
from healers.events import CheckStateChanged
from rules.model import Labels

OK = ProbeResult(True, 0.01, 200)
DOWN = ProbeResult(False, 0.3, None, "connect failed: Connection refused")
ERROR = ProbeResult(False, 0.02, 500, "status 500, expected 2xx")


class ScriptedProbe:
    """A probe returning the given results in order, counting its calls."""

    def __init__(self, results: Iterable[ProbeResult]) -> None:
        self.results = list(results)
        self.calls = 0

    async def __call__(self) -> ProbeResult:
        self.calls += 1
        return self.results.pop(0)


def config(**fields: object) -> CheckConfig:
    return CheckConfig.model_validate({"name": "live", "http": {"url": "http://127.0.0.1:1/"}, **fields})


def make_check(
    results: Iterable[ProbeResult], events: list[CheckStateChanged], **fields: object
) -> tuple[Check, ScriptedProbe]:
    probe = ScriptedProbe(results)
    return Check("api", config(**fields), probe, events.append, started_at=1000.0), probe


def run_at(check: Check, *times: float) -> list[ProbeResult | None]:
    async def main() -> list[ProbeResult | None]:
        return [await check.run(now) for now in times]

    return asyncio.run(main())


def samples(families: list[Metric]) -> dict[Labels, float]:
    return dict(samples_of(families))


def sample(check: Check, name: str, **labels: str) -> float | None:
    return samples(check.families()).get(Labels.of(name, {"service": "api", "check": "live", **labels}))


def test_healthy_until_failure_threshold_consecutive_failures() -> None:
    """With failure_threshold 3, two failures keep it healthy and the third turns it unhealthy once."""
    events: list[CheckStateChanged] = []
    check, _ = make_check([DOWN, DOWN, DOWN, DOWN], events, failure_threshold=3)
    run_at(check, 1000, 1010)
    assert check.healthy and events == []
    run_at(check, 1020, 1030)
    assert not check.healthy
    assert events == [
        CheckStateChanged(service="api", check="live", healthy=False, at=1020.0, reason=DOWN.error)
    ]


def test_a_success_resets_the_failure_count() -> None:
    """Failures interrupted by a success never reach the threshold."""
    events: list[CheckStateChanged] = []
    check, _ = make_check([DOWN, DOWN, OK, DOWN, DOWN, OK], events, failure_threshold=3)
    run_at(check, *range(1000, 1060, 10))
    assert check.healthy and events == []


def test_recovery_needs_success_threshold_consecutive_successes() -> None:
    """Once unhealthy, it turns healthy only after success_threshold successes in a row."""
    events: list[CheckStateChanged] = []
    script = [ERROR, OK, ERROR, OK, OK]
    check, _ = make_check(script, events, failure_threshold=1, success_threshold=2)
    run_at(check, 1000)
    assert not check.healthy
    run_at(check, 1010, 1020, 1030)
    assert not check.healthy
    run_at(check, 1040)
    assert check.healthy
    assert [(e.healthy, e.at, e.reason) for e in events] == [
        (False, 1000.0, ERROR.error),
        (True, 1040.0, ""),
    ]


def test_no_probe_runs_during_initial_delay() -> None:
    """Before started_at + initial_delay run() probes nothing and returns None; at the boundary it probes."""
    events: list[CheckStateChanged] = []
    check, probe = make_check([DOWN], events, initial_delay="30s", failure_threshold=1)
    assert run_at(check, 1000, 1029.9) == [None, None]
    assert probe.calls == 0 and check.starting(1029.9)
    assert run_at(check, 1030) == [DOWN]
    assert probe.calls == 1 and not check.starting(1030)
    assert not check.healthy


def test_first_run_marks_the_start_when_no_start_time_is_given() -> None:
    """Without started_at, the initial delay counts from the first run()."""
    probe = ScriptedProbe([OK])
    check = Check("api", config(initial_delay="5s"), probe, lambda event: None)
    assert run_at(check, 50, 54) == [None, None]
    assert run_at(check, 55) == [OK]


def test_metrics_while_starting_show_presumed_healthy_and_no_probe_samples() -> None:
    """While starting only the thresholded state (1) and zeroed run counters are exported."""
    check, _ = make_check([], [], initial_delay="30s")
    run_at(check, 1000)
    assert samples(check.families()) == {
        Labels.of("healwatch_check_healthy", {"service": "api", "check": "live"}): 1.0,
        Labels.of("healwatch_check_runs_total", {"service": "api", "check": "live", "result": "success"}): 0.0,
        Labels.of("healwatch_check_runs_total", {"service": "api", "check": "live", "result": "failure"}): 0.0,
    }


def test_metrics_follow_the_last_probe_and_count_runs() -> None:
    """probe_* reflect the last result (status 0 without a response) and runs are counted by result."""
    check, _ = make_check([ERROR, OK, DOWN], [], failure_threshold=2)
    run_at(check, 1000, 1010)
    assert sample(check, "probe_success") == 1.0
    assert sample(check, "probe_http_status_code") == 200.0
    assert sample(check, "probe_duration_seconds") == OK.duration_s
    run_at(check, 1020)
    assert sample(check, "probe_success") == 0.0
    assert sample(check, "probe_http_status_code") == 0.0
    assert sample(check, "healwatch_check_healthy") == 1.0
    assert sample(check, "healwatch_check_runs_total", result="success") == 1.0
    assert sample(check, "healwatch_check_runs_total", result="failure") == 2.0


def test_non_http_checks_export_no_status_code() -> None:
    """probe_http_status_code belongs to http checks only."""
    tcp = CheckConfig.model_validate({"name": "live", "tcp": {"address": "127.0.0.1:1"}})
    check = Check("api", tcp, ScriptedProbe([DOWN]), lambda event: None)
    run_at(check, 0)
    names = {labels.name for labels in samples(check.families())}
    assert "probe_success" in names and "probe_http_status_code" not in names


def test_a_probes_own_gauges_carry_the_check_labels_and_their_own() -> None:
    """A probe kind's extra metrics (DNS counts, the TLS version) become families with service and check added."""
    extra = ProbeResult(True, 0.01, metrics=(
        ProbeMetric("probe_dns_answer_rrs", "Records in the answer section.", 2.0),
        ProbeMetric("probe_tls_version_info", "The TLS version used.", 1.0, (("version", "TLS 1.3"),)),
    ))
    check, _ = make_check([extra], [])
    run_at(check, 1000)
    assert sample(check, "probe_dns_answer_rrs") == 2.0
    assert sample(check, "probe_tls_version_info", version="TLS 1.3") == 1.0


def test_a_crashing_probe_counts_as_a_failure() -> None:
    """An exception from a probe becomes a failed result naming the exception type; the check carries on."""

    async def broken() -> ProbeResult:
        raise RuntimeError("tracker bug")

    events: list[CheckStateChanged] = []
    check = Check("api", config(failure_threshold=1), broken, events.append)
    with capture_logs() as logs:
        [result] = run_at(check, 0)
    assert result is not None and not result.success
    assert result.error == "probe crashed: RuntimeError"
    assert [e.healthy for e in events] == [False]
    assert {"event": "probe_crashed", "service": "api", "check": "live"}.items() <= logs[0].items()


def test_a_failing_listener_does_not_break_the_state_machine() -> None:
    """If on_change raises, the transition still happens and later transitions still fire."""
    seen: list[bool] = []

    def listener(event: CheckStateChanged) -> None:
        seen.append(event.healthy)
        raise RuntimeError("listener bug")

    check = Check("api", config(failure_threshold=1), ScriptedProbe([DOWN, OK]), listener)
    run_at(check, 0)
    assert not check.healthy
    run_at(check, 10)
    assert check.healthy and seen == [False, True]


def test_real_exec_probe_drives_the_check() -> None:
    """A check wired through make_probe to `false` turns unhealthy at its threshold."""
    events: list[CheckStateChanged] = []
    cfg = CheckConfig.model_validate({"name": "live", "exec": {"command": ["false"]}, "failure_threshold": 2})

    async def main() -> None:
        async with new_http_client() as client:
            check = Check("api", cfg, make_probe(cfg, http_client=client), events.append)
            for now in (0.0, 10.0):
                await check.run(now)

    asyncio.run(main())
    assert events == [CheckStateChanged(service="api", check="live", healthy=False, at=10.0, reason="exit status 1")]


def test_failures_within_catches_a_flapping_service() -> None:
    """3 failures in the last 5 runs turn a 1-0-1-0 service unhealthy; it recovers after 3 successes in a row."""
    events: list[CheckStateChanged] = []
    script = [DOWN, OK, DOWN, OK, DOWN, OK, OK, OK]
    check, _ = make_check(script, events, failure_threshold=3, failures_within={"count": 3, "window": 5})
    run_at(check, 1000, 1010, 1020, 1030)
    assert check.healthy  # two failures so far, never two in a row
    run_at(check, 1040)
    assert not check.healthy
    run_at(check, 1050, 1060)
    assert not check.healthy  # two successes in a row could still hide a flapping service
    run_at(check, 1070)
    assert check.healthy
    assert [(e.healthy, e.at) for e in events] == [(False, 1040.0), (True, 1070.0)]


def test_failures_within_count_cannot_exceed_its_window() -> None:
    """A count larger than the window could never trigger; the config says so."""
    with pytest.raises(ValidationError, match="count 6 cannot exceed window 5"):
        config(failures_within={"count": 6, "window": 5})
