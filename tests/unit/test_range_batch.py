"""Range vectors read and computed in one batch: the same samples and the same bits as series by series."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.model import STALE_NAN, Labels
from rules.promql import Engine, VectorResult
from rules.promql import functions as fn
from rules.promql.parser import parse
from rules.promql.snapshot import Snapshot
from rules.promql.budget import QueryBudget
from rules.promql.values import RangeBatch, RangeSeries
from rules.store import SeriesStore

# A series: strictly increasing timestamps (gaps of 1 ms to 40 s) and values, some of them resets or markers.
_value = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 1000).map(float), st.just(STALE_NAN), st.just(float("nan"))
)
_series = st.lists(st.tuples(st.integers(1, 40_000), _value), max_size=90)


def _bits(values: np.ndarray) -> list[int]:
    return [struct.unpack("<Q", struct.pack("<d", v))[0] for v in values.tolist()]


def _result_bits(value: float) -> int | str:
    """A result's bits, any NaN as one: a NaN's payload (a stale marker's, quieted) is not part of a result."""
    return "NaN" if math.isnan(value) else _bits(np.array([value]))[0]


def _store(all_points: list[list[tuple[int, float]]], retention_s: float | None) -> SeriesStore:
    store = SeriesStore(retention_s=retention_s)
    for n, points in enumerate(all_points):
        t = 0
        for gap, value in points:
            t += gap
            store.append(Labels.of("m", {"n": str(n)}), t, value)
    return store


@settings(max_examples=150, deadline=None)
@given(st.lists(_series, max_size=4), st.integers(-1000, 2_000_000), st.integers(1, 2_000_000), st.booleans())
def test_window_values_reads_what_window_reads(
    all_points: list[list[tuple[int, float]]], start_ms: int, length_ms: int, evict: bool
) -> None:
    """window_values() is window()'s values with its first and last timestamps, None where window() is empty."""
    store = _store(all_points, 300.0 if evict else None)
    if evict:
        store.evict(max((len(p) for p in all_points), default=0) * 20_000)
    for series in store.select([]):
        t, v = series.window(start_ms, start_ms + length_ms)
        read = series.window_values(start_ms, start_ms + length_ms)
        if not len(t):
            assert read is None
        else:
            assert read is not None
            assert _bits(read[0]) == _bits(v) and (read[1], read[2]) == (int(t[0]), int(t[-1]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_series.filter(bool), max_size=6), st.integers(0, 300_000), st.sampled_from(sorted(fn.RANGE_KERNELS)))
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf and the like: the Engine runs them under np.errstate
def test_batch_kernels_match_the_per_series_kernels(
    all_points: list[list[tuple[int, float]]], extra_ms: int, name: str
) -> None:
    """Every batch kernel gives, bit for bit, what its per-series kernel gives (None where it gives none; NaN as NaN)."""
    series = []
    for points in all_points:
        t = np.cumsum([gap for gap, _ in points]).astype(np.int64)
        series.append(RangeSeries(Labels(), t, np.array([v for _, v in points], dtype=np.float64)))
    end = max(int(s.t[-1]) for s in series) + extra_ms if series else extra_ms
    ctx = fn.RangeContext(-1, end, end, (0.9,))
    batch = RangeBatch.of([s.labels for s in series], [s.t for s in series], [s.v for s in series], [False] * len(series))
    values, has = fn.BATCH_KERNELS[name](batch, ctx)
    for i, s in enumerate(series):
        expected = fn.RANGE_KERNELS[name](s.t, s.v, ctx)
        if expected is None:
            assert has is not None and not has[i]
        else:
            assert has is None or has[i]
            assert _result_bits(values[i]) == _result_bits(expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(_series, max_size=5), st.integers(0, 2_000_000))
def test_live_store_and_snapshot_agree(all_points: list[list[tuple[int, float]]], t_ms: int) -> None:
    """The store's batched read (stale markers dropped in the batch) answers as a snapshot's per-series copy does."""
    store = _store(all_points, None)
    engine = Engine()
    queries = ("rate(m[5m])", "max_over_time(m[1m])", "count_over_time(m[10m])", "last_over_time(m[5m])", "deriv(m[5m])")
    for query in queries:
        expr = parse(query)
        snapshot = Snapshot(expr, t_ms, t_ms, engine.lookback_ms)
        for _ in snapshot.fill(store, QueryBudget(None, None)):
            pass
        live, frozen = engine.instant(expr, store, t_ms), engine.instant(expr, snapshot, t_ms)
        assert isinstance(live, VectorResult) and isinstance(frozen, VectorResult)
        assert [(labels, _bits(np.array([v]))) for labels, v in live.samples] == [
            (labels, _bits(np.array([v]))) for labels, v in frozen.samples
        ]


def test_select_by_labels_is_sorted_and_cached_apart() -> None:
    """select(by_labels=True) sorts by labels; the creation-order answer for the same matchers is kept."""
    store = SeriesStore()
    for job in ("c", "a", "b"):
        store.append(Labels.of("up", {"job": job}), 1000, 1.0)
    assert [s.labels.get("job") for s in store.select([], by_labels=True)] == ["a", "b", "c"]
    assert [s.labels.get("job") for s in store.select([])] == ["c", "a", "b"]
    store.append(Labels.of("up", {"job": "0"}), 1000, 1.0)
    assert [s.labels.get("job") for s in store.select([], by_labels=True)] == ["0", "a", "b", "c"]


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(_finite, min_size=1, max_size=300),
            st.lists(st.floats(-1e3, 1e3), min_size=64, max_size=300),
            st.lists(st.integers(-(2**53), 2**53).map(float), min_size=64, max_size=200),
            st.lists(st.sampled_from([1e16, 1.0, -1e16, 3.0, 0.5, -0.0, 2.0**-60]), min_size=64, max_size=100),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_exact_sums_are_math_fsum(segments: list[list[float]]) -> None:
    """Where exact_sums claims a sum, it is math.fsum's, bit for bit (cancellation, ties, wide exponents)."""
    bounds = np.cumsum([0] + [len(s) for s in segments])
    sums, exact = fn.exact_sums(np.array([x for s in segments for x in s], dtype=np.float64), bounds)
    for i, segment in enumerate(segments):
        if exact[i]:
            assert _bits(sums[i : i + 1]) == _bits(np.array([math.fsum(segment)]))


def test_exact_sums_cover_ordinary_gauges() -> None:
    """A gauge's 300 readings (the benchmark's shape) are summed exactly, not left for math.fsum."""
    v = 50.0 + 5.0 * np.sin(np.arange(600) / 37.0)
    sums, exact = fn.exact_sums(v, np.array([0, 300, 600]))
    assert exact.all()
    assert sums.tolist() == [math.fsum(v[:300].tolist()), math.fsum(v[300:].tolist())]


def test_exact_sums_leave_overflow_and_zero_to_fsum() -> None:
    """A sum past the float64 range or exactly zero is not claimed (math.fsum decides those)."""
    v = np.array([1.7e308] * 64 + [1.0, -1.0] * 32)
    sums, exact = fn.exact_sums(v, np.array([0, 64, 128]))
    assert exact.tolist() == [False, False]


def test_remembered_signatures_keep_each_matching_apart() -> None:
    """Signatures and group labels remembered per series differ by on/ignoring/by/without and their labels."""
    store = SeriesStore()
    for job, instance, value in (("a", "1", 1.0), ("a", "2", 2.0), ("b", "1", 3.0)):
        store.append(Labels.of("x", {"job": job, "instance": instance}), 1000, value)
        store.append(Labels.of("y", {"job": job, "instance": instance}), 1000, 10 * value)
    engine = Engine()

    def values(query: str) -> list[float]:
        result = engine.instant(query, store, 1000)
        assert isinstance(result, VectorResult)
        return sorted(v for _, v in result.samples)

    assert values("x + on (job, instance) y") == [11.0, 22.0, 33.0]
    assert values("x * on (job) group_left y{instance='1'}") == [10.0, 20.0, 90.0]
    assert values("x and on (job) y{instance='2'}") == [1.0, 2.0]
    assert values("x and ignoring (job) y{job='b'}") == [1.0, 3.0]
    assert values("sum by (job) (x)") == [3.0, 3.0]
    assert values("sum without (job) (x)") == [2.0, 4.0]
    assert values("sum by (instance) (x)") == [2.0, 4.0]
