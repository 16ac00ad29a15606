"""The top-level ``time_intervals`` section (Alertmanager's), and the interval names routes and playbooks use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from agent.config.types import Section
from exporters.timeintervals import (
    Intervener,
    TimeInterval,
    TimeRange,
    load_location,
    parse_days_of_month,
    parse_months,
    parse_time,
    parse_time_range,
    parse_weekdays,
    parse_years,
)

# The validation context's key for the names the file defines (agent.config.load puts them there),
# so an unknown name is reported at its own line.
NAMES_CONTEXT_KEY = "time_interval_names"


def _checked(parse: Callable[[str], object]) -> AfterValidator:
    """An AfterValidator that keeps the text but refuses what ``parse`` refuses."""

    def check(text: str) -> str:
        parse(text)
        return text

    return AfterValidator(check)


def _known_name(name: str, info: ValidationInfo) -> str:
    names = (info.context or {}).get(NAMES_CONTEXT_KEY)
    if names is not None and name not in names:
        raise ValueError(f"undefined time interval {name!r} (time_intervals: {', '.join(sorted(names)) or 'none'})")
    return name


IntervalName = Annotated[str, Field(min_length=1), AfterValidator(_known_name)]


class TimeRangeConfig(Section):
    """Minutes of the day from start_time (inclusive) to end_time (exclusive)."""

    start_time: Annotated[str, _checked(parse_time)] = Field(description="HH:MM, 00:00 to 23:59; inclusive.")
    end_time: Annotated[str, _checked(parse_time)] = Field(
        description="HH:MM, 00:01 to 24:00; exclusive, so 17:00 to 24:00 is the evening."
    )

    @model_validator(mode="after")
    def _ordered(self) -> TimeRangeConfig:
        parse_time_range(self.start_time, self.end_time)
        return self

    def build(self) -> TimeRange:
        return parse_time_range(self.start_time, self.end_time)


class TimeIntervalSpecConfig(Section):
    """When an instant is in the interval: every field set must have a range containing it (unset: any)."""

    times: list[TimeRangeConfig] = Field([], description="Times of day.")
    weekdays: list[Annotated[str, _checked(parse_weekdays)]] = Field(
        [], description="Days of the week, e.g. monday:friday or saturday; ranges are inclusive, the week starts Sunday."
    )
    days_of_month: list[Annotated[str, _checked(parse_days_of_month)]] = Field(
        [], description="Days of the month, e.g. 1:5 or -3:-1 (the last three days); inclusive, clamped to the month."
    )
    months: list[Annotated[str, _checked(parse_months)]] = Field(
        [], description="Months by name or number, e.g. january:march or 12; inclusive."
    )
    years: list[Annotated[str, _checked(parse_years)]] = Field([], description="Years, e.g. 2026 or 2026:2028; inclusive.")
    location: Annotated[str, _checked(load_location)] | None = Field(
        None, description="IANA time zone the fields are read in (Europe/Berlin), Local or UTC; UTC when unset."
    )

    def build(self) -> TimeInterval:
        return TimeInterval(
            times=tuple(t.build() for t in self.times),
            weekdays=tuple(map(parse_weekdays, self.weekdays)),
            days_of_month=tuple(map(parse_days_of_month, self.days_of_month)),
            months=tuple(map(parse_months, self.months)),
            years=tuple(map(parse_years, self.years)),
            location=None if self.location is None else load_location(self.location),
        )


class TimeIntervalConfig(Section):
    """A named set of intervals that routes' mute_time_intervals/active_time_intervals and playbooks name."""

    name: Annotated[str, Field(min_length=1)] = Field(description="Unique name routes and playbooks refer to.")
    time_intervals: list[TimeIntervalSpecConfig] = Field(
        description="The instants of the interval: those in any of these entries."
    )


def intervener(intervals: list[TimeIntervalConfig]) -> Intervener:
    """The runtime form of the section."""
    return Intervener({entry.name: [spec.build() for spec in entry.time_intervals] for entry in intervals})


def duplicate_names(intervals: list[TimeIntervalConfig]) -> list[str]:
    """Names defined more than once, which Alertmanager refuses."""
    names = [entry.name for entry in intervals]
    return sorted({name for name in names if names.count(name) > 1})
