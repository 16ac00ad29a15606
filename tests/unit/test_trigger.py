"""Job timing: a first run at once, then a fixed per-name phase within the interval, like Prometheus."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agent.schedule.phase import PhasedInterval, grid_stamp_ms, offset_of

NOW = datetime(2026, 11, 23, 12, 0, 0, 250_000, tzinfo=timezone.utc)


def fires(trigger: PhasedInterval, count: int) -> list[datetime]:
    times = [trigger.get_next_fire_time(None, NOW)]
    while len(times) < count:
        times.append(trigger.get_next_fire_time(times[-1], times[-1]))
    return times


def test_the_first_run_is_immediate_and_the_rest_sit_on_the_names_grid() -> None:
    """After the immediate run every fire time is offset modulo interval, exactly one interval apart."""
    trigger = PhasedInterval("scrape:web", 15.0)
    times = fires(trigger, 6)
    assert times[0] == NOW
    assert times[1] - times[0] >= timedelta(seconds=7.5)
    for earlier, later in zip(times[1:], times[2:]):
        assert later - earlier == timedelta(seconds=15)
    for time in times[1:]:
        assert abs((time.timestamp() - trigger.offset_s) % 15.0) < 1e-6


def test_offsets_are_stable_per_name_and_spread_across_names() -> None:
    """The same name always gets the same phase; 100 names cover the interval instead of bunching at 0."""
    assert offset_of("rules:host", 1.0) == offset_of("rules:host", 1.0)
    offsets = [offset_of(f"check:svc{i}:http", 1.0) for i in range(100)]
    assert all(0 <= offset < 1.0 for offset in offsets)
    assert sum(offset < 0.5 for offset in offsets) in range(30, 71)
    assert len(set(offsets)) > 80  # millisecond phases: a few names share one


def test_a_job_that_ran_late_keeps_its_phase() -> None:
    """A run delayed by a busy loop does not shift the grid: the next fire time is the next grid point."""
    trigger = PhasedInterval("rules:service", 1.0)
    on_grid = fires(trigger, 2)[1]
    late = on_grid + timedelta(milliseconds=300)
    assert trigger.get_next_fire_time(late, late) == on_grid + timedelta(seconds=1)


def test_runs_within_two_milliseconds_of_their_grid_point_are_stamped_with_it() -> None:
    """A job at +0.733 s every 1 s: 1.734 s and 1.731 s become 1.733 s; 1.737 s (4 ms late) stays as it is."""
    assert grid_stamp_ms(1_700_000_001.734, 1.0, 0.733) == 1_700_000_001_733
    assert grid_stamp_ms(1_700_000_001.731, 1.0, 0.733) == 1_700_000_001_733
    assert grid_stamp_ms(1_700_000_001.737, 1.0, 0.733) == 1_700_000_001_737
    assert grid_stamp_ms(1_700_000_024.999, 15.0, 0.0) == 1_700_000_025_000  # 1_700_000_010 is a multiple of 15
