"""A read-only copy of the samples one query needs, so it can be evaluated off the event loop.

The series store is not thread-safe: only the loop may touch it. A query that
may take long is therefore prepared on the loop, in short slices, by copying
each selected series' samples over exactly the span the query can read (the
span Prometheus' ``FindMinMaxTime`` would ask storage for), and then evaluated
against the copy in a worker thread while ingest goes on. Each series is
copied whole at one instant; series copied in different slices may be a few
milliseconds apart, which a sidecar's collection interval dwarfs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from rules.model import STALE_NAN_BITS, Labels
from rules.promql.ast import (
    AggregateExpr,
    AtModifier,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    ParenExpr,
    SubqueryExpr,
    UnaryExpr,
    VectorSelector,
)
from rules.promql.budget import QueryBudget
from rules.store import SeriesStore

# Series copied per slice: a slice costs well under a millisecond.
SLICE_SERIES = 256


class FrozenSeries:
    """One series' copied samples, with the read methods the engine uses on a live series."""

    __slots__ = ("labels", "_t", "_v")

    def __init__(self, labels: Labels, t: np.ndarray, v: np.ndarray) -> None:
        self.labels = labels
        self._t = t
        self._v = v

    def window(self, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples with ``start_ms < t <= end_ms``."""
        lo, hi = self._t.searchsorted([start_ms, end_ms], "right")
        return self._t[lo:hi], self._v[lo:hi]

    def last(self, end_ms: int, lookback_ms: int) -> tuple[int, float] | None:
        """Newest sample in ``(end_ms - lookback_ms, end_ms]``, or None if absent or a stale marker."""
        hi = int(self._t.searchsorted(end_ms, "right"))
        if hi == 0:
            return None
        t_ms = int(self._t[hi - 1])
        if t_ms <= end_ms - lookback_ms:
            return None
        value = self._v[hi - 1 : hi]
        if np.isnan(value[0]) and int(value.view(np.uint64)[0]) == STALE_NAN_BITS:
            return None
        return t_ms, float(value[0])


class Snapshot:
    """The copied series of every selector of one expression, evaluated from ``start_ms`` to ``end_ms``."""

    def __init__(self, expr: Expr, start_ms: int, end_ms: int, lookback_ms: int) -> None:
        self._spans: dict[int, tuple[VectorSelector, int, int]] = {}
        self._start_ms = start_ms
        self._end_ms = end_ms
        self._lookback_ms = lookback_ms
        self._collect(expr, start_ms, end_ms)
        self._series: dict[int, list[FrozenSeries]] = {}

    def fill(self, store: SeriesStore, budget: QueryBudget) -> Iterator[None]:
        """Copy the samples in slices, yielding between them; must run where the store is owned (the loop)."""
        for key, (selector, lo, hi) in self._spans.items():
            copies: list[FrozenSeries] = []
            selected = store.select(selector.matchers)
            for first in range(0, len(selected), SLICE_SERIES):
                for series in selected[first : first + SLICE_SERIES]:
                    # window() copies the timestamps; the values it returns are never rewritten (rules.window).
                    times, values = series.window(lo, hi)
                    if len(times):
                        budget.charge(len(times))
                        copies.append(FrozenSeries(series.labels, times, values))
                yield
            self._series[key] = copies

    def series(self, selector: VectorSelector) -> Sequence[FrozenSeries]:
        """The copies for ``selector``, in the store's order."""
        return self._series[id(selector)]

    def _collect(self, node: Expr, lo: int, hi: int) -> None:
        """Record, per selector, the span ``(lo, hi]`` of samples evaluating ``node`` at times in [lo, hi] reads."""
        if isinstance(node, VectorSelector):
            ref_lo, ref_hi = self._references(node.at, node.offset_ms, lo, hi)
            self._spans[id(node)] = (node, ref_lo - self._lookback_ms, ref_hi)
        elif isinstance(node, MatrixSelector):
            selector = node.selector
            ref_lo, ref_hi = self._references(selector.at, selector.offset_ms, lo, hi)
            self._spans[id(selector)] = (selector, ref_lo - node.range_ms, ref_hi)
        elif isinstance(node, SubqueryExpr):
            ref_lo, ref_hi = self._references(node.at, node.offset_ms, lo, hi)
            # Inner steps fall in (ref - range, ref].
            self._collect(node.expr, ref_lo - node.range_ms + 1, ref_hi)
        else:
            for child in _children(node):
                self._collect(child, lo, hi)

    def _references(self, at: AtModifier | None, offset_ms: int, lo: int, hi: int) -> tuple[int, int]:
        """The reference times evaluation at [lo, hi] maps to, after ``@`` and ``offset``."""
        if at is not None:
            if at.ms is not None:
                lo = hi = at.ms
            else:
                lo = hi = self._start_ms if at.keyword == "start" else self._end_ms
        return lo - offset_ms, hi - offset_ms


def _children(node: Expr) -> tuple[Expr, ...]:
    """Operands of operators, calls and aggregations; literals have none."""
    if isinstance(node, Call):
        return node.args
    if isinstance(node, AggregateExpr):
        return (node.expr,) if node.param is None else (node.expr, node.param)
    if isinstance(node, BinaryExpr):
        return node.lhs, node.rhs
    if isinstance(node, UnaryExpr | ParenExpr):
        return (node.expr,)
    return ()
