"""One series' samples in time order, held in compact numpy buffers.

Timestamps are kept as offsets in milliseconds from a per-window base: uint32
while the retained span fits in 2**32 ms (about 49.7 days), int64 otherwise, so
a sample costs 12 bytes (4 + an exact float64) in every realistic retention.

Samples live in ``[start, end)`` of append-only arrays. Retention is applied
lazily: the store moves a shared cutoff, reads never look below it, and the
expired samples' slots are reclaimed when the buffer next fills up, by copying
the live part into fresh arrays sized from the retention (never blind
doubling). So evicting touches no buffer, and a full buffer is copied at most
once per ``live // 8`` appends.

Reads binary-search the offsets and return slices: their cost grows with the
samples returned, not with the samples retained. The live part of a buffer is
never rewritten in place, so a returned value slice stays valid and unchanged
after later appends and evictions.
"""

from __future__ import annotations

import math
import struct
from enum import Enum

import numpy as np

from .model import STALE_NAN_BITS

_NARROW_MAX_OFFSET = int(np.iinfo(np.uint32).max)
_WIDE_MAX_OFFSET = int(np.iinfo(np.int64).max)
_INITIAL_CAPACITY = 4

_EMPTY_TIMESTAMPS = np.empty(0, dtype=np.int64)
_EMPTY_TIMESTAMPS.flags.writeable = False
_EMPTY_VALUES = np.empty(0, dtype=np.float64)
_EMPTY_VALUES.flags.writeable = False


class Retention:
    """How long samples are kept, and the oldest timestamp still visible; shared by a store's windows."""

    __slots__ = ("period_ms", "cutoff_ms")

    def __init__(self, period_ms: int | None) -> None:
        self.period_ms = period_ms
        self.cutoff_ms = -(2**63)  # nothing has expired yet

    def advance(self, now_ms: int) -> None:
        """Expire samples older than ``now_ms - period_ms``; the cutoff never moves back."""
        if self.period_ms is not None:
            self.cutoff_ms = max(self.cutoff_ms, now_ms - self.period_ms)


class AppendOutcome(Enum):
    """What became of one appended sample."""

    ADDED = "added"
    DUPLICATE = "duplicate"  # same timestamp and same value bits: ignored, as Prometheus does
    OUT_OF_ORDER = "out_of_order"  # older than the newest sample
    CONFLICT = "conflict"  # same timestamp as the newest sample, different value


class SampleWindow:
    """Samples of one series, oldest first, with binary-searched range reads."""

    __slots__ = (
        "_retention",
        "_base",
        "_timestamps",
        "_offset_type",
        "_max_offset",
        "_values",
        "_start",
        "_end",
        "_last_t",
    )

    def __init__(self, retention: Retention) -> None:
        self._retention = retention
        self._base = 0
        self._timestamps: np.ndarray = np.empty(_INITIAL_CAPACITY, dtype=np.uint32)
        self._offset_type: type[np.integer] = np.uint32
        self._max_offset = _NARROW_MAX_OFFSET
        self._values: np.ndarray = np.empty(_INITIAL_CAPACITY, dtype=np.float64)
        self._start = 0
        self._end = 0
        self._last_t: int | None = None

    def __len__(self) -> int:
        """Samples retained (not yet expired)."""
        return self._end - self._first_unexpired()

    @property
    def capacity(self) -> int:
        """Sample slots allocated, live or not (for memory accounting)."""
        return len(self._values)

    @property
    def newest_ms(self) -> int | None:
        """Timestamp of the newest sample, or None before the first."""
        return self._last_t

    def window(self, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples with ``start_ms < t <= end_ms`` as (int64 ms timestamps, read-only float64 values)."""
        lo = self._index_after(max(start_ms, self._retention.cutoff_ms - 1))
        hi = self._index_after(end_ms)
        if hi <= lo:
            return _EMPTY_TIMESTAMPS, _EMPTY_VALUES
        timestamps = self._timestamps[lo:hi].astype(np.int64)
        timestamps += self._base
        values = self._values[lo:hi]
        values.flags.writeable = False
        return timestamps, values

    def last(self, end_ms: int, lookback_ms: int) -> tuple[int, float] | None:
        """Newest sample in ``(end_ms - lookback_ms, end_ms]``, or None if absent or a stale marker."""
        hi = self._index_after(end_ms)
        if hi == self._start:
            return None
        t_ms = self._base + int(self._timestamps[hi - 1])
        if t_ms <= end_ms - lookback_ms or t_ms < self._retention.cutoff_ms:
            return None
        value = float(self._values[hi - 1])
        if math.isnan(value) and _bits(value) == STALE_NAN_BITS:
            return None
        return t_ms, value

    def append(self, t_ms: int, value: float) -> AppendOutcome:
        """Add a sample newer than every held one; older or conflicting samples are refused."""
        last_t = self._last_t
        if last_t is None:
            self._base = t_ms
        elif t_ms <= last_t:
            if t_ms < last_t:
                return AppendOutcome.OUT_OF_ORDER
            if _bits(value) == _bits(float(self._values[self._end - 1])):
                return AppendOutcome.DUPLICATE
            return AppendOutcome.CONFLICT
        if self._end == len(self._values) or t_ms - self._base > self._max_offset:
            self._make_room(t_ms)
        end = self._end
        self._timestamps[end] = t_ms - self._base
        self._values[end] = value
        self._end = end + 1
        self._last_t = t_ms
        return AppendOutcome.ADDED

    def _first_unexpired(self) -> int:
        return self._index_after(self._retention.cutoff_ms - 1)

    def _index_after(self, t_ms: int) -> int:
        """Buffer position of the first held sample newer than ``t_ms``."""
        if self._last_t is None or t_ms >= self._last_t:
            return self._end
        offset = t_ms - self._base
        if offset < 0:
            return self._start
        held = self._timestamps[self._start : self._end]
        # A typed key: with a Python int numpy converts the whole array first.
        return self._start + int(held.searchsorted(self._offset_type(offset), "right"))

    def _make_room(self, next_t_ms: int) -> None:
        """Drop expired samples, then copy the rest into fresh arrays that can take ``next_t_ms``."""
        self._start = self._first_unexpired()
        live = self._end - self._start
        if live == 0:
            self._start = self._end = 0
            self._base = next_t_ms
            return
        first_t = self._base + int(self._timestamps[self._start])
        capacity = self._capacity_for(live, first_t) if self._end == len(self._values) else len(self._values)
        wide = next_t_ms - first_t > _NARROW_MAX_OFFSET
        offset_type: type[np.integer] = np.int64 if wide else np.uint32
        held = self._timestamps[self._start : self._end]
        timestamps = np.empty(capacity, dtype=offset_type)
        timestamps[:live] = held - held.dtype.type(first_t - self._base)
        values = np.empty(capacity, dtype=np.float64)
        values[:live] = self._values[self._start : self._end]
        self._timestamps, self._values = timestamps, values
        self._offset_type = offset_type
        self._max_offset = _WIDE_MAX_OFFSET if wide else _NARROW_MAX_OFFSET
        self._base = first_t
        self._start, self._end = 0, live

    def _capacity_for(self, live: int, first_t: int) -> int:
        """Slots for a full buffer holding ``live`` samples: what retention needs, plus slack.

        Every reallocation leaves at least ``live // 8 + 2`` free slots, so copying
        stays amortised O(1) per append; the retention estimate keeps steady-state
        slack near 1/8; without one, growth by 1/4 bounds the slack at a fifth of the buffer.
        """
        capacity = len(self._values)
        floor = live + live // 8 + 2
        period_ms = self._retention.period_ms
        span_ms = self._base + int(self._timestamps[self._end - 1]) - first_t
        if period_ms is None or live < 2 or span_ms <= 0:
            return max(floor, capacity + capacity // 4)
        expected = (live - 1) * period_ms // span_ms + 1  # samples per retention period at the rate seen
        return max(floor, min(2 * capacity, expected + expected // 8 + 2))


def _bits(value: float) -> int:
    return int.from_bytes(struct.pack("<d", value), "little")
