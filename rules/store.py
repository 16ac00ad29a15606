"""The in-memory series store: sample windows per series, a label index, staleness.

Collectors write whole collections with ``ingest``; the rule engine finds series
with ``select`` and reads them with ``Series.window`` and ``Series.last``.
Timestamps are int milliseconds since the epoch, values float64.

Not thread-safe, and needs no locks: the daemon calls it only from its single
asyncio event-loop thread, and no method awaits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter

from .matchers import Matcher, MatchOp
from .model import STALE_NAN, Labels
from .window import AppendOutcome, Retention, SampleWindow

_SeriesSet = dict["Series", None]  # an insertion-ordered set: keeps select() in creation order
# Distinct selectors whose answers are remembered; rules reuse a few hundred, ad-hoc queries add more.
_SELECT_CACHE_SIZE = 4096


class Series(SampleWindow):
    """One series (metric name plus labels) and its retained samples, counted in the pool that created it."""

    __slots__ = ("labels", "_seq", "_pool")

    def __init__(self, labels: Labels, retention: Retention, seq: int, pool: str) -> None:
        super().__init__(retention)
        self.labels = labels
        self._seq = seq
        self._pool = pool

    def __repr__(self) -> str:
        return f"Series({self.labels}, {len(self)} samples)"


class SeriesStore:
    """All series the agent keeps, bounded by retention and a series cap.

    A source's pool is its name up to the first colon (``scrape:web`` is in pool ``scrape``).
    ``pool_limits`` caps what a pool may hold within ``max_series``, so one pool (untrusted
    scrape targets) can never take the room the others need.
    """

    def __init__(
        self, retention_s: float | None = 600.0, max_series: int = 100_000, pool_limits: Mapping[str, int] | None = None
    ) -> None:
        if retention_s is not None and not retention_s > 0:
            raise ValueError(f"retention must be a positive number of seconds or None, not {retention_s!r}")
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1, not {max_series!r}")
        self._pool_limits = dict(pool_limits or {})
        for pool, limit in self._pool_limits.items():
            if limit < 1:
                raise ValueError(f"pool {pool!r} limit must be at least 1, not {limit!r}")
            if limit > max_series:
                raise ValueError(f"pool {pool!r} limit {limit} exceeds max_series {max_series}")
        self._retention = Retention(None if retention_s is None else max(1, round(retention_s * 1000)))
        self._max_series = max_series
        self._pool_sizes = dict.fromkeys(self._pool_limits, 0)
        self._series: dict[Labels, Series] = {}
        self._index: dict[str, dict[str, _SeriesSet]] = {}
        self._reported: dict[str, set[Series]] = {}
        # select() answers, valid until a series is created or forgotten (labels never change).
        self._selected: dict[tuple[tuple[Matcher, ...], bool], list[Series]] = {}
        self._next_seq = 0
        self._refused_series_total = 0
        self._out_of_order_total = 0
        self._duplicate_timestamp_total = 0

    @property
    def retention_s(self) -> float | None:
        period_ms = self._retention.period_ms
        return None if period_ms is None else period_ms / 1000

    @retention_s.setter
    def retention_s(self, seconds: float | None) -> None:
        """Change retention; a longer one keeps what is still held, it cannot bring back what was evicted."""
        if seconds is not None and not seconds > 0:
            raise ValueError(f"retention must be a positive number of seconds or None, not {seconds!r}")
        self._retention.period_ms = None if seconds is None else max(1, round(seconds * 1000))

    @property
    def series_count(self) -> int:
        return len(self._series)

    @property
    def refused_series_total(self) -> int:
        """Samples refused because their new series would exceed ``max_series``."""
        return self._refused_series_total

    @property
    def out_of_order_total(self) -> int:
        """Samples refused for being older than their series' newest sample or than the retention cutoff."""
        return self._out_of_order_total

    @property
    def duplicate_timestamp_total(self) -> int:
        """Samples refused for repeating their series' newest timestamp with a different value."""
        return self._duplicate_timestamp_total

    def append(self, labels: Labels, t_ms: int, value: float) -> bool:
        """Add one sample, outside any pool; False if refused (series cap, out of order, conflicting duplicate)."""
        series = self._series_for(labels, t_ms, "")
        return series is not None and self._add(series, t_ms, value)

    def ingest(self, source: str, samples: Iterable[tuple[Labels, float]], t_ms: int) -> None:
        """Store one whole collection of ``source``; its series missing since last time get a stale marker."""
        reported: set[Series] = set()
        pool = source.partition(":")[0]
        for labels, value in samples:
            series = self._series_for(labels, t_ms, pool)
            if series is not None:
                self._add(series, t_ms, value)
                reported.add(series)
        self._mark_stale(self._reported.get(source, set()) - reported, t_ms)
        self._reported[source] = reported

    def end_source(self, source: str, t_ms: int) -> None:
        """Mark every series ``source`` last reported as stale: the source is gone."""
        self._mark_stale(self._reported.pop(source, set()), t_ms)

    def select(self, matchers: Sequence[Matcher], by_labels: bool = False) -> list[Series]:
        """Series satisfying every matcher (all series for none), in the order they were created or by labels."""
        key = (tuple(matchers), by_labels)
        found = self._selected.get(key)
        if found is None:
            found = self._select(matchers)
            if by_labels:
                found.sort(key=attrgetter("labels"))
            if len(self._selected) >= _SELECT_CACHE_SIZE:
                self._selected.clear()
            self._selected[key] = found
        return list(found)

    def _select(self, matchers: Sequence[Matcher]) -> list[Series]:
        equal = [m for m in matchers if m.op is MatchOp.EQ and m.value != ""]
        if equal:
            sets = []
            for matcher in equal:
                found = self._index.get(matcher.name, {}).get(matcher.value)
                if not found:
                    return []
                sets.append(found)
            sets.sort(key=len)
            smallest, others = sets[0], sets[1:]
            candidates: Iterable[Series] = (
                [s for s in smallest if all(s in other for other in others)] if others else smallest
            )
            rest = [m for m in matchers if m not in equal]
        else:
            narrowing = next((m for m in matchers if not m.matches("")), None)
            if narrowing is None:
                candidates, rest = self._series.values(), list(matchers)
            else:
                candidates = self._having(narrowing)
                rest = [m for m in matchers if m is not narrowing]
        selected = list(candidates)
        for matcher in rest:
            selected = _filter(selected, matcher)
        return selected

    def evict(self, now_ms: int) -> None:
        """Drop samples older than ``now_ms`` minus retention, and series left without samples.

        Expired samples vanish from reads at once; their memory is reused when
        their buffer next fills, so this costs one comparison per series.
        """
        if self._retention.period_ms is None:
            return
        self._retention.advance(now_ms)
        cutoff_ms = self._retention.cutoff_ms
        expired = [s for s in self._series.values() if s.newest_ms is not None and s.newest_ms < cutoff_ms]
        for series in expired:
            self._forget(series)

    def _series_for(self, labels: Labels, t_ms: int, pool: str) -> Series | None:
        """The series a sample at ``t_ms`` goes to, created in ``pool`` if new; None if the sample is refused."""
        if t_ms < self._retention.cutoff_ms:
            # Kept, it would be invisible to reads and could make a series with nothing to show.
            self._out_of_order_total += 1
            return None
        series = self._series.get(labels)
        if series is not None:
            return series
        limit = self._pool_limits.get(pool)
        if len(self._series) >= self._max_series or (limit is not None and self._pool_sizes[pool] >= limit):
            self._refused_series_total += 1
            return None
        series = Series(labels, self._retention, self._next_seq, pool)
        self._next_seq += 1
        if limit is not None:
            self._pool_sizes[pool] += 1
        self._selected.clear()
        self._series[labels] = series
        for name, value in labels:
            self._index.setdefault(name, {}).setdefault(value, {})[series] = None
        return series

    def _add(self, series: Series, t_ms: int, value: float) -> bool:
        outcome = series.append(t_ms, value)
        if outcome is AppendOutcome.OUT_OF_ORDER:
            self._out_of_order_total += 1
        elif outcome is AppendOutcome.CONFLICT:
            self._duplicate_timestamp_total += 1
        return outcome is AppendOutcome.ADDED or outcome is AppendOutcome.DUPLICATE

    def _mark_stale(self, gone: Iterable[Series], t_ms: int) -> None:
        # A series evicted since it was reported is detached: the marker lands there, not in the store.
        for series in gone:
            self._add(series, t_ms, STALE_NAN)

    def _having(self, matcher: Matcher) -> list[Series]:
        """Series whose ``matcher.name`` label has a value the matcher accepts (it rejects "")."""
        by_value = self._index.get(matcher.name, {})
        sets = [found for value, found in by_value.items() if matcher.matches(value)]
        if len(sets) == 1:
            return list(sets[0])
        return sorted((s for found in sets for s in found), key=attrgetter("_seq"))

    def _forget(self, series: Series) -> None:
        self._selected.clear()
        del self._series[series.labels]
        if series._pool in self._pool_sizes:
            self._pool_sizes[series._pool] -= 1
        for name, value in series.labels:
            by_value = self._index[name]
            members = by_value[value]
            del members[series]
            if not members:
                del by_value[value]
                if not by_value:
                    del self._index[name]


def _filter(candidates: list[Series], matcher: Matcher) -> list[Series]:
    """The candidates ``matcher`` accepts, testing each distinct label value once (regexes are slow)."""
    verdicts: dict[str, bool] = {}
    kept = []
    for series in candidates:
        value = series.labels.get(matcher.name)
        verdict = verdicts.get(value)
        if verdict is None:
            verdict = verdicts[value] = matcher.matches(value)
        if verdict:
            kept.append(series)
    return kept
