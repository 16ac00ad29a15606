"""One series' samples in time order, held in compact numpy buffers.

Timestamps: while a buffer's samples are evenly spaced (a fixed scrape or
evaluation interval, timestamps on its grid) they are held as a first
timestamp and a step, no bytes per sample; from the first sample off that
grid on, as offsets in milliseconds from a base: uint32 while the retained
span fits in 2**32 ms (about 49.7 days), int64 otherwise.

Values are held exactly, bit for bit: as scaled integers while every value of
the buffer is ``(offset + q) / scale`` for a power of ten ``scale`` and an int8,
int16 or int32 ``q`` (integer counts and byte counts, decimal readings: 1-4
bytes), otherwise as float64 (full-mantissa values, NaNs with their payload
such as the stale marker, infinities, -0.0). A sample that does not fit the
current encoding re-encodes the buffer into fresh, wider arrays; a
reallocation picks the narrowest encoding of what is left.

Samples live in ``[0, end)`` of append-only arrays. Retention is applied
lazily: the store moves a shared cutoff, reads never look below it, and the
expired samples' slots are reclaimed when the buffer next fills up, by copying
the live part into fresh arrays sized from the retention (never blind
doubling). So evicting touches no buffer, and a full buffer is copied at most
once per ``live // 8`` appends.

Reads find their bounds by arithmetic on the grid or by binary search of the
offsets, and decode only the slice they return: their cost grows with the
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
_ON_GRID = np.empty(0, dtype=np.uint32)  # the offsets of a buffer on its grid: none held
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
        "_base",
        "_step",
        "_offsets",
        "_max_offset",
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
        self._base = 0  # the timestamp of position 0
        self._step = 1  # on the grid: position i is at base + i * step (adopted from the second sample)
        self._offsets: np.ndarray = _ON_GRID  # off the grid: position i is at base + offsets[i]
        self._max_offset = _WIDE_MAX_OFFSET  # the largest offset the offsets' type holds (a grid needs none)
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
    def encoding(self) -> tuple[str, str, float]:
        """How samples are held: "grid" or the offsets' type, the values' type and scale (0.0 for float64)."""
        on_grid = self._offsets is _ON_GRID
        return "grid" if on_grid else self._offsets.dtype.name, self._values.dtype.name, self._scale

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
        return self._times(lo, hi), self._decoded(lo, hi)

    def window_values(self, start_ms: int, end_ms: int) -> tuple[np.ndarray, int, int] | None:
        """``window()``'s values with only its first and last timestamps (None if empty): no timestamp array."""
        lo = self._index_after(max(start_ms, self._retention.cutoff_ms - 1))
        hi = self._index_after(end_ms)
        if hi <= lo:
            return None
        return self._decoded(lo, hi), self._time_at(lo), self._time_at(hi - 1)

    def last(self, end_ms: int, lookback_ms: int) -> tuple[int, float] | None:
        """Newest sample in ``(end_ms - lookback_ms, end_ms]``, or None if absent or a stale marker."""
        hi = self._index_after(end_ms)
        if hi == 0:
            return None
        t_ms = self._time_at(hi - 1)
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
        if self._end == len(self._values) or t_ms - self._base > self._max_offset:
            self._make_room(t_ms, value)
        end = self._end
        if end == 0:
            self._base = t_ms
        elif self._offsets is _ON_GRID:
            if end == 1:
                self._step = t_ms - self._base
            elif t_ms != self._base + end * self._step:
                self._leave_grid(t_ms)
        if self._offsets is not _ON_GRID:
            self._offsets[end] = t_ms - self._base
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

    def _index_after(self, t_ms: int) -> int:
        """Buffer position of the first held sample newer than ``t_ms``."""
        if self._last_t is None or t_ms >= self._last_t:
            return self._end
        offset = t_ms - self._base
        if offset < 0:
            return 0
        if self._offsets is _ON_GRID:
            return offset // self._step + 1
        held = self._offsets[: self._end]
        # A typed key: with a Python int numpy converts the whole array first.
        return int(held.searchsorted(held.dtype.type(offset), "right"))

    def _times(self, lo: int, hi: int) -> np.ndarray:
        """int64 timestamps of positions ``[lo, hi)``, a fresh array."""
        if self._offsets is _ON_GRID:
            step = self._step
            return np.arange(self._base + lo * step, self._base + hi * step, step, dtype=np.int64)
        times = self._offsets[lo:hi].astype(np.int64)
        times += self._base
        return times

    def _time_at(self, position: int) -> int:
        if self._offsets is _ON_GRID:
            return self._base + position * self._step
        return self._base + int(self._offsets[position])

    def _leave_grid(self, next_t_ms: int) -> None:
        """Hold the grid's timestamps as offsets that can also take ``next_t_ms``, from now on."""
        end = self._end
        wide = next_t_ms - self._base > _NARROW_MAX_OFFSET
        self._offsets = np.empty(len(self._values), dtype=np.int64 if wide else np.uint32)
        self._offsets[:end] = np.arange(end, dtype=np.int64) * self._step
        self._max_offset = _WIDE_MAX_OFFSET if wide else _NARROW_MAX_OFFSET

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
        """Drop expired samples, then copy the rest into fresh arrays that can take the next sample."""
        lo = self._first_unexpired()
        live = self._end - lo
        if live == 0:
            self._end = 0
            self._offsets, self._max_offset = _ON_GRID, _WIDE_MAX_OFFSET
            return
        first_t = self._time_at(lo)
        full = self._end == len(self._values)
        capacity = self._capacity_for(live, first_t) if full else len(self._values)
        if self._offsets is _ON_GRID and next_t_ms == self._time_at(self._end - 1) + self._step:
            self._base = first_t  # still on the grid
        else:
            self._set_times(self._times(lo, self._end), capacity, next_t_ms)
        if self._scale and self._narrow(next_value) is not None:
            values = np.empty(capacity, dtype=self._values.dtype)  # the encoding still holds: no re-encoding
            values[:live] = self._values[lo : self._end]
            self._values = values
        else:
            self._set_values(self._decoded(lo, self._end), capacity, next_value)
        self._end = live

    def _set_times(self, held: np.ndarray, capacity: int, next_t_ms: int) -> None:
        """Hold the int64 timestamps ``held`` (at least one) from position 0, on a grid if they and ``next_t_ms`` are."""
        self._base = first_t = int(held[0])
        gaps = np.diff(held)
        step = int(gaps[0]) if len(gaps) else next_t_ms - first_t
        if (gaps == step).all() and next_t_ms - int(held[-1]) == step:
            self._step, self._offsets, self._max_offset = step, _ON_GRID, _WIDE_MAX_OFFSET
            return
        wide = next_t_ms - first_t > _NARROW_MAX_OFFSET
        self._offsets = np.empty(capacity, dtype=np.int64 if wide else np.uint32)
        self._offsets[: len(held)] = held - first_t
        self._max_offset = _WIDE_MAX_OFFSET if wide else _NARROW_MAX_OFFSET

    def _set_values(self, held: np.ndarray, capacity: int, next_value: float) -> None:
        """Store the float64 values ``held`` in fresh arrays, in the narrowest exact encoding that also takes ``next_value``."""
        live = len(held)
        encoding = _encoding(held, next_value)
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


def _scale_of(value: float) -> float | None:
    """The smallest scale that makes ``value`` an exact integer, or None (a quick test before a whole buffer's)."""
    for scale in _SCALES:
        scaled = value * scale
        if not -_EXACT_INT < scaled < _EXACT_INT:  # every NaN fails too
            return None
        if round(scaled) / scale == value:
            return None if value == 0.0 and math.copysign(1.0, value) < 0 else scale
    return None


def _encoding(values: np.ndarray, next_value: float) -> tuple[float, int, type[np.integer]] | None:
    """The smallest scale, an offset and the narrowest integer type that hold every value exactly; None if none does."""
    least = _scale_of(next_value)
    if least is None:
        return None
    values = np.append(values, next_value)
    if not np.isfinite(values).all() or np.signbit(values[values == 0.0]).any():
        return None
    for scale in _SCALES[_SCALES.index(least) :]:
        scaled = values * scale
        if np.abs(scaled).max() >= _EXACT_INT:
            return None
        whole = np.rint(scaled)
        if (whole / scale == values).all():
            low, high = int(whole.min()), int(whole.max())
            for int_type in _INT_TYPES:
                info = np.iinfo(int_type)
                for offset in (0, (low + high) // 2):  # no offset to add on reads, if that fits
                    if info.min <= low - offset and high - offset <= info.max:
                        return scale, offset, int_type
            return None  # too wide for int32: float64 costs no more than int64
    return None


def _bits(value: float) -> int:
    return int.from_bytes(struct.pack("<d", value), "little")
