"""Evaluates parsed PromQL against a SeriesStore at one instant or over a range of steps."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from rules.matchers import MatchOp
from rules.golang.fmt import format_float
from rules.model import NAME_LABEL, STALE_NAN_BITS, Labels
from rules.promql import functions as fn
from rules.promql.ast import (
    COMPARISON_OPS,
    MATRIX,
    ONE_TO_MANY,
    ONE_TO_ONE,
    SCALAR,
    VECTOR,
    AggregateExpr,
    AtModifier,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorMatching,
    VectorSelector,
)
from rules.promql.budget import QueryBudget
from rules.promql.errors import PromQLEvalError
from rules.promql.lexer import go_quote
from rules.promql.parser import parse
from rules.promql.values import MatrixResult, RangeBatch, RangeSeries, Result, Sample, ScalarResult, StringResult, VectorResult
from rules.promql.snapshot import Snapshot
from rules.store import Series, SeriesStore

Value = float | str | list[Sample] | list[RangeSeries]
_T = TypeVar("_T")


class SeriesView(Protocol):
    """What evaluation reads of a series: a live ``rules.store.Series`` or a snapshot's copy."""

    labels: Labels

    def window(self, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]: ...

    def last(self, end_ms: int, lookback_ms: int) -> tuple[int, float] | None: ...


Source = SeriesStore | Snapshot

_DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"
_MAX_INT64 = 2.0**63


class Engine:
    """PromQL evaluator with Prometheus 3 semantics (left-open windows, staleness, lookback)."""

    def __init__(
        self, lookback_s: float = 300.0, subquery_step_s: float = 60.0, *,
        max_samples: int | None = None, timeout_s: float | None = None,
    ) -> None:
        """``max_samples`` and ``timeout_s`` bound every query not given a budget of its own (None: unbounded)."""
        if not lookback_s > 0:
            raise ValueError(f"lookback must be positive, not {lookback_s!r}")
        self.lookback_ms = round(lookback_s * 1000)
        self.subquery_step_ms = round(subquery_step_s * 1000)
        self.max_samples = max_samples
        self.timeout_s = timeout_s

    def budget(self) -> QueryBudget:
        """A fresh budget with this engine's default bounds."""
        return QueryBudget(self.max_samples, self.timeout_s)

    def instant(self, expr: str | Expr, store: Source, t_ms: int, budget: QueryBudget | None = None) -> Result:
        """Evaluate at ``t_ms``; returns a vector, scalar, string or (for range expressions) matrix.

        ``store`` is the live store (on its owning thread) or a ``Snapshot`` of it taken
        for this expression and time (from any thread); ``budget`` bounds the work.
        """
        node = parse(expr) if isinstance(expr, str) else expr
        run = _Evaluation(store, self.lookback_ms, t_ms, t_ms, self.subquery_step_ms, budget or self.budget())
        with np.errstate(all="ignore"):  # IEEE 754 as in Go: inf - inf is NaN, 1/0 is +Inf, silently
            value = run.eval(node, t_ms)
        if node.type == SCALAR:
            return ScalarResult(_scalar(value))
        if isinstance(value, str):
            return StringResult(value)
        if node.type == MATRIX:
            return MatrixResult(_finish_matrix(cast("list[RangeSeries]", value)))
        return VectorResult(_finish_vector(_vector(value)))

    def range(
        self, expr: str | Expr, store: Source, start_ms: int, end_ms: int, step_ms: int,
        budget: QueryBudget | None = None,
    ) -> MatrixResult:
        """Evaluate at every step from ``start_ms`` to ``end_ms`` (inclusive); series sorted by labels."""
        node = parse(expr) if isinstance(expr, str) else expr
        if node.type not in (SCALAR, VECTOR):
            raise PromQLEvalError(
                f'invalid expression type "{node.type}" for range query, must be Scalar or instant Vector'
            )
        if step_ms <= 0:
            raise PromQLEvalError("zero or negative query resolution step widths are not accepted")
        if end_ms < start_ms:
            raise PromQLEvalError("end timestamp must not be before start time")
        budget = budget or self.budget()
        run = _Evaluation(store, self.lookback_ms, start_ms, end_ms, self.subquery_step_ms, budget)
        points: dict[Labels, list[tuple[int, float]]] = {}
        for t in range(start_ms, end_ms + 1, step_ms):
            with np.errstate(all="ignore"):
                value = run.eval(node, t)
            if node.type == SCALAR:
                budget.charge(1)
                points.setdefault(Labels(), []).append((t, _scalar(value)))
                continue
            vector = _vector(value)
            budget.charge(max(1, len(vector)))
            for labels, sample_value in _finish_vector(vector):
                points.setdefault(labels, []).append((t, sample_value))
        return MatrixResult(sorted(points.items()))


def _scalar(value: Value) -> float:
    """``value`` as the scalar the parser's type check guarantees it is (a Python float, not NumPy's)."""
    assert isinstance(value, float)
    return float(value)


def _vector(value: Value) -> list[Sample]:
    """``value`` as the instant vector the parser's type check guarantees it is."""
    return cast("list[Sample]", value)


def _finish_vector(vector: list[Sample]) -> list[tuple[Labels, float]]:
    """Drop names marked for removal, then refuse duplicate label sets."""
    out = []
    seen: set[Labels] = set()
    for sample in vector:
        labels = sample.labels.without(NAME_LABEL) if sample.drop_name else sample.labels
        if labels in seen:
            raise PromQLEvalError(_DUPLICATE_LABELSET)
        seen.add(labels)
        out.append((labels, sample.value))
    return out


def _finish_matrix(matrix: list[RangeSeries]) -> list[tuple[Labels, list[tuple[int, float]]]]:
    out = []
    seen: set[Labels] = set()
    for series in matrix:
        labels = series.labels.without(NAME_LABEL) if series.drop_name else series.labels
        if labels in seen:
            raise PromQLEvalError(_DUPLICATE_LABELSET)
        seen.add(labels)
        out.append((labels, list(zip(series.t.tolist(), series.v.tolist()))))
    return out


def _unwrap(node: Expr) -> Expr:
    while isinstance(node, ParenExpr):
        node = node.expr
    return node


def _go_labels(labels: Labels) -> str:
    """Labels as Go's ``labels.Labels.String()`` prints them (``__name__`` included)."""
    return "{" + ", ".join(f"{name}={go_quote(value)}" for name, value in labels) + "}"


def _valid_label_name(name: str) -> bool:
    # Prometheus 3 validates label names as UTF-8: any non-empty valid string.
    return bool(name) and not any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name)


def _absent_labels(node: Expr) -> Labels:
    """Labels of absent()'s output: the selector's equality matchers, as Prometheus derives them."""
    node = _unwrap(node)
    if isinstance(node, MatrixSelector):
        node = node.selector
    if not isinstance(node, VectorSelector):
        return Labels()
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for matcher in node.matchers:
        if matcher.name == NAME_LABEL:
            continue
        if matcher.op is MatchOp.EQ and matcher.name not in seen:
            labels[matcher.name] = matcher.value
            seen.add(matcher.name)
        else:
            labels.pop(matcher.name, None)
    return Labels(labels)


# Labels derived from a series' labels, remembered: rules group and match the same series at every
# evaluation. Keys are (labels, what was derived); the cache empties itself when full.
_DERIVED: dict[tuple[Labels, object], object] = {}
_DERIVED_SIZE = 65536


def _derived(labels: Labels, how: object, make: Callable[[Labels], _T]) -> _T:
    """``make(labels)``, computed once per (labels, how)."""
    key = (labels, how)
    found = _DERIVED.get(key)
    if found is None:
        found = make(labels)
        if len(_DERIVED) >= _DERIVED_SIZE:
            _DERIVED.clear()
        _DERIVED[key] = found
    return cast(_T, found)


def _grouping_key(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    if without:
        return _derived(labels, ("without", grouping), lambda ls: ls.without(NAME_LABEL, *grouping))
    return _derived(labels, ("by", grouping), lambda ls: ls.only(*grouping))


class _Evaluation:
    """State of one query: selected series and subquery results are computed once."""

    def __init__(
        self, store: Source, lookback_ms: int, start_ms: int, end_ms: int, subquery_step_ms: int, budget: QueryBudget
    ) -> None:
        self.store = store
        self.lookback_ms = lookback_ms
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.subquery_step_ms = subquery_step_ms
        self.budget = budget
        self._selected: dict[int, list[SeriesView]] = {}
        self._subquery_steps: dict[tuple[int, int], list[Sample]] = {}
        # Each handler takes the node type it is filed under, which a dict's type cannot say: hence Any.
        self._handlers: dict[type[Expr], Callable[[Any, int], Value]] = {
            NumberLiteral: lambda node, t: node.value,
            StringLiteral: lambda node, t: node.value,
            ParenExpr: lambda node, t: self.eval(node.expr, t),
            UnaryExpr: self._unary,
            VectorSelector: self._vector_selector,
            MatrixSelector: lambda node, t: self._range_input(node, t)[0],
            SubqueryExpr: lambda node, t: self._range_input(node, t)[0],
            Call: self._call,
            AggregateExpr: self._aggregate,
            BinaryExpr: self._binary,
        }

    def eval(self, node: Expr, t: int) -> Value:
        return self._handlers[type(node)](node, t)

    # -- selectors -----------------------------------------------------------

    def _series(self, selector: VectorSelector) -> list[SeriesView]:
        found = self._selected.get(id(selector))
        if found is None:
            store = self.store
            # Prometheus returns series sorted by labels; functions like topk rely on that order.
            selected: list[SeriesView] = (
                sorted(store.series(selector), key=lambda s: s.labels)
                if isinstance(store, Snapshot)
                else list(store.select(selector.matchers, by_labels=True))
            )
            found = self._selected[id(selector)] = selected
        return found

    def _reference_ms(self, at: AtModifier | None, offset_ms: int, t: int) -> int:
        if at is None:
            base = t
        elif at.ms is not None:
            base = at.ms
        else:
            base = self.start_ms if at.keyword == "start" else self.end_ms
        return base - offset_ms

    def _vector_selector(self, node: VectorSelector, t: int) -> list[Sample]:
        ref = self._reference_ms(node.at, node.offset_ms, t)
        out = []
        for series in self._series(node):
            newest = series.last(ref, self.lookback_ms)
            if newest is not None:
                out.append(Sample(series.labels, newest[1]))
        return out

    def _sample_timestamps(self, node: VectorSelector, t: int) -> list[Sample]:
        ref = self._reference_ms(node.at, node.offset_ms, t)
        out = []
        for series in self._series(node):
            newest = series.last(ref, self.lookback_ms)
            if newest is not None:
                out.append(Sample(series.labels, newest[0] / 1000, True))
        return out

    def _range_input(self, node: Expr, t: int) -> tuple[list[RangeSeries], int, int]:
        """A range vector and its window ``(start, end]`` for a matrix selector or subquery."""
        node = _unwrap(node)
        if isinstance(node, MatrixSelector):
            selector = node.selector
            end = self._reference_ms(selector.at, selector.offset_ms, t)
            start = end - node.range_ms
            out = []
            for series in self._series(selector):
                times, values = series.window(start, end)
                if not len(times):
                    continue
                # Only a window holding a NaN can hold a stale marker: the bit test runs only then.
                if np.isnan(values).any():
                    keep = values.view(np.uint64) != STALE_NAN_BITS
                    times, values = times[keep], values[keep]
                    if not len(times):
                        continue
                out.append(RangeSeries(series.labels, times, values))
            return out, start, end
        assert isinstance(node, SubqueryExpr)
        return self._subquery(node, t)

    def _range_batch(self, node: Expr, t: int) -> tuple[RangeBatch, int, int]:
        """``_range_input`` as one batch."""
        node = _unwrap(node)
        if not isinstance(node, MatrixSelector):
            series, start, end = self._range_input(node, t)
            return RangeBatch.of(
                [s.labels for s in series], [s.t for s in series], [s.v for s in series], [s.drop_name for s in series]
            ), start, end
        selector = node.selector
        end = self._reference_ms(selector.at, selector.offset_ms, t)
        start = end - node.range_ms
        selected = self._series(selector)
        if isinstance(self.store, Snapshot):
            windows = [view.window(start, end) for view in selected]
            copied = [(view, w) for view, w in zip(selected, windows) if len(w[0])]
            batch = RangeBatch.of(
                [view.labels for view, _ in copied], [w[0] for _, w in copied], [w[1] for _, w in copied],
                [False] * len(copied),
            )
            return _without_stale(batch), start, end
        # The live store reads values and end timestamps only; the timestamps in between are read if a function needs them.
        present = [
            (series, read)
            for series in cast("list[Series]", selected)
            if (read := series.window_values(start, end)) is not None
        ]
        live = [series for series, _ in present]
        batch = RangeBatch.read(
            [series.labels for series in live], [read for _, read in present], [False] * len(live),
            lambda: np.concatenate([series.window(start, end)[0] for series in live] or [np.empty(0, np.int64)]),
        )
        return _without_stale(batch), start, end

    def _subquery(self, node: SubqueryExpr, t: int) -> tuple[list[RangeSeries], int, int]:
        end = self._reference_ms(node.at, node.offset_ms, t)
        start = end - node.range_ms
        step = node.step_ms or self.subquery_step_ms
        # Inner steps are absolute multiples of the step, as in Prometheus.
        first = (start // step + 1) * step
        # Each step costs at least one sample: a subquery that cannot fit is refused before its first step.
        self.budget.ensure(max(0, (end - first) // step + 1))
        collected: dict[Labels, tuple[list[int], list[float], list[bool]]] = {}
        for inner_t in range(first, end + 1, step):
            key = (id(node), inner_t)
            vector = self._subquery_steps.get(key)
            if vector is None:
                vector = _vector(self.eval(node.expr, inner_t))
                # Every step is charged, empty or not: a step costs time and a cache entry either way.
                self.budget.charge(max(1, len(vector)))
                self._subquery_steps[key] = vector
            for sample in vector:
                times, values, drops = collected.setdefault(sample.labels, ([], [], []))
                times.append(inner_t)
                values.append(sample.value)
                drops.append(sample.drop_name)
        out = [
            RangeSeries(labels, np.array(times, dtype=np.int64), np.array(values, dtype=np.float64), any(drops))
            for labels, (times, values, drops) in collected.items()
        ]
        return out, start, end

    # -- operators --------------------------------------------------------------

    def _unary(self, node: UnaryExpr, t: int) -> Value:
        value = self.eval(node.expr, t)
        if node.op == "+":
            return value
        if isinstance(value, float):
            return -value
        return [Sample(s.labels, -s.value, True) for s in _vector(value)]

    def _binary(self, node: BinaryExpr, t: int) -> Value:
        lhs = self.eval(node.lhs, t)
        rhs = self.eval(node.rhs, t)
        op = node.op
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in COMPARISON_OPS:
                return 1.0 if fn.compare(op, lhs, rhs) else 0.0
            return fn.arithmetic(op, lhs, rhs)
        if isinstance(rhs, float):
            return self._vector_scalar(op, _vector(lhs), rhs, False, node.return_bool)
        if isinstance(lhs, float):
            return self._vector_scalar(op, _vector(rhs), lhs, True, node.return_bool)
        assert node.matching is not None
        if op == "and":
            return self._and_unless(_vector(lhs), _vector(rhs), node.matching, True)
        if op == "unless":
            return self._and_unless(_vector(lhs), _vector(rhs), node.matching, False)
        if op == "or":
            return self._or(_vector(lhs), _vector(rhs), node.matching)
        return self._vector_vector(op, _vector(lhs), _vector(rhs), node.matching, node.return_bool)

    @staticmethod
    def _vector_scalar(op: str, vector: list[Sample], scalar: float, swap: bool, return_bool: bool) -> list[Sample]:
        if op in COMPARISON_OPS and not return_bool:
            # The filter rules are made of: one comparison per sample, the sample kept as it is.
            compare = fn.COMPARISONS[op]
            if swap:
                return [s for s in vector if compare(scalar, s.value)]
            return [s for s in vector if compare(s.value, scalar)]
        out = []
        for sample in vector:
            lhs, rhs = (scalar, sample.value) if swap else (sample.value, scalar)
            if op in COMPARISON_OPS:
                out.append(Sample(sample.labels, 1.0 if fn.compare(op, lhs, rhs) else 0.0, True))
            else:
                out.append(Sample(sample.labels, fn.arithmetic(op, lhs, rhs), True))
        return out

    @staticmethod
    def _signature(matching: VectorMatching) -> Callable[[Labels], tuple[object, ...]]:
        """The labels a vector matching compares, remembered per series."""
        names = matching.labels
        if matching.on:
            return lambda labels: _derived(labels, ("on", names), lambda ls: tuple(ls.get(name) for name in names))
        excluded = frozenset((NAME_LABEL, *names))
        return lambda labels: _derived(
            labels, ("ignoring", names), lambda ls: tuple(pair for pair in ls if pair[0] not in excluded)
        )

    def _and_unless(self, lhs: list[Sample], rhs: list[Sample], matching: VectorMatching, keep_matched: bool) -> list[Sample]:
        if keep_matched and (not lhs or not rhs):
            return []
        signature = self._signature(matching)
        right = {signature(s.labels) for s in rhs}
        return [s for s in lhs if (signature(s.labels) in right) == keep_matched]

    def _or(self, lhs: list[Sample], rhs: list[Sample], matching: VectorMatching) -> list[Sample]:
        if not lhs or not rhs:
            return lhs or rhs
        signature = self._signature(matching)
        left = {signature(s.labels) for s in lhs}
        return lhs + [s for s in rhs if signature(s.labels) not in left]

    def _vector_vector(
        self, op: str, lhs: list[Sample], rhs: list[Sample], matching: VectorMatching, return_bool: bool
    ) -> list[Sample]:
        if not lhs or not rhs:
            return []
        signature = self._signature(matching)
        swapped = matching.card == ONE_TO_MANY
        if swapped:
            lhs, rhs = rhs, lhs
        right: dict[tuple[object, ...], Sample] = {}
        for sample in rhs:
            key = signature(sample.labels)
            duplicate = right.get(key)
            if duplicate is not None:
                one_side = "left" if swapped else "right"
                matched = self._matched_labels(sample.labels, matching)
                raise PromQLEvalError(
                    f"found duplicate series for the match group {_go_labels(matched)} on the {one_side} "
                    f"hand-side of the operation: [{_go_labels(duplicate.labels)}, {_go_labels(sample.labels)}]"
                    ";many-to-many matching not allowed: matching labels must be unique on one side"
                )
            right[key] = sample
        comparison = op in COMPARISON_OPS
        matched_sigs: dict[tuple[object, ...], set[Labels] | None] = {}
        out = []
        for sample in lhs:
            key = signature(sample.labels)
            other = right.get(key)
            if other is None:
                continue
            left_value, right_value = (other.value, sample.value) if swapped else (sample.value, other.value)
            metric = self._result_metric(sample.labels, other.labels, matching)
            # Duplicate matches are an error even when the comparison filters them out.
            if matching.card == ONE_TO_ONE:
                if key in matched_sigs:
                    raise PromQLEvalError(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                    )
                matched_sigs[key] = None
            else:
                inserted = matched_sigs.setdefault(key, set())
                assert inserted is not None
                if metric in inserted:
                    raise PromQLEvalError("multiple matches for labels: grouping labels must ensure unique matches")
                inserted.add(metric)
            if comparison:
                keep = fn.compare(op, left_value, right_value)
                value = left_value
            else:
                keep = True
                value = fn.arithmetic(op, left_value, right_value)
            if return_bool:
                value = 1.0 if keep else 0.0
            elif not keep:
                continue
            drop = return_bool or not comparison or sample.drop_name
            out.append(Sample(metric, value, drop))
        return out

    @staticmethod
    def _matched_labels(labels: Labels, matching: VectorMatching) -> Labels:
        if matching.on:
            return labels.only(*matching.labels)
        return labels.without(NAME_LABEL, *matching.labels)

    @staticmethod
    def _result_metric(lhs: Labels, rhs: Labels, matching: VectorMatching) -> Labels:
        labels = dict(lhs)
        if matching.card == ONE_TO_ONE:
            if matching.on:
                labels = {k: v for k, v in labels.items() if k in matching.labels}
            else:
                for name in matching.labels:
                    labels.pop(name, None)
        for name in matching.include:
            # group_x labels come from the "one" side; missing there means removed.
            value = rhs.get(name)
            if value:
                labels[name] = value
            else:
                labels.pop(name, None)
        return Labels(labels)

    # -- aggregation -----------------------------------------------------------------

    def _aggregate(self, node: AggregateExpr, t: int) -> list[Sample]:
        vector = _vector(self.eval(node.expr, t))
        op = node.op
        param = self.eval(node.param, t) if node.param is not None else None
        if op in ("topk", "bottomk"):
            assert isinstance(param, float)
            if math.isnan(param):
                raise PromQLEvalError("Parameter value is NaN")
            if abs(param) >= _MAX_INT64:
                raise PromQLEvalError(f"Scalar value {format_float(param)} overflows int64")
            return self._top_bottom(node, vector, int(param))
        value_label = ""
        if op == "count_values":
            assert isinstance(param, str)
            if not _valid_label_name(param):
                raise PromQLEvalError(f"invalid label name {go_quote(param)}")
            value_label = param
        grouping = node.grouping
        if value_label and not node.without:
            grouping = (*grouping, value_label)
        groups: dict[Labels, list[Sample]] = {}
        for sample in vector:
            labels = sample.labels
            if value_label:
                labels = Labels({**dict(labels), value_label: fn.format_value_label(sample.value)})
            key = _grouping_key(labels, grouping, node.without)
            groups.setdefault(key, []).append(sample)
        out = []
        for key, members in groups.items():
            values = [s.value for s in members]
            out.append(Sample(key, self._reduce(op, values, param), any(s.drop_name for s in members)))
        return out

    @staticmethod
    def _reduce(op: str, values: list[float], param: Value | None) -> float:
        if op == "sum":
            return fn.kahan_sum(values)
        if op == "avg":
            return fn.kahan_mean(values)
        if op in ("count", "count_values"):
            return float(len(values))
        if op == "group":
            return 1.0
        if op == "max":
            best = values[0]
            for value in values[1:]:
                if best < value or math.isnan(best):
                    best = value
            return best
        if op == "min":
            best = values[0]
            for value in values[1:]:
                if best > value or math.isnan(best):
                    best = value
            return best
        if op == "stdvar":
            return fn.variance(values)
        if op == "stddev":
            return math.sqrt(fn.variance(values))
        if op == "quantile":
            assert isinstance(param, float)
            return fn.quantile(param, values)
        raise AssertionError(op)

    @staticmethod
    def _top_bottom(node: AggregateExpr, vector: list[Sample], k: int) -> list[Sample]:
        if k < 1:
            return []
        groups: dict[Labels, list[Sample]] = {}
        for sample in vector:
            groups.setdefault(_grouping_key(sample.labels, node.grouping, node.without), []).append(sample)
        out: list[Sample] = []
        for members in groups.values():
            # NaN always ranks last, for topk and for bottomk.
            if node.op == "topk":
                ranked = sorted(members, key=lambda s: (math.isnan(s.value), -s.value if not math.isnan(s.value) else 0.0))
            else:
                ranked = sorted(members, key=lambda s: (math.isnan(s.value), s.value if not math.isnan(s.value) else 0.0))
            out.extend(ranked[:k])
        return out

    # -- functions ------------------------------------------------------------------------

    def _call(self, node: Call, t: int) -> Value:
        name = node.func
        args = node.args
        if name in fn.RANGE_KERNELS:
            return self._range_function(node, t)
        if name == "absent_over_time":
            series, _, _ = self._range_input(args[0], t)
            return [] if series else [Sample(_absent_labels(args[0]), 1.0)]
        if name == "time":
            return t / 1000
        if name == "pi":
            return math.pi
        if name == "vector":
            return [Sample(Labels(), _scalar(self.eval(args[0], t)))]
        if name == "scalar":
            vector = _vector(self.eval(args[0], t))
            return vector[0].value if len(vector) == 1 else math.nan
        if name == "absent":
            vector = _vector(self.eval(args[0], t))
            return [] if vector else [Sample(_absent_labels(args[0]), 1.0)]
        if name == "timestamp":
            inner = _unwrap(args[0])
            if isinstance(inner, VectorSelector):
                return self._sample_timestamps(inner, t)
            return [Sample(s.labels, t / 1000, True) for s in _vector(self.eval(args[0], t))]
        if name in fn.ELEMENTWISE:
            vector = _vector(self.eval(args[0], t))
            results = fn.apply_elementwise(name, np.array([s.value for s in vector], dtype=np.float64))
            return [Sample(s.labels, float(r), True) for s, r in zip(vector, results)]
        if name in ("day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year"):
            if not args:
                return [Sample(Labels(), fn.date_part(name, t / 1000))]
            return [Sample(s.labels, fn.date_part(name, s.value), True) for s in _vector(self.eval(args[0], t))]
        if name in ("clamp", "clamp_min", "clamp_max", "round"):
            return self._clamp_round(node, t)
        if name == "histogram_quantile":
            return self._histogram_quantile(node, t)
        if name == "label_replace":
            return self._label_replace(node, t)
        if name == "label_join":
            return self._label_join(node, t)
        if name in ("sort", "sort_desc"):
            vector = _vector(self.eval(args[0], t))
            descending = name == "sort_desc"
            return sorted(
                vector,
                key=lambda s: (math.isnan(s.value), (-s.value if descending else s.value) if not math.isnan(s.value) else 0.0),
            )
        raise AssertionError(f"no implementation for {name}")

    def _range_function(self, node: Call, t: int) -> list[Sample]:
        name = node.func
        matrix_index = 1 if name == "quantile_over_time" else 0
        matrix_arg = node.args[matrix_index]
        scalars = tuple(
            _scalar(self.eval(arg, t)) for i, arg in enumerate(node.args) if i != matrix_index
        )
        batch, start, end = self._range_batch(matrix_arg, t)
        inner = _unwrap(matrix_arg)
        assert isinstance(inner, (MatrixSelector, SubqueryExpr))
        at = inner.selector.at if isinstance(inner, MatrixSelector) else inner.at
        # With @, Prometheus evaluates the step-invariant call once, at the query start.
        eval_ms = self.start_ms if at is not None else t
        context = fn.RangeContext(start, end, eval_ms, scalars)
        values, has = fn.BATCH_KERNELS[name](batch, context)
        drops = batch.drop_name if name in fn.KEEPS_NAME else [True] * len(batch)
        if has is None:
            return list(map(Sample, batch.labels, values.tolist(), drops))
        return [
            Sample(labels, value, drop)
            for labels, value, drop, keep in zip(batch.labels, values.tolist(), drops, has.tolist())
            if keep
        ]

    def _clamp_round(self, node: Call, t: int) -> list[Sample]:
        vector = _vector(self.eval(node.args[0], t))
        params = [_scalar(self.eval(arg, t)) for arg in node.args[1:]]
        name = node.func
        if name == "round":
            to_nearest = params[0] if params else 1.0
            return [Sample(s.labels, fn.go_round(s.value, to_nearest), True) for s in vector]
        if name == "clamp":
            low, high = params
            if high < low:
                return []
            return [Sample(s.labels, fn.go_max(low, fn.go_min(high, s.value)), True) for s in vector]
        if name == "clamp_min":
            return [Sample(s.labels, fn.go_max(params[0], s.value), True) for s in vector]
        return [Sample(s.labels, fn.go_min(params[0], s.value), True) for s in vector]

    def _histogram_quantile(self, node: Call, t: int) -> list[Sample]:
        q = _scalar(self.eval(node.args[0], t))
        vector = _vector(self.eval(node.args[1], t))
        groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
        for sample in vector:
            try:
                upper = float(sample.labels.get("le"))
            except ValueError:
                continue
            key = sample.labels.without("le")
            entry = groups.get(key)
            if entry is None:
                entry = groups[key] = (key.without(NAME_LABEL), [])
            entry[1].append((upper, sample.value))
        return [Sample(labels, fn.bucket_quantile(q, buckets), True) for labels, buckets in groups.values()]

    def _string_args(self, node: Call, t: int) -> list[str]:
        return [str(self.eval(arg, t)) for arg in node.args[1:]]

    def _label_replace(self, node: Call, t: int) -> list[Sample]:
        dst, replacement, src, pattern = self._string_args(node, t)
        try:
            regex = re.compile(pattern, re.DOTALL)
        except re.error:
            raise PromQLEvalError(f"invalid regular expression in label_replace(): {pattern}") from None
        if not _valid_label_name(dst):
            raise PromQLEvalError(f"invalid destination label name in label_replace(): {dst}")
        vector = _vector(self.eval(node.args[0], t))
        out = []
        for sample in vector:
            match = regex.fullmatch(sample.labels.get(src))
            if match is None:
                out.append(sample)
                continue
            labels = Labels({**dict(sample.labels), dst: fn.go_expand(replacement, match)})
            out.append(Sample(labels, sample.value, False if dst == NAME_LABEL else sample.drop_name))
        _refuse_duplicates(out)
        return out

    def _label_join(self, node: Call, t: int) -> list[Sample]:
        dst, separator, *sources = self._string_args(node, t)
        for source in sources:
            if not _valid_label_name(source):
                raise PromQLEvalError(f"invalid source label name in label_join(): {source}")
        if not _valid_label_name(dst):
            raise PromQLEvalError(f"invalid destination label name in label_join(): {dst}")
        vector = _vector(self.eval(node.args[0], t))
        out = []
        for sample in vector:
            joined = separator.join(sample.labels.get(source) for source in sources)
            labels = Labels({**dict(sample.labels), dst: joined})
            out.append(Sample(labels, sample.value, False if dst == NAME_LABEL else sample.drop_name))
        _refuse_duplicates(out)
        return out


def _without_stale(batch: RangeBatch) -> RangeBatch:
    """``batch`` without its stale markers, and without the series left empty by their removal."""
    values = batch.values
    # Only a batch holding a NaN can hold a stale marker: the bit test runs only then.
    if not np.isnan(values).any():
        return batch
    keep = values.view(np.uint64) != STALE_NAN_BITS
    if keep.all():
        return batch
    times = batch.times()[keep]
    counts = np.add.reduceat(keep, batch.bounds[:-1], dtype=np.int64)
    nonempty = counts > 0
    bounds = np.zeros(int(nonempty.sum()) + 1, dtype=np.int64)
    np.cumsum(counts[nonempty], out=bounds[1:])
    kept = nonempty.tolist()
    return RangeBatch(
        [labels for labels, k in zip(batch.labels, kept) if k], [d for d, k in zip(batch.drop_name, kept) if k],
        values[keep], bounds, times[bounds[:-1]], times[bounds[1:] - 1], lambda: times,
    )


def _refuse_duplicates(vector: list[Sample]) -> None:
    seen: set[Labels] = set()
    for sample in vector:
        if sample.labels in seen:
            raise PromQLEvalError(_DUPLICATE_LABELSET)
        seen.add(sample.labels)
