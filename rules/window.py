"""One series' samples in time order, held in compact numpy buffers.

Timestamps are kept as deltas from the previous sample in the narrowest of
uint16, uint32 and int64 that holds every delta of the buffer (uint16 up to a
65.5 s interval, jitter included), with the exact int64 timestamp of every
64th sample as a checkpoint: about 2.1 bytes per sample at any scrape interval
up to a minute.

Values are kept exactly, bit for bit: as scaled integers while every value of
the buffer is ``(offset + q) / scale`` for a power of ten ``scale`` and an int8,
int16 or int32 ``q`` (integer counters, byte counts, decimal readings: 1-4
bytes), otherwise as float64 (full-mantissa values, NaNs with their payload
such as the stale marker, infinities, -0.0). A value that does not fit the
current encoding re-encodes the buffer, wider; a reallocation picks the
narrowest encoding of what is left.

Samples live in ``[0, end)`` of append-only arrays. Retention is applied
lazily: the store moves a shared cutoff, reads never look below it, and the
expired samples' slots are reclaimed when the buffer next fills up, by copying
the live part into fresh arrays sized from the retention (never blind
doubling). So evicting touches no buffer, and a full buffer is copied at most
once per ``live // 8`` appends.

Reads binary-search the checkpoints, then add up at most one checkpoint
block's deltas before the slice they return: their cost grows with the samples
returned, not with the samples retained. The live part of a buffer is never
rewritten in place (a re-encoding writes fresh arrays), so a returned value
slice stays valid and unchanged after later appends and evictions.
"""

from __future__ import annotations

import math
import struct
from enum import Enum

import numpy as np

from .model import STALE_NAN_BITS

_INITIAL_CAPACITY = 4
_BLOCK = 64  # samples per timestamp checkpoint
_DELTA_TYPES: tuple[type[np.integer], ...] = (np.uint16, np.uint32, np.int64)
_INT_TYPES: tuple[type[np.integer], ...] = (np.int8, np.int16, np.int32)
_SCALES = (1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0, 1_000_000.0)
_EXACT_INT = 2**53  # integers a float64 holds exactly

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
        "_deltas",
        "_max_delta",
        "_marks",
        "_values",
        "_scale",
        "_offset",
        "_low",
        "_high",
        "_end",
        "_last_t",
    )

    def __init__(self, retention: Retention) -> None:
        self._retention = retention
        self._deltas: np.ndarray = np.empty(_INITIAL_CAPACITY, dtype=np.uint16)
        self._max_delta = int(np.iinfo(np.uint16).max)
        self._marks: np.ndarray = np.empty(1, dtype=np.int64)
        self._values: np.ndarray = np.empty(_INITIAL_CAPACITY, dtype=np.int8)
        self._scale = 1.0  # 0.0: values are raw float64
        self._offset = 0
        self._low, self._high = -128, 127
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
        after_ms = max(start_ms, self._retention.cutoff_ms - 1)
        hi = self._index_after(end_ms)
        if self._last_t is None or after_ms >= self._last_t or hi == 0:
            return _EMPTY_TIMESTAMPS, _EMPTY_VALUES
        block = self._block_of(after_ms)
        first = max(block, 0) * _BLOCK
        times = self._times_from(block, hi)
        lo = first if block < 0 else first + _search(times[:_BLOCK], after_ms)
        if hi <= lo:
            return _EMPTY_TIMESTAMPS, _EMPTY_VALUES
        return times[lo - first :], self._decoded(lo, hi)

    def last(self, end_ms: int, lookback_ms: int) -> tuple[int, float] | None:
        """Newest sample in ``(end_ms - lookback_ms, end_ms]``, or None if absent or a stale marker."""
        hi = self._index_after(end_ms)
        if hi == 0 or self._last_t is None:
            return None
        t_ms = self._last_t if hi == self._end else self._time_at(hi - 1)
        if t_ms <= end_ms - lookback_ms or t_ms < self._retention.cutoff_ms:
            return None
        value = self._value_at(hi - 1)
        if math.isnan(value) and _bits(value) == STALE_NAN_BITS:
            return None
        return t_ms, value

    def append(self, t_ms: int, value: float) -> AppendOutcome:
        """Add a sample newer than every held one; older or conflicting samples are refused."""
        last_t = self._last_t
        if last_t is not None and t_ms <= last_t:
            if t_ms < last_t:
                return AppendOutcome.OUT_OF_ORDER
            if _bits(value) == _bits(self._value_at(self._end - 1)):
                return AppendOutcome.DUPLICATE
            return AppendOutcome.CONFLICT
        if self._end == len(self._values):
            self._make_room(t_ms, value)
        end = self._end
        if end == 0:
            last_t = None  # everything held expired: the buffer starts afresh
        if last_t is not None and t_ms - last_t > self._max_delta:
            self._set_times(self._times_from(0, end), len(self._values), t_ms)
        if end % _BLOCK == 0:
            self._marks[end // _BLOCK] = t_ms
        self._deltas[end] = 0 if last_t is None else t_ms - last_t
        stored = self._narrow(value) if self._scale else value
        if stored is None:
            self._set_values(self._decoded(0, end), len(self._values), value)
            stored = self._narrow(value) if self._scale else value
        self._values[end] = stored
        self._end = end + 1
        self._last_t = t_ms
        return AppendOutcome.ADDED

    def _first_unexpired(self) -> int:
        return self._index_after(self._retention.cutoff_ms - 1)

    def _block_of(self, t_ms: int) -> int:
        """Index of the last checkpoint at or before ``t_ms`` (-1 if none); the buffer must hold a sample."""
        marks = self._marks[: (self._end - 1) // _BLOCK + 1]
        if t_ms < int(marks[0]):
            return -1
        return _search(marks, t_ms) - 1

    def _index_after(self, t_ms: int) -> int:
        """Buffer position of the first held sample newer than ``t_ms``."""
        if self._last_t is None or t_ms >= self._last_t:
            return self._end
        block = self._block_of(t_ms)
        if block < 0:
            return 0
        first = block * _BLOCK
        return first + _search(self._times_from(block, min(first + _BLOCK, self._end)), t_ms)

    def _times_from(self, block: int, hi: int) -> np.ndarray:
        """int64 timestamps of positions ``max(block, 0) * _BLOCK`` up to ``hi`` (exclusive)."""
        first = max(block, 0) * _BLOCK
        times = self._deltas[first:hi].cumsum(dtype=np.int64)
        if len(times):
            times += int(self._marks[first // _BLOCK]) - int(self._deltas[first])
        return times

    def _time_at(self, position: int) -> int:
        return int(self._times_from(position // _BLOCK, position + 1)[-1])

    def _value_at(self, position: int) -> float:
        stored = self._values[position]
        if not self._scale:
            return float(stored)
        return (self._offset + int(stored)) / self._scale

    def _decoded(self, lo: int, hi: int) -> np.ndarray:
        """Read-only float64 values of positions ``[lo, hi)``: a view when stored as float64."""
        stored = self._values[lo:hi]
        if not self._scale:
            values = stored
        else:
            values = stored.astype(np.float64)
            if self._offset:
                values += self._offset
            if self._scale != 1.0:
                values /= self._scale
        values.flags.writeable = False
        return values

    def _narrow(self, value: float) -> int | None:
        """``value``'s integer in the current scaled encoding (values are not float64), or None if it has none."""
        scale = self._scale
        scaled = value * scale
        if not -_EXACT_INT < scaled < _EXACT_INT:  # every NaN fails too
            return None
        whole = round(scaled)
        stored = whole - self._offset
        if not self._low <= stored <= self._high or whole / scale != value:
            return None
        if value == 0.0 and math.copysign(1.0, value) < 0:
            return None  # -0.0 reads back as +0.0
        return stored

    def _make_room(self, next_t_ms: int, next_value: float) -> None:
        """Drop expired samples, then copy the rest into fresh arrays sized for retention."""
        lo = self._first_unexpired()
        live = self._end - lo
        if live == 0:
            self._end = 0
            return
        times = self._times_from(lo // _BLOCK, self._end)[lo % _BLOCK :]
        capacity = self._capacity_for(live, int(times[0]))
        self._set_times(times, capacity, next_t_ms)
        self._set_values(self._decoded(lo, self._end), capacity, next_value)
        self._end = live

    def _set_times(self, held: np.ndarray, capacity: int, next_t_ms: int) -> None:
        """Store the int64 timestamps ``held`` in fresh arrays whose deltas can also take ``next_t_ms``."""
        live = len(held)
        gaps = np.diff(held)
        largest = max(int(gaps.max()) if len(gaps) else 0, next_t_ms - int(held[-1]) if live else 0)
        delta_type = next(t for t in _DELTA_TYPES if largest <= np.iinfo(t).max)
        deltas = np.empty(capacity, dtype=delta_type)
        deltas[:1] = 0
        deltas[1:live] = gaps
        marks = np.empty((capacity - 1) // _BLOCK + 1, dtype=np.int64)
        marks[: (live - 1) // _BLOCK + 1 if live else 0] = held[::_BLOCK]
        self._deltas, self._marks = deltas, marks
        self._max_delta = int(np.iinfo(delta_type).max)

    def _set_values(self, held: np.ndarray, capacity: int, next_value: float) -> None:
        """Store the float64 values ``held`` in fresh arrays, in the narrowest exact encoding that also takes ``next_value``."""
        live = len(held)
        encoding = _encoding(np.append(held, next_value))
        if encoding is None:
            values = np.empty(capacity, dtype=np.float64)
            values[:live] = held
            self._scale = 0.0
        else:
            self._scale, self._offset, int_type = encoding
            values = np.empty(capacity, dtype=int_type)
            values[:live] = np.rint(held * self._scale) - self._offset
            info = np.iinfo(int_type)
            self._low, self._high = int(info.min), int(info.max)
        self._values = values

    def _capacity_for(self, live: int, first_t: int) -> int:
        """Slots for a full buffer holding ``live`` samples: what retention needs, plus slack.

        Every reallocation leaves at least ``live // 8 + 2`` free slots, so copying
        stays amortised O(1) per append; the retention estimate keeps steady-state
        slack near 1/8; without one, growth by 1/4 bounds the slack at a fifth of the buffer.
        """
        capacity = len(self._values)
        floor = live + live // 8 + 2
        period_ms = self._retention.period_ms
        span_ms = (self._last_t or first_t) - first_t
        if period_ms is None or live < 2 or span_ms <= 0:
            return max(floor, capacity + capacity // 4)
        expected = (live - 1) * period_ms // span_ms + 1  # samples per retention period at the rate seen
        return max(floor, min(2 * capacity, expected + expected // 8 + 2))


def _encoding(values: np.ndarray) -> tuple[float, int, type[np.integer]] | None:
    """The smallest scale, an offset and the narrowest integer type that hold every value exactly; None if none does."""
    if not np.isfinite(values).all() or np.signbit(values[values == 0.0]).any():
        return None
    for scale in _SCALES:
        scaled = values * scale
        if np.abs(scaled).max() >= _EXACT_INT:
            return None
        whole = np.rint(scaled)
        if (whole / scale == values).all():
            low, high = int(whole.min()), int(whole.max())
            offset = (low + high) // 2
            for int_type in _INT_TYPES:
                info = np.iinfo(int_type)
                if info.min <= low - offset and high - offset <= info.max:
                    return scale, offset, int_type
            return None  # too wide for int32: float64 costs no more than int64
    return None


def _search(ordered: np.ndarray, t_ms: int) -> int:
    """How many of the ascending int64 ``ordered`` are at or before ``t_ms`` (typed key: no array conversion)."""
    return int(ordered.searchsorted(np.int64(t_ms), "right"))


def _bits(value: float) -> int:
    return int.from_bytes(struct.pack("<d", value), "little")
