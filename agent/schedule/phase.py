"""When a job runs: right away, then on a grid of its interval shifted by an offset of its own.

Like Prometheus' scrape loops, each job's offset within its interval is a hash of its name, so
jobs of one interval spread out instead of firing together, the same after every restart. A rule
group is placed just after the jobs it reads instead (agent.schedule.arrival), so it sees their
samples at once rather than up to an interval late.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timezone

from apscheduler.triggers.base import BaseTrigger


# Like Prometheus' scrape timestamp tolerance: a run this close to its grid point is stamped with it.
SNAP_TOLERANCE_MS = 2


def offset_of(name: str, interval_s: float) -> float:
    """The fixed offset of ``name`` within its interval, in seconds."""
    interval_ms = max(int(interval_s * 1000), 1)
    return zlib.crc32(name.encode()) % interval_ms / 1000


def grid_stamp_ms(t: float, interval_s: float, offset_s: float) -> int:
    """``t`` in ms, moved onto its job's grid point when within SNAP_TOLERANCE_MS of it.

    The scheduler starts a job a millisecond or so late; stamped with its grid point instead, a
    job's samples sit exactly one interval apart, which the store keeps without a per-sample
    timestamp (rules.window) and which is what Prometheus does to scrape timestamps.
    """
    t_ms = round(t * 1000)
    interval_ms = max(round(interval_s * 1000), 1)
    since_ms = (t_ms - round(offset_s * 1000)) % interval_ms
    if since_ms <= SNAP_TOLERANCE_MS:
        return t_ms - since_ms
    if interval_ms - since_ms <= SNAP_TOLERANCE_MS:
        return t_ms + interval_ms - since_ms
    return t_ms


class PhasedInterval(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types: BaseTrigger is Any
    """Fires at once, then at ``k * interval_s + offset`` (Unix time), never twice within half an interval.

    The offset is the name's hash unless given (a rule group placed after its feeders, agent.schedule.arrival).
    """

    __slots__ = ("interval_s", "offset_s")

    def __init__(self, name: str, interval_s: float, offset_s: float | None = None) -> None:
        self.interval_s = interval_s
        self.offset_s = offset_of(name, interval_s) if offset_s is None else offset_s

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            return now
        # The first grid point at least half an interval on: the grid from then on, one interval apart.
        earliest = previous_fire_time.timestamp() + self.interval_s / 2
        behind = (earliest - self.offset_s) % self.interval_s
        next_s = earliest if behind == 0 else earliest - behind + self.interval_s
        return datetime.fromtimestamp(next_s, timezone.utc)

    def __str__(self) -> str:
        return f"every {self.interval_s:g}s at +{self.offset_s:g}s"
