"""Named time intervals that mute or activate routes (and playbooks), with Alertmanager's semantics.

A port of Alertmanager's ``timeinterval/timeinterval.go``: an interval matches an instant when every
field it sets has one range containing it (times in minutes of the day, start inclusive, end
exclusive, ``24:00`` allowed as an end; weekdays, days of month, months and years inclusive on both
ends; negative days of month count from the month's end and ranges are clamped to the month). The
instant is read in the interval's ``location`` (an IANA name, ``Local`` or ``UTC``), in UTC without one.
The parsers raise ``ValueError`` with Alertmanager's own messages.
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_TIME = re.compile(r"(([01][0-9])|(2[0-3])):[0-5][0-9]|24:00")


@dataclass(frozen=True)
class Range:
    """An inclusive range of weekdays (0 is Sunday), days of month, months or years."""

    begin: int
    end: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.begin <= value <= self.end


@dataclass(frozen=True)
class TimeRange:
    """Minutes of the day from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: int
    end: int


@dataclass(frozen=True)
class TimeInterval:
    """One ``time_intervals`` entry of a named interval; an empty field matches any value."""

    times: tuple[TimeRange, ...] = ()
    weekdays: tuple[Range, ...] = ()
    days_of_month: tuple[Range, ...] = ()
    months: tuple[Range, ...] = ()
    years: tuple[Range, ...] = ()
    location: tzinfo | None = None

    def contains(self, instant: datetime) -> bool:
        """Whether the aware datetime ``instant`` falls in this interval (Alertmanager's ``ContainsTime``)."""
        t = instant.astimezone(self.location or timezone.utc)
        minute = t.hour * 60 + t.minute
        if self.times and not any(r.start <= minute < r.end for r in self.times):
            return False
        if self.days_of_month and not any(_day_in(r, t) for r in self.days_of_month):
            return False
        if self.months and not any(t.month in r for r in self.months):
            return False
        # Python counts Monday as 0, Go (and Alertmanager) Sunday.
        if self.weekdays and not any((t.weekday() + 1) % 7 in r for r in self.weekdays):
            return False
        return not self.years or any(t.year in r for r in self.years)


def _day_in(days: Range, t: datetime) -> bool:
    in_month = calendar.monthrange(t.year, t.month)[1]
    begin = in_month + days.begin + 1 if days.begin < 0 else days.begin
    end = in_month + days.end + 1 if days.end < 0 else days.end
    if begin > in_month:
        return False
    begin = min(max(begin, -in_month), in_month)
    end = min(max(end, -in_month), in_month)
    return begin <= t.day <= end


class Intervener:
    """The named intervals of a config; says which of some names contain an instant."""

    def __init__(self, intervals: Mapping[str, Sequence[TimeInterval]]) -> None:
        self.intervals = dict(intervals)

    def containing(self, names: Iterable[str], now: float) -> tuple[str, ...]:
        """The names among ``names`` with an interval containing the Unix time ``now``; unknown names raise KeyError."""
        instant = datetime.fromtimestamp(now, timezone.utc)
        return tuple(name for name in names if any(i.contains(instant) for i in self.intervals[name]))

    def active(self, names: Sequence[str], now: float) -> bool:
        """Whether ``now`` is in one of the ``names`` intervals; always true without names."""
        return not names or bool(self.containing(names, now))


def parse_time(text: str) -> int:
    """``HH:MM`` (00:00 to 24:00) as minutes of the day."""
    if not _TIME.fullmatch(text):
        raise ValueError(f"couldn't parse timestamp {text}, invalid format")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_time_range(start: str, end: str) -> TimeRange:
    """A ``times`` entry: ``start_time`` before ``end_time``."""
    if not start or not end:
        raise ValueError("both start and end times must be provided")
    start_minute, end_minute = parse_time(start), parse_time(end)
    if start_minute >= end_minute:
        raise ValueError("start time cannot be equal or greater than end time")
    return TimeRange(start_minute, end_minute)


def _bounds(text: str, names: Mapping[str, int], kind: str, numbers: bool) -> Range:
    """``a`` or ``a:b`` (lower-cased), each side a name or (with ``numbers``) an integer: Go's
    ``stringableRangeFromString``."""
    parts = text.lower().split(":")
    if len(parts) > 2:
        raise ValueError(f"couldn't parse range {text.lower()}, invalid format")
    values = []
    for part in parts:
        if part in names:
            values.append(names[part])
        elif numbers and re.fullmatch(r"[+-]?[0-9]+", part):  # Go's strconv.Atoi
            values.append(int(part))
        elif names or not numbers:
            raise ValueError(f"{part} is not a valid {kind}")
        else:
            raise ValueError(f'strconv.Atoi: parsing "{part}": invalid syntax')
    return Range(values[0], values[-1])


def parse_weekdays(text: str) -> Range:
    """``monday`` or ``monday:friday`` (case-insensitive), Sunday first."""
    days = _bounds(text, _WEEKDAYS, "weekday", numbers=False)
    if days.begin > days.end:
        raise ValueError("start day cannot be before end day")
    return days


def parse_days_of_month(text: str) -> Range:
    """``1``, ``1:15`` or ``-3:-1`` (from the month's end); never 0, within ±31."""
    days = _bounds(text, {}, "day of the month", numbers=True)
    for day in (days.begin, days.end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(f"{day} is not a valid day of the month: out of range")
    if days.begin < 0 < days.end:
        raise ValueError("end day must be negative if start day is negative")
    if (28 + days.begin if days.begin < 0 else days.begin) > (28 + days.end if days.end < 0 else days.end):
        raise ValueError(f"end day {days.end} is always before start day {days.begin}")
    return days


def parse_months(text: str) -> Range:
    """``january``, ``1:3`` or ``may:august`` (case-insensitive names or numbers 1 to 12)."""
    months = _bounds(text, _MONTHS, "month", numbers=True)
    for month in (months.begin, months.end):
        if not 1 <= month <= 12:
            # Alertmanager takes 13 and never matches it; a month that cannot be is refused here.
            raise ValueError(f"{month} is not a valid month: out of range")
    if months.begin > months.end:
        names = list(_MONTHS)
        raise ValueError(f"end month {names[months.end - 1]} is before start month {names[months.begin - 1]}")
    return months


def parse_years(text: str) -> Range:
    """``2025`` or ``2025:2027``."""
    years = _bounds(text, {}, "year", numbers=True)
    if years.begin > years.end:
        raise ValueError(f"end year {years.end} is before start year {years.begin}")
    return years


def load_location(name: str) -> tzinfo:
    """An IANA time zone; ``UTC`` (or empty) is UTC and ``Local`` this machine's zone, as Go's ``LoadLocation``."""
    if name in ("", "UTC"):
        return timezone.utc
    if name == "Local":
        # Go's Local: $TZ, else /etc/localtime, else UTC.
        configured = os.environ.get("TZ", "").removeprefix(":")
        try:
            if configured:
                return ZoneInfo(configured)
            with open("/etc/localtime", "rb") as file:
                return ZoneInfo.from_file(file, key="Local")
        except (OSError, ValueError, ZoneInfoNotFoundError):
            return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name}") from None
