"""The series store: windows, lookback, retention, caps, ordering rules, staleness, index."""

from __future__ import annotations

import math
import struct
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.matchers import Matcher, MatchOp
from rules.model import STALE_NAN, STALE_NAN_BITS, Labels, is_stale_nan
from rules.store import Series, SeriesStore

MINUTE_MS = 60_000
UINT32_SPAN_MS = 2**32  # first offset that no longer fits the compact timestamp encoding


def labels(name: str = "up", **pairs: str) -> Labels:
    return Labels.of(name, pairs)


def only_series(store: SeriesStore, name: str = "up") -> Series:
    (series,) = store.select([Matcher("__name__", MatchOp.EQ, name)])
    return series


def filled(points: list[tuple[int, float]], retention_s: float | None = None) -> Series:
    store = SeriesStore(retention_s=retention_s)
    for t_ms, value in points:
        assert store.append(labels(), t_ms, value)
    return only_series(store)


def bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


# --- window -----------------------------------------------------------------


def test_window_is_left_open_right_closed() -> None:
    """A sample exactly at the start is excluded and one exactly at the end included."""
    series = filled([(1000, 1.0), (2000, 2.0), (3000, 3.0), (4000, 4.0)])
    timestamps, values = series.window(1000, 3000)
    assert timestamps.tolist() == [2000, 3000]
    assert values.tolist() == [2.0, 3.0]


@pytest.mark.parametrize(
    ("start_ms", "end_ms", "expected"),
    [
        (0, 999, []),
        (0, 1000, [1000]),
        (999, 1001, [1000]),
        (3999, 10_000, [4000]),
        (4000, 10_000, []),
        (-5000, 10_000, [1000, 2000, 3000, 4000]),
        (2500, 2500, []),
        (3000, 2000, []),
        (1500, 2999, [2000]),
    ],
)
def test_window_bounds(start_ms: int, end_ms: int, expected: list[int]) -> None:
    """Windows before, after, around and between samples return exactly the samples inside."""
    series = filled([(1000, 1.0), (2000, 2.0), (3000, 3.0), (4000, 4.0)])
    timestamps, values = series.window(start_ms, end_ms)
    assert timestamps.tolist() == expected
    assert values.tolist() == [t / 1000 for t in expected]


def test_window_types() -> None:
    """Windows hold int64 millisecond timestamps and float64 values, even when empty."""
    series = filled([(1000, 1.5)])
    for start_ms, end_ms in [(0, 1000), (1000, 2000)]:
        timestamps, values = series.window(start_ms, end_ms)
        assert timestamps.dtype == np.int64
        assert values.dtype == np.float64


def test_window_values_are_read_only_views() -> None:
    """Values held as float64 come back as a read-only view of the store's buffer, not a copy."""
    series = filled([(t, t / 3) for t in range(1000, 11_000, 1000)])
    _, values = series.window(2000, 6000)
    assert values.base is not None and not values.flags.owndata
    with pytest.raises(ValueError):
        values[0] = 0.0


def test_window_values_held_as_integers_are_read_only_float64() -> None:
    """Values held as scaled integers come back decoded to float64, read-only too."""
    series = filled([(t, t / 1000) for t in range(1000, 11_000, 1000)])
    assert series.encoding == ("grid", "int8", 1.0)
    _, values = series.window(2000, 6000)
    assert values.dtype == np.float64 and values.tolist() == [3.0, 4.0, 5.0, 6.0]
    with pytest.raises(ValueError):
        values[0] = 0.0


def test_window_view_survives_later_appends_and_eviction() -> None:
    """A value slice taken earlier keeps its contents while the buffer grows, compacts and evicts."""
    store = SeriesStore(retention_s=10)
    for t in range(20):
        store.append(labels(), t * 1000, float(t))
    _, values = only_series(store).window(12_000, 16_000)
    for t in range(20, 200):
        store.append(labels(), t * 1000, float(t))
        store.evict(t * 1000)
    assert values.tolist() == [13.0, 14.0, 15.0, 16.0]


def test_window_keeps_stale_markers_bit_exact() -> None:
    """A stale marker comes back from a window with its exact NaN payload."""
    series = filled([(1000, 1.0), (2000, STALE_NAN), (3000, math.nan)])
    _, values = series.window(0, 3000)
    assert bits(values[1]) == STALE_NAN_BITS
    assert is_stale_nan(float(values[1]))
    assert math.isnan(values[2]) and not is_stale_nan(float(values[2]))


def test_negative_timestamps() -> None:
    """Timestamps before the epoch are stored and searched like any other."""
    series = filled([(-3000, 1.0), (-1000, 2.0), (500, 3.0)])
    assert series.window(-3000, 0)[0].tolist() == [-1000]
    assert series.last(-1, 5000) == (-1000, 2.0)


# --- last -------------------------------------------------------------------


def test_last_returns_newest_sample_up_to_end() -> None:
    """``last`` ignores samples after ``end_ms`` and returns the newest one at or before it."""
    series = filled([(1000, 1.0), (2000, 2.0), (3000, 3.0)])
    assert series.last(2500, 5 * MINUTE_MS) == (2000, 2.0)
    assert series.last(3000, 5 * MINUTE_MS) == (3000, 3.0)
    assert series.last(999, 5 * MINUTE_MS) is None


def test_last_lookback_is_left_open() -> None:
    """A sample exactly ``lookback`` old is out of reach; one a millisecond newer is found."""
    series = filled([(1000, 1.0)])
    assert series.last(301_000, 300_000) is None
    assert series.last(300_999, 300_000) == (1000, 1.0)


def test_last_is_none_when_newest_is_stale() -> None:
    """A stale marker hides the older samples still inside the lookback."""
    series = filled([(1000, 1.0), (2000, STALE_NAN)])
    assert series.last(2000, 5 * MINUTE_MS) is None
    assert series.last(1999, 5 * MINUTE_MS) == (1000, 1.0)


def test_last_after_stale_marker_sees_new_sample() -> None:
    """A series that comes back after a stale marker is visible again."""
    series = filled([(1000, 1.0), (2000, STALE_NAN), (3000, 3.0)])
    assert series.last(3000, 5 * MINUTE_MS) == (3000, 3.0)


def test_last_returns_ordinary_nan() -> None:
    """An ordinary NaN value is a sample like any other, unlike the stale marker."""
    series = filled([(1000, math.nan)])
    result = series.last(1000, 1000)
    assert result is not None and result[0] == 1000 and math.isnan(result[1])


# --- append ordering --------------------------------------------------------


def test_out_of_order_sample_is_rejected_and_counted() -> None:
    """A sample older than the newest one is refused and counted."""
    store = SeriesStore()
    assert store.append(labels(), 2000, 1.0)
    assert not store.append(labels(), 1999, 5.0)
    assert store.out_of_order_total == 1
    assert only_series(store).window(0, 5000)[0].tolist() == [2000]


def test_duplicate_with_same_value_is_ignored() -> None:
    """Repeating the newest sample exactly is accepted but not stored twice."""
    store = SeriesStore()
    store.append(labels(), 2000, 1.0)
    assert store.append(labels(), 2000, 1.0)
    assert len(only_series(store)) == 1
    assert store.out_of_order_total == 0
    assert store.duplicate_timestamp_total == 0


def test_duplicate_stale_marker_is_ignored() -> None:
    """Duplicate detection compares value bits, so a repeated NaN marker is a duplicate."""
    store = SeriesStore()
    store.append(labels(), 2000, STALE_NAN)
    assert store.append(labels(), 2000, STALE_NAN)
    assert len(only_series(store)) == 1


def test_duplicate_with_other_value_is_rejected_and_counted() -> None:
    """Same timestamp, different value: refused, counted apart from out-of-order samples."""
    store = SeriesStore()
    store.append(labels(), 2000, 1.0)
    assert not store.append(labels(), 2000, 2.0)
    assert not store.append(labels(), 2000, STALE_NAN)
    assert store.duplicate_timestamp_total == 2
    assert store.out_of_order_total == 0
    assert only_series(store).window(0, 2000)[1].tolist() == [1.0]


def test_ordering_is_per_series() -> None:
    """An older timestamp is fine for a different series."""
    store = SeriesStore()
    assert store.append(labels(job="a"), 2000, 1.0)
    assert store.append(labels(job="b"), 1000, 1.0)
    assert store.out_of_order_total == 0


# --- eviction ---------------------------------------------------------------


def test_evict_drops_samples_older_than_retention() -> None:
    """Eviction keeps samples at or after ``now - retention`` and drops older ones."""
    store = SeriesStore(retention_s=10)
    for t in range(0, 21):
        store.append(labels(), t * 1000, float(t))
    store.evict(20_000)
    assert only_series(store).window(-1, 20_000)[0].tolist() == [t * 1000 for t in range(10, 21)]


def test_evict_removes_empty_series_from_index() -> None:
    """A series whose samples all aged out disappears from counts and selects."""
    store = SeriesStore(retention_s=60)
    store.append(labels(job="old"), 0, 1.0)
    store.append(labels(job="new"), 50_000, 1.0)
    store.evict(100_000)
    assert store.series_count == 1
    assert store.select([Matcher("job", MatchOp.EQ, "old")]) == []
    assert [s.labels for s in store.select([])] == [labels(job="new")]


def test_evicted_series_can_come_back() -> None:
    """After eviction the same labels start a fresh series."""
    store = SeriesStore(retention_s=60)
    store.append(labels(), 500_000, 1.0)
    store.evict(600_000)
    assert store.series_count == 0
    assert store.append(labels(), 590_000, 2.0)
    assert only_series(store).window(0, 600_000)[1].tolist() == [2.0]


def test_sample_older_than_retention_cutoff_is_refused() -> None:
    """After an eviction at ``now``, a sample older than ``now - retention`` is refused and counted."""
    store = SeriesStore(retention_s=60)
    store.evict(600_000)
    assert not store.append(labels(), 539_999, 1.0)
    assert store.out_of_order_total == 1
    assert store.series_count == 0
    assert store.append(labels(), 540_000, 1.0)


def test_expired_samples_vanish_from_reads_at_once() -> None:
    """Eviction hides expired samples from ``window``, ``last`` and ``len`` before any memory is reused."""
    store = SeriesStore(retention_s=10)
    store.append(labels(), 0, 1.0)
    store.append(labels(), 15_000, 2.0)
    store.evict(15_000)
    series = only_series(store)
    assert series.window(-1, 15_000)[0].tolist() == [15_000]
    assert series.last(4_000, 10_000) is None
    assert len(series) == 1


def test_evict_cutoff_never_moves_back() -> None:
    """An eviction with an earlier clock does not bring expired samples back."""
    store = SeriesStore(retention_s=10)
    for t in range(0, 21):
        store.append(labels(), t * 1000, float(t))
    store.evict(20_000)
    store.evict(12_000)
    assert only_series(store).window(-1, 20_000)[0][0] == 10_000


def test_evict_without_retention_keeps_everything() -> None:
    """With retention None nothing is ever evicted."""
    store = SeriesStore(retention_s=None)
    store.append(labels(), 0, 1.0)
    store.evict(10**15)
    assert len(only_series(store)) == 1


def test_steady_state_capacity_is_bounded() -> None:
    """A 15 s series under 10 min retention, evicted each cycle, keeps a small fixed buffer."""
    store = SeriesStore(retention_s=600)
    capacities = set()
    for cycle in range(400):
        now_ms = cycle * 15_000
        store.append(labels(), now_ms, float(cycle))
        store.evict(now_ms)
        if cycle >= 200:
            capacities.add(only_series(store).capacity)
    series = only_series(store)
    assert len(series) == 41
    assert max(capacities) <= 41 + 41 // 8 + 4


# --- series cap -------------------------------------------------------------


def test_series_cap_refuses_and_counts_new_series() -> None:
    """Beyond ``max_series`` new series are refused and counted; existing ones still accept."""
    store = SeriesStore(max_series=2)
    assert store.append(labels(job="a"), 1000, 1.0)
    assert store.append(labels(job="b"), 1000, 1.0)
    assert not store.append(labels(job="c"), 1000, 1.0)
    assert not store.append(labels(job="c"), 2000, 1.0)
    assert store.append(labels(job="a"), 2000, 2.0)
    assert store.series_count == 2
    assert store.refused_series_total == 2
    assert store.select([Matcher("job", MatchOp.EQ, "c")]) == []


def test_series_cap_frees_room_after_eviction() -> None:
    """Evicting a series makes room for a new one under the cap."""
    store = SeriesStore(retention_s=60, max_series=1)
    store.append(labels(job="a"), 0, 1.0)
    assert not store.append(labels(job="b"), 10_000, 1.0)
    store.evict(120_000)
    assert store.append(labels(job="b"), 120_000, 1.0)
    assert store.refused_series_total == 1


@pytest.mark.parametrize(("retention_s", "max_series"), [(0, 10), (-1, 10), (math.nan, 10), (60, 0)])
def test_bad_settings_are_value_errors(retention_s: float, max_series: int) -> None:
    """Non-positive retention or a cap below one is refused with a clear message."""
    with pytest.raises(ValueError, match="must be"):
        SeriesStore(retention_s=retention_s, max_series=max_series)


# --- ingest staleness -------------------------------------------------------


def values_of(store: SeriesStore, job: str) -> list[float]:
    (series,) = store.select([Matcher("job", MatchOp.EQ, job)])
    values: list[float] = series.window(-1, 10**9)[1].tolist()
    return values


def test_ingest_marks_vanished_series_stale_once() -> None:
    """A series missing from the next collection gets one stale marker at that collection's time."""
    store = SeriesStore()
    store.ingest("host", [(labels(job="a"), 1.0), (labels(job="b"), 2.0)], 1000)
    store.ingest("host", [(labels(job="a"), 1.5)], 2000)
    store.ingest("host", [(labels(job="a"), 1.7)], 3000)
    (b,) = store.select([Matcher("job", MatchOp.EQ, "b")])
    timestamps, values = b.window(0, 3000)
    assert timestamps.tolist() == [1000, 2000]
    assert is_stale_nan(float(values[1]))
    assert b.last(3000, 5 * MINUTE_MS) is None
    assert values_of(store, "a") == [1.0, 1.5, 1.7]


def test_ingest_series_returns_after_stale_marker() -> None:
    """A series reported again after vanishing continues after its marker."""
    store = SeriesStore()
    store.ingest("host", [(labels(job="a"), 1.0)], 1000)
    store.ingest("host", [], 2000)
    store.ingest("host", [(labels(job="a"), 3.0)], 3000)
    (a,) = store.select([])
    assert a.last(3000, 5 * MINUTE_MS) == (3000, 3.0)
    assert len(a) == 3


def test_sources_are_independent() -> None:
    """One source's collection never marks another source's series stale."""
    store = SeriesStore()
    store.ingest("host", [(labels(job="h"), 1.0)], 1000)
    store.ingest("scrape:api", [(labels(job="s"), 1.0)], 1000)
    store.ingest("scrape:api", [(labels(job="s"), 2.0)], 2000)
    assert values_of(store, "h") == [1.0]


def test_end_source_marks_all_its_series_stale() -> None:
    """Removing a source gives every series it last reported a stale marker."""
    store = SeriesStore()
    store.ingest("scrape:api", [(labels(job="a"), 1.0), (labels(job="b"), 2.0)], 1000)
    store.end_source("scrape:api", 5000)
    for series in store.select([]):
        assert series.last(5000, 5 * MINUTE_MS) is None
        assert series.window(1000, 5000)[0].tolist() == [5000]
    store.end_source("scrape:api", 6000)
    assert all(len(s) == 2 for s in store.select([]))


def test_end_source_of_unknown_source_is_a_no_op() -> None:
    """Ending a source that never reported changes nothing."""
    store = SeriesStore()
    store.end_source("nobody", 1000)
    assert store.series_count == 0


def test_stale_marking_does_not_revive_evicted_series() -> None:
    """A vanished series already evicted is not recreated just to hold a marker."""
    store = SeriesStore(retention_s=1)
    store.ingest("host", [(labels(job="a"), 1.0)], 1000)
    store.evict(10_000)
    store.ingest("host", [], 10_000)
    assert store.series_count == 0


def test_ingest_respects_series_cap() -> None:
    """Ingested series beyond the cap are refused, counted, and never marked stale."""
    store = SeriesStore(max_series=1)
    store.ingest("host", [(labels(job="a"), 1.0), (labels(job="b"), 1.0)], 1000)
    store.ingest("host", [], 2000)
    assert store.refused_series_total == 1
    assert store.series_count == 1


def test_ingest_out_of_order_sample_keeps_series_reported() -> None:
    """A collection whose sample is refused as out of order does not make its series stale."""
    store = SeriesStore()
    store.append(labels(job="a"), 5000, 1.0)
    store.ingest("host", [(labels(job="a"), 2.0)], 1000)
    store.ingest("host", [(labels(job="a"), 3.0)], 6000)
    assert values_of(store, "a") == [1.0, 3.0]
    assert store.out_of_order_total == 1


# --- select and the index ---------------------------------------------------


@pytest.fixture
def fleet() -> SeriesStore:
    store = SeriesStore()
    for name, pairs in [
        ("up", {"job": "api", "zone": "eu"}),
        ("up", {"job": "web", "zone": "us"}),
        ("up", {"job": "db"}),
        ("http_requests_total", {"job": "api", "code": "200"}),
        ("http_requests_total", {"job": "api", "code": "500"}),
    ]:
        store.append(Labels.of(name, pairs), 1000, 1.0)
    return store


def selected(store: SeriesStore, *matchers: Matcher) -> list[str]:
    return [str(s.labels) for s in store.select(list(matchers))]


def test_select_by_name_and_label(fleet: SeriesStore) -> None:
    """Equality matchers intersect, and results keep creation order."""
    assert selected(fleet, Matcher("__name__", MatchOp.EQ, "up")) == [
        'up{job="api", zone="eu"}',
        'up{job="web", zone="us"}',
        'up{job="db"}',
    ]
    assert selected(fleet, Matcher("job", MatchOp.EQ, "api"), Matcher("code", MatchOp.EQ, "500")) == [
        'http_requests_total{code="500", job="api"}'
    ]


def test_select_unknown_value_is_empty(fleet: SeriesStore) -> None:
    """An equality matcher on an unknown value or label selects nothing."""
    assert selected(fleet, Matcher("__name__", MatchOp.EQ, "nope")) == []
    assert selected(fleet, Matcher("nolabel", MatchOp.EQ, "x")) == []


def test_select_negative_and_regex_filters(fleet: SeriesStore) -> None:
    """``!=``, ``=~`` and ``!~`` filter candidates, treating a missing label as empty."""
    up = Matcher("__name__", MatchOp.EQ, "up")
    assert selected(fleet, up, Matcher("zone", MatchOp.NE, "eu")) == ['up{job="web", zone="us"}', 'up{job="db"}']
    assert selected(fleet, up, Matcher("zone", MatchOp.RE, "e.|u.")) == [
        'up{job="api", zone="eu"}',
        'up{job="web", zone="us"}',
    ]
    assert selected(fleet, up, Matcher("zone", MatchOp.NRE, "e.*")) == ['up{job="web", zone="us"}', 'up{job="db"}']
    assert selected(fleet, up, Matcher("zone", MatchOp.EQ, "")) == ['up{job="db"}']
    assert selected(fleet, up, Matcher("zone", MatchOp.NE, "")) == [
        'up{job="api", zone="eu"}',
        'up{job="web", zone="us"}',
    ]


def test_select_regex_only_keeps_creation_order(fleet: SeriesStore) -> None:
    """A regex on the name alone gathers from several index entries in creation order."""
    assert selected(fleet, Matcher("__name__", MatchOp.RE, "up|http_.*"), Matcher("job", MatchOp.RE, "api|db")) == [
        'up{job="api", zone="eu"}',
        'up{job="db"}',
        'http_requests_total{code="200", job="api"}',
        'http_requests_total{code="500", job="api"}',
    ]


def test_select_matching_empty_scans_all(fleet: SeriesStore) -> None:
    """Matchers that accept a missing label select from every series."""
    assert len(fleet.select([])) == 5
    assert len(fleet.select([Matcher("job", MatchOp.RE, ".*")])) == 5
    assert selected(fleet, Matcher("code", MatchOp.EQ, "")) == [
        'up{job="api", zone="eu"}',
        'up{job="web", zone="us"}',
        'up{job="db"}',
    ]


class CountingMatcher(Matcher):
    """A matcher that counts how often it is asked, to see what the store scans."""

    calls: list[str] = []

    def matches(self, value: str) -> bool:
        CountingMatcher.calls.append(value)
        return super().matches(value)


def test_name_equality_does_not_scan_other_series() -> None:
    """With ``__name__=`` the other matchers see only that metric's series."""
    store = SeriesStore()
    for i in range(300):
        store.append(labels("noise", i=str(i)), 1000, 1.0)
    store.append(labels("target", i="7"), 1000, 1.0)
    CountingMatcher.calls = []
    found = store.select([Matcher("__name__", MatchOp.EQ, "target"), CountingMatcher("i", MatchOp.RE, "[0-9]+")])
    assert [s.labels for s in found] == [labels("target", i="7")]
    assert CountingMatcher.calls == ["7"]


def test_name_regex_tests_label_values_not_series() -> None:
    """A name regex is evaluated once per distinct metric name, not once per series."""
    store = SeriesStore()
    for i in range(300):
        store.append(labels("noise", i=str(i)), 1000, 1.0)
    store.append(labels("target"), 1000, 1.0)
    CountingMatcher.calls = []
    found = store.select([CountingMatcher("__name__", MatchOp.RE, "targ.*")])
    assert [s.labels for s in found] == [labels("target")]
    assert sorted(CountingMatcher.calls) == ["", "noise", "target"]


# --- compact timestamps and rebasing ----------------------------------------


def test_samples_further_apart_than_compact_offsets_stay_exact() -> None:
    """Samples more than 2**32 ms apart are kept with exact timestamps."""
    points = [(1000, 1.0), (1000 + UINT32_SPAN_MS, 2.0), (1000 + 3 * UINT32_SPAN_MS, 3.0)]
    series = filled(points)
    timestamps, values = series.window(0, 10 * UINT32_SPAN_MS)
    assert timestamps.tolist() == [t for t, _ in points]
    assert values.tolist() == [1.0, 2.0, 3.0]
    assert series.last(1000 + UINT32_SPAN_MS, 1) == (1000 + UINT32_SPAN_MS, 2.0)
    assert series.window(1000, 1000 + UINT32_SPAN_MS - 1)[0].tolist() == []


def test_largest_compact_offset_is_exact() -> None:
    """A sample exactly 2**32 - 1 ms after the first still round-trips exactly."""
    series = filled([(5, 1.0), (5 + UINT32_SPAN_MS - 1, 2.0), (5 + UINT32_SPAN_MS, 3.0)])
    assert series.window(4, 5 + UINT32_SPAN_MS)[0].tolist() == [5, 4 + UINT32_SPAN_MS, 5 + UINT32_SPAN_MS]


def test_rebase_after_eviction_keeps_timestamps_compact() -> None:
    """Once old samples age out, a far-future sample rebases instead of widening storage."""
    store = SeriesStore(retention_s=60)
    for t in range(10):
        store.append(labels(), t * 1000, float(t))
    later_ms = 3 * UINT32_SPAN_MS
    store.append(labels(), later_ms, 99.0)
    store.evict(later_ms)
    for t in range(1, 40):
        store.append(labels(), later_ms + t * 1000, float(t))
    series = only_series(store)
    assert series.window(later_ms - 1, later_ms + 3000)[0].tolist() == [later_ms, later_ms + 1000, later_ms + 2000, later_ms + 3000]
    assert series.last(later_ms + 39_000, 1000) == (later_ms + 39_000, 39.0)


def test_series_at_unix_time_scale() -> None:
    """Real epoch-millisecond timestamps (around 1.7e12) are stored exactly."""
    base_ms = 1_700_000_000_123
    series = filled([(base_ms + i * 15_000, float(i)) for i in range(100)])
    timestamps, _ = series.window(base_ms + 15_000 * 97, base_ms + 15_000 * 99)
    assert timestamps.tolist() == [base_ms + 15_000 * 98, base_ms + 15_000 * 99]


# --- compact values and grid timestamps -------------------------------------


@pytest.mark.parametrize(
    ("values", "encoding"),
    [
        ([float(n % 100) for n in range(50)], ("int8", 1.0)),
        ([2.0**34 + n * 4096.0 for n in range(50)], ("int32", 1.0)),
        ([20.3, 45.1, 79.9, -0.5, 0.0], ("int16", 10.0)),
        ([0.25, 0.5, 1.125], ("int16", 1000.0)),
        ([1 / 3, 2.0], ("float64", 0.0)),
        ([2.0**53, 1.0], ("float64", 0.0)),
        ([1.0, -0.0], ("float64", 0.0)),
        ([1.0, math.inf], ("float64", 0.0)),
        ([1.0, STALE_NAN], ("float64", 0.0)),
    ],
)
def test_values_are_held_in_the_narrowest_exact_encoding(values: list[float], encoding: tuple[str, float]) -> None:
    """Integers, byte counts and decimals are held as scaled integers, anything else as float64, and all read back bit-exact."""
    series = filled([(1000 * (i + 1), v) for i, v in enumerate(values)])
    assert series.encoding[1:] == encoding
    _, held = series.window(0, 1000 * len(values))
    assert [bits(v) for v in held.tolist()] == [bits(v) for v in values]
    newest = series.last(1000 * len(values), 1000)
    assert (None if newest is None else bits(newest[1])) == (None if is_stale_nan(values[-1]) else bits(values[-1]))


def test_a_value_that_does_not_fit_widens_the_buffer_without_touching_earlier_reads() -> None:
    """int8 -> int16 -> scaled int16 -> float64 as values arrive; every value and an earlier read stay exact."""
    store = SeriesStore(retention_s=None)
    arrivals = [(1.0, ("int8", 1.0)), (1000.0, ("int16", 1.0)), (0.5, ("int16", 10.0)), (STALE_NAN, ("float64", 0.0))]
    reads = []
    for i, (value, encoding) in enumerate(arrivals):
        store.append(labels(), (i + 1) * 1000, value)
        assert only_series(store).encoding[1:] == encoding
        reads.append(only_series(store).window(0, 10_000)[1])
    assert [bits(v) for v in reads[-1].tolist()] == [bits(v) for v, _ in arrivals]
    assert reads[0].tolist() == [1.0] and reads[1].tolist() == [1.0, 1000.0]


def test_the_buffer_narrows_again_once_the_odd_value_has_expired() -> None:
    """A stale marker holds the buffer in float64 only until it expires and the buffer is reallocated."""
    store = SeriesStore(retention_s=10)
    store.append(labels(), 0, STALE_NAN)
    for t in range(1, 60):
        store.append(labels(), t * 1000, float(t))
        store.evict(t * 1000)
    assert only_series(store).encoding == ("grid", "int8", 1.0)
    assert only_series(store).window(49_000, 59_000)[1].tolist() == [float(t) for t in range(50, 60)]


def test_timestamps_off_the_grid_are_held_as_offsets_and_stay_exact() -> None:
    """Evenly spaced samples need no per-sample timestamps; the first jittered one moves the buffer to offsets."""
    base_ms = 1_700_000_000_000
    on_grid = [base_ms + i * 15_000 for i in range(10)]
    series = filled([(t, 1.0) for t in on_grid])
    assert series.encoding[0] == "grid"
    assert series.window(on_grid[2], on_grid[6] + 1)[0].tolist() == on_grid[3:7]
    assert series.last(on_grid[4] + 14_999, 15_000) == (on_grid[4], 1.0)
    jittered = on_grid + [on_grid[-1] + 15_003, on_grid[-1] + 29_998]
    series = filled([(t, 1.0) for t in jittered])
    assert series.encoding[0] == "uint32"
    assert series.window(on_grid[7], jittered[-1])[0].tolist() == jittered[8:]


def test_the_buffer_returns_to_the_grid_once_the_jitter_has_expired() -> None:
    """A late sample moves the buffer to offsets only until it expires and the buffer is reallocated."""
    store = SeriesStore(retention_s=10)
    times = [0, 1000, 2500] + [2500 + i * 1000 for i in range(1, 60)]
    for t in times:
        store.append(labels(), t, 1.0)
        store.evict(t)
    series = only_series(store)
    assert series.encoding[0] == "grid"
    assert series.window(times[-4], times[-1])[0].tolist() == times[-3:]


# --- memory -----------------------------------------------------------------


def test_memory_per_retained_sample_is_at_most_16_bytes() -> None:
    """100 series of 3,600 one-second samples cost <= 16 bytes a sample, all overhead included."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = SeriesStore(retention_s=3600)
        names = [labels("mem_test", instance=f"host-{i}", job="bench") for i in range(100)]
        for t in range(3600):
            for name in names:
                store.append(name, t * 1000, 0.5)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (after - before) / (100 * 3600) <= 16


@pytest.mark.parametrize(("jitter_ms", "limit"), [(0, 8.0), (3, 11.0)])
def test_memory_per_sample_of_gauges_at_one_second(jitter_ms: int, limit: float) -> None:
    """bench.sample_bytes' data (a quarter each: ratios, byte counts, one-decimal readings, counts) costs <= 8 bytes
    a sample on an exact 1 s grid and <= 11 with a few ms of jitter, counted as that benchmark does (15 to 105)."""
    count = 200
    rng = np.random.default_rng(7)
    names = [labels("gauge", device=str(i)) for i in range(count)]
    kinds = np.arange(count) % 4
    store = SeriesStore(retention_s=600)
    tracemalloc.start()
    try:
        for second in range(105):
            if second == 15:
                few = tracemalloc.get_traced_memory()[0]
            values = np.select(
                [kinds == 0, kinds == 1, kinds == 2],
                [rng.random(count), (np.arange(count) + 1) * 2.0**24 + rng.integers(0, 2**20, count),
                 np.round(20.0 + 60.0 * rng.random(count), 1)],
                rng.integers(0, 100, count).astype(np.float64),
            )
            t_ms = second * 1000 + int(rng.integers(-jitter_ms, jitter_ms + 1))
            store.ingest("bench", list(zip(names, values.tolist(), strict=True)), t_ms)
        many = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (many - few) / (90 * count) <= limit


# --- property: window and last agree with a plain list ----------------------


class NaiveSeries:
    """The obvious list implementation the store must agree with."""

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []
        self.cutoff_ms: int | None = None

    def append(self, t_ms: int, value: float) -> bool:
        if self.cutoff_ms is not None and t_ms < self.cutoff_ms:
            return False
        if self.points and t_ms <= self.points[-1][0]:
            return t_ms == self.points[-1][0] and bits(value) == bits(self.points[-1][1])
        self.points.append((t_ms, value))
        return True

    def evict(self, cutoff_ms: int) -> None:
        self.cutoff_ms = cutoff_ms if self.cutoff_ms is None else max(self.cutoff_ms, cutoff_ms)
        self.points = [(t, v) for t, v in self.points if t >= self.cutoff_ms]

    def window(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        return [(t, bits(v)) for t, v in self.points if start_ms < t <= end_ms]

    def last(self, end_ms: int, lookback_ms: int) -> tuple[int, int] | None:
        inside = [(t, v) for t, v in self.points if t <= end_ms]
        if not inside or inside[-1][0] <= end_ms - lookback_ms or is_stale_nan(inside[-1][1]):
            return None
        return inside[-1][0], bits(inside[-1][1])


gaps = st.one_of(
    st.just(1000),
    st.integers(-3, 3),
    st.integers(1, 20_000),
    st.integers(UINT32_SPAN_MS - 3, UINT32_SPAN_MS + 3),
)
sample_values = st.one_of(
    st.floats(allow_nan=False),
    st.just(STALE_NAN),
    st.just(math.nan),
    st.just(1.0),
    st.integers(-(2**40), 2**40).map(float),
    st.integers(-300, 300).map(lambda n: n / 10),
)
operations = st.lists(
    st.one_of(st.tuples(st.just("append"), gaps, sample_values), st.tuples(st.just("evict"), gaps)),
    max_size=150,
)
queries = st.lists(st.tuples(st.integers(-5, 5), st.integers(-30_000, 2 * UINT32_SPAN_MS)), max_size=8)


@settings(max_examples=250, deadline=None, database=None)
@given(retention_s=st.sampled_from([None, 5.0, 60.0]), ops=operations, query_specs=queries)
def test_window_and_last_match_naive_list(
    retention_s: float | None,
    ops: list[tuple[Any, ...]],
    query_specs: list[tuple[int, int]],
) -> None:
    """Random appends, evictions and reads agree with a plain list of samples."""
    store = SeriesStore(retention_s=retention_s)
    naive = NaiveSeries()
    clock_ms = 0
    for op in ops:
        clock_ms += op[1]
        if op[0] == "append":
            assert store.append(labels(), clock_ms, op[2]) == naive.append(clock_ms, op[2])
        elif retention_s is not None:
            store.evict(clock_ms)
            naive.evict(clock_ms - int(retention_s * 1000))
    found = store.select([])
    assert len(found) == (1 if naive.points else 0)
    if not found:
        return
    series = found[0]
    assert len(series) == len(naive.points)
    anchors = [t for t, _ in naive.points]
    for pick, length in query_specs:
        end_ms = anchors[pick % len(anchors)] + pick
        timestamps, values = series.window(end_ms - length, end_ms)
        assert list(zip(timestamps.tolist(), [bits(v) for v in values.tolist()])) == naive.window(
            end_ms - length, end_ms
        )
        got = series.last(end_ms, abs(length) + 1)
        expected = naive.last(end_ms, abs(length) + 1)
        assert (None if got is None else (got[0], bits(got[1]))) == expected


def test_retention_can_grow_while_running() -> None:
    """Raising retention keeps samples the old retention would have evicted from then on."""
    store = SeriesStore(retention_s=60)
    labels = Labels.of("x")
    for second in range(0, 300, 10):
        store.append(labels, second * 1000, float(second))
        store.evict(second * 1000)
    store.retention_s = 600
    assert store.retention_s == 600
    for second in range(300, 600, 10):
        store.append(labels, second * 1000, float(second))
        store.evict(second * 1000)
    (series,) = store.select([Matcher("__name__", MatchOp.EQ, "x")])
    timestamps, _ = series.window(0, 600_000)
    assert timestamps[0] == 230_000  # the oldest the 60 s retention still held at 290 s, kept since


def test_select_sees_series_created_and_forgotten_after_an_earlier_select() -> None:
    """A remembered select answer is dropped when a series is created or evicted."""
    store = SeriesStore(retention_s=60)
    up = [Matcher("__name__", MatchOp.EQ, "up"), Matcher("job", MatchOp.RE, "a|b")]
    store.append(Labels.of("up", {"job": "a"}), 1_000, 1.0)
    assert len(store.select(up)) == 1
    store.append(Labels.of("up", {"job": "b"}), 100_000, 1.0)
    assert len(store.select(up)) == 2
    store.evict(120_000)
    assert [s.labels for s in store.select(up)] == [Labels.of("up", {"job": "b"})]


def test_scraped_series_have_their_own_budget_within_the_cap() -> None:
    """Scrapes stop at their pool's limit, leaving the rest of max_series to the host and the agent's own series."""
    store = SeriesStore(max_series=10, pool_limits={"scrape": 6})
    store.ingest("scrape:big", [(labels("big", i=str(i)), 1.0) for i in range(8)], 1000)
    store.ingest("host", [(labels("node_load1", cpu=str(i)), 1.0) for i in range(4)], 1000)
    assert store.series_count == 10 and store.refused_series_total == 2
    assert len(store.select([Matcher("__name__", MatchOp.EQ, "node_load1")])) == 4
    store.ingest("self", [(labels("healwatch_up"), 1.0)], 1000)
    assert store.refused_series_total == 3  # the cap itself still holds


def test_a_forgotten_scraped_series_gives_its_place_back() -> None:
    """Evicting scraped series frees room in the scrape pool for new ones."""
    store = SeriesStore(retention_s=60, max_series=10, pool_limits={"scrape": 2})
    store.ingest("scrape:a", [(labels("a", i="1"), 1.0), (labels("a", i="2"), 1.0)], 1000)
    store.evict(1000 + 61_000)
    store.ingest("scrape:b", [(labels("b", i="1"), 1.0), (labels("b", i="2"), 1.0)], 1000 + 61_000)
    assert store.series_count == 2 and store.refused_series_total == 0


def test_a_pool_limit_above_the_cap_is_an_error() -> None:
    """A pool may not be promised more series than the store holds."""
    with pytest.raises(ValueError, match="pool 'scrape' limit 11 exceeds max_series 10"):
        SeriesStore(max_series=10, pool_limits={"scrape": 11})
