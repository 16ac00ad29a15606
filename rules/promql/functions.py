"""The numeric kernels behind PromQL functions (ports of Prometheus 3); their signatures are in signatures.py."""

from __future__ import annotations

import math
import operator
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from rules.promql.values import RangeBatch

# Functions whose result keeps the metric name (all others drop it).
KEEPS_NAME = frozenset({"last_over_time", "first_over_time", "sort", "sort_desc", "label_replace", "label_join"})


# -- summation, as Prometheus does it --------------------------------------


def kahan_sum_inc(inc: float, total: float, comp: float) -> tuple[float, float]:
    """One step of Kahan-Babuska-Neumaier summation (Prometheus ``kahanSumInc``)."""
    new_total = total + inc
    if math.isinf(new_total):
        comp = 0.0
    elif abs(total) >= abs(inc):
        comp += (total - new_total) + inc
    else:
        comp += (inc - new_total) + total
    return new_total, comp


def kahan_sum(values: Iterable[float]) -> float:
    total = comp = 0.0
    for value in values:
        total, comp = kahan_sum_inc(float(value), total, comp)
    return total + comp


def kahan_mean(values: Iterable[float]) -> float:
    """Mean by direct Kahan summation, switching to an incremental mean on overflow (Prometheus 3)."""
    total = comp = mean = 0.0
    count = 0.0
    incremental = False
    for raw in values:
        value = float(raw)
        count += 1
        if count == 1:
            total = value
            continue
        if not incremental:
            new_total, new_comp = kahan_sum_inc(value, total, comp)
            if not math.isinf(new_total):
                total, comp = new_total, new_comp
                continue
            incremental = True
            mean = total / (count - 1)
            comp /= count - 1
        q = (count - 1) / count
        mean, comp = kahan_sum_inc(value / count, q * mean, q * comp)
    if incremental:
        return mean + comp
    return total / count + comp / count


def variance(values: Iterable[float]) -> float:
    """Population variance with Welford's method and Kahan-compensated sums (Prometheus 3)."""
    count = mean = c_mean = aux = c_aux = 0.0
    for raw in values:
        value = float(raw)
        count += 1
        delta = value - (mean + c_mean)
        mean, c_mean = kahan_sum_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_sum_inc(delta * (value - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def quantile(q: float, values: Sequence[float] | np.ndarray) -> float:
    """The q-quantile with linear interpolation; NaN sorts first as in Prometheus."""
    if len(values) == 0 or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    arr = np.asarray(values, dtype=np.float64)
    nan = np.isnan(arr)
    ordered = np.concatenate([arr[nan], np.sort(arr[~nan])])
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return float(ordered[lower]) * (1 - weight) + float(ordered[upper]) * weight


# -- range-vector kernels -----------------------------------------------------


@dataclass(frozen=True)
class RangeContext:
    """Where a range function's window lies: ``(start_ms, end_ms]``, plus the evaluation time."""

    start_ms: int
    end_ms: int
    eval_ms: int
    scalar_args: tuple[float, ...] = ()


def extrapolated_rate(t: np.ndarray, v: np.ndarray, ctx: RangeContext, is_counter: bool, is_rate: bool) -> float | None:
    """rate, increase and delta: Prometheus 3 ``extrapolatedRate`` for float samples."""
    if len(v) < 2:
        return None
    result = float(v[-1] - v[0])
    if is_counter:
        drops = v[1:] < v[:-1]
        if drops.any():
            result += kahan_sum(v[:-1][drops]) if len(v) < 64 else float(np.sum(v[:-1][drops]))
    first_t, last_t = int(t[0]), int(t[-1])
    duration_to_start = (first_t - ctx.start_ms) / 1000
    duration_to_end = (ctx.end_ms - last_t) / 1000
    sampled_interval = (last_t - first_t) / 1000
    average_between = sampled_interval / (len(v) - 1)
    threshold = average_between * 1.1
    if duration_to_start >= threshold:
        duration_to_start = average_between / 2
    first_value = float(v[0])
    if is_counter and result > 0 and first_value >= 0:
        # Counters cannot go below zero: do not extrapolate past the zero point.
        duration_to_zero = sampled_interval * (first_value / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    if duration_to_end >= threshold:
        duration_to_end = average_between / 2
    factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval
    if is_rate:
        factor /= (ctx.end_ms - ctx.start_ms) / 1000
    return result * factor


def instant_value(t: np.ndarray, v: np.ndarray, is_rate: bool) -> float | None:
    """irate and idelta: from the last two samples."""
    if len(v) < 2:
        return None
    last, previous = float(v[-1]), float(v[-2])
    result = last if is_rate and last < previous else last - previous
    interval_ms = int(t[-1]) - int(t[-2])
    if interval_ms == 0:
        return None
    if is_rate:
        result /= interval_ms / 1000
    return result


def linear_regression(t: np.ndarray, v: np.ndarray, intercept_ms: int) -> tuple[float, float]:
    """Least-squares slope and intercept at ``intercept_ms`` (Prometheus ``linearRegression``)."""
    first = float(v[0])
    if bool(np.all(v == first)):
        if math.isinf(first):
            return math.nan, math.nan
        return 0.0, first
    x = (t - intercept_ms).astype(np.float64) / 1e3
    n = float(len(v))
    sum_x, sum_y = kahan_sum(x), kahan_sum(v)
    sum_xy, sum_x2 = kahan_sum(x * v), kahan_sum(x * x)
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = cov_xy / var_x if var_x != 0 else (math.nan if cov_xy == 0 else math.copysign(math.inf, cov_xy))
    intercept = sum_y / n - slope * sum_x / n
    return slope, intercept


def _deriv(t: np.ndarray, v: np.ndarray, ctx: RangeContext) -> float | None:
    if len(v) < 2:
        return None
    return linear_regression(t, v, int(t[0]))[0]


def _predict_linear(t: np.ndarray, v: np.ndarray, ctx: RangeContext) -> float | None:
    if len(v) < 2:
        return None
    slope, intercept = linear_regression(t, v, ctx.eval_ms)
    return slope * ctx.scalar_args[0] + intercept


def _changes(t: np.ndarray, v: np.ndarray, ctx: RangeContext) -> float:
    prev, cur = v[:-1], v[1:]
    same = (prev == cur) | (np.isnan(prev) & np.isnan(cur))
    return float(np.count_nonzero(~same))


def _resets(t: np.ndarray, v: np.ndarray, ctx: RangeContext) -> float:
    return float(np.count_nonzero(v[1:] < v[:-1]))


def _max(v: np.ndarray) -> float:
    return float(np.fmax.reduce(v))


def _min(v: np.ndarray) -> float:
    return float(np.fmin.reduce(v))


def _sum(v: np.ndarray) -> float:
    if len(v) < 64 or not np.isfinite(v).all():
        return kahan_sum(v)
    total = math.fsum(v.tolist())  # a list of floats sums twice as fast as the array
    return total if math.isfinite(total) else kahan_sum(v)


def _avg(v: np.ndarray) -> float:
    if len(v) >= 64 and np.isfinite(v).all():
        total = math.fsum(v.tolist())
        if math.isfinite(total):
            return total / len(v)
    return kahan_mean(v)


RangeKernel = Callable[[np.ndarray, np.ndarray, RangeContext], "float | None"]

RANGE_KERNELS: dict[str, RangeKernel] = {
    "rate": lambda t, v, c: extrapolated_rate(t, v, c, True, True),
    "increase": lambda t, v, c: extrapolated_rate(t, v, c, True, False),
    "delta": lambda t, v, c: extrapolated_rate(t, v, c, False, False),
    "irate": lambda t, v, c: instant_value(t, v, True),
    "idelta": lambda t, v, c: instant_value(t, v, False),
    "deriv": _deriv,
    "predict_linear": _predict_linear,
    "changes": _changes,
    "resets": _resets,
    "avg_over_time": lambda t, v, c: _avg(v),
    "sum_over_time": lambda t, v, c: _sum(v),
    "min_over_time": lambda t, v, c: _min(v),
    "max_over_time": lambda t, v, c: _max(v),
    "count_over_time": lambda t, v, c: float(len(v)),
    "last_over_time": lambda t, v, c: float(v[-1]),
    "first_over_time": lambda t, v, c: float(v[0]),
    "present_over_time": lambda t, v, c: 1.0,
    "stddev_over_time": lambda t, v, c: math.sqrt(variance(v)),
    "stdvar_over_time": lambda t, v, c: variance(v),
    "quantile_over_time": lambda t, v, c: quantile(c.scalar_args[0], v),
}


# -- range-vector kernels over a whole batch ---------------------------------------------
# Each returns one value per series and which series have one (None: all); results are
# bit-for-bit those of the per-series kernels above.

BatchResult = tuple[np.ndarray, "np.ndarray | None"]
BatchKernel = Callable[[RangeBatch, RangeContext], BatchResult]


def batch_extrapolated_rate(batch: RangeBatch, ctx: RangeContext, is_counter: bool, is_rate: bool) -> BatchResult:
    """``extrapolated_rate`` for every series at once."""
    v, bounds = batch.values, batch.bounds
    counts = np.diff(bounds)
    first, last = bounds[:-1], bounds[1:] - 1
    first_v = v[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        result = v[last] - first_v
        if is_counter:
            _add_counter_resets(v, bounds, result)
        sampled = (batch.last_t - batch.first_t) / 1000
        average_between = sampled / (counts - 1)
        threshold = average_between * 1.1
        half = average_between / 2
        to_start = (batch.first_t - ctx.start_ms) / 1000
        to_start = np.where(to_start >= threshold, half, to_start)
        if is_counter:
            to_zero = sampled * (first_v / result)
            to_start = np.where((result > 0) & (first_v >= 0) & (to_zero < to_start), to_zero, to_start)
        to_end = (ctx.end_ms - batch.last_t) / 1000
        to_end = np.where(to_end >= threshold, half, to_end)
        factor = (sampled + to_start + to_end) / sampled
        if is_rate:
            factor /= (ctx.end_ms - ctx.start_ms) / 1000
        return result * factor, counts >= 2


def _add_counter_resets(v: np.ndarray, bounds: np.ndarray, result: np.ndarray) -> None:
    """Add each series' counter-reset correction to ``result``, summed as ``extrapolated_rate`` sums it."""
    drops = v[1:] < v[:-1]
    drops[bounds[1:-1] - 1] = False  # a pair across two series is no reset
    if not drops.any():
        return
    for i in np.unique(np.searchsorted(bounds, np.flatnonzero(drops), "right") - 1).tolist():
        seg = v[bounds[i] : bounds[i + 1]]
        dropped = seg[:-1][seg[1:] < seg[:-1]]
        result[i] += kahan_sum(dropped) if len(seg) < 64 else float(np.sum(dropped))


def _batch_reduce(ufunc: np.ufunc) -> BatchKernel:
    return lambda b, c: (ufunc.reduceat(b.values, b.bounds[:-1]), None)


# An exact sum adds each 53-bit mantissa as two integers, its high 26 and low 27 bits, shifted to a
# common exponent: int64 holds them while the exponents of a series span at most 35 bits less its
# count's bit length.
_LOW_BITS = 27
_SPAN_BITS = 35
_SMALLEST_NORMAL = 2.0**-1022  # below it ldexp would round a second time


def exact_sums(v: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each series' sum rounded once (``math.fsum``'s result), and where it was found that way.

    A series is not summed here (left for ``math.fsum``) when it holds a non-finite value, sums to
    zero or to a subnormal or infinite result, or spans too many binary orders of magnitude.
    """
    starts, counts = bounds[:-1], np.diff(bounds)
    finite = np.isfinite(v)
    mantissas, exponents = np.frexp(np.where(finite, v, 0.0))
    ints = (mantissas * 2.0**53).astype(np.int64)
    nonzero = ints != 0
    lowest = np.minimum.reduceat(np.where(nonzero, exponents, 1 << 20), starts)
    highest = np.maximum.reduceat(np.where(nonzero, exponents, -(1 << 20)), starts)
    ok = np.logical_and.reduceat(finite, starts) & (highest - lowest <= _SPAN_BITS - np.frexp(counts)[1])
    shifts = exponents - np.repeat(lowest, counts)
    ints = np.where(np.repeat(ok, counts) & nonzero, ints, 0)
    shifts = np.where(ints != 0, shifts, 0)
    high = ints >> _LOW_BITS
    low = ints - (high << _LOW_BITS)
    high_sums = np.add.reduceat(high << shifts, starts).tolist()
    low_sums = np.add.reduceat(low << shifts, starts).tolist()
    sums = np.zeros(len(counts), dtype=np.float64)
    scales = (lowest - 53).tolist()
    for i in np.flatnonzero(ok).tolist():
        total = (high_sums[i] << _LOW_BITS) + low_sums[i]
        try:
            result = math.ldexp(float(total), scales[i])
        except OverflowError:
            result = math.inf
        if math.isfinite(result) and abs(result) >= _SMALLEST_NORMAL:
            sums[i] = result
        else:
            ok[i] = False
    return sums, ok


def _batch_sum(average: bool) -> BatchKernel:
    """sum_over_time or avg_over_time over a batch: exact sums where ``_sum``/``_avg`` would use ``math.fsum``."""
    single = _avg if average else _sum

    def apply(batch: RangeBatch, ctx: RangeContext) -> BatchResult:
        v, bounds = batch.values, batch.bounds
        counts = np.diff(bounds)
        sums, exact = exact_sums(v, bounds)
        exact &= counts >= 64
        out = sums / counts if average else sums
        edges = bounds.tolist()
        for i in np.flatnonzero(~exact).tolist():
            out[i] = single(v[edges[i] : edges[i + 1]])
        return out, None

    return apply


def per_series(name: str) -> BatchKernel:
    """The batch kernel applying ``RANGE_KERNELS[name]`` to each series in turn."""
    kernel = RANGE_KERNELS[name]

    def apply(batch: RangeBatch, ctx: RangeContext) -> BatchResult:
        times, v, bounds = batch.times(), batch.values, batch.bounds.tolist()
        out = np.empty(len(batch), dtype=np.float64)
        has = np.ones(len(batch), dtype=bool)
        for i in range(len(batch)):
            lo, hi = bounds[i], bounds[i + 1]
            value = kernel(times[lo:hi], v[lo:hi], ctx)
            if value is None:
                has[i] = False
            else:
                out[i] = value
        return out, has

    return apply


BATCH_KERNELS: dict[str, BatchKernel] = {
    **{name: per_series(name) for name in RANGE_KERNELS},
    "rate": lambda b, c: batch_extrapolated_rate(b, c, True, True),
    "increase": lambda b, c: batch_extrapolated_rate(b, c, True, False),
    "delta": lambda b, c: batch_extrapolated_rate(b, c, False, False),
    "sum_over_time": _batch_sum(False),
    "avg_over_time": _batch_sum(True),
    "max_over_time": _batch_reduce(np.fmax),
    "min_over_time": _batch_reduce(np.fmin),
    "count_over_time": lambda b, c: (np.diff(b.bounds).astype(np.float64), None),
    "last_over_time": lambda b, c: (b.values[b.bounds[1:] - 1], None),
    "first_over_time": lambda b, c: (b.values[b.bounds[:-1]], None),
    "present_over_time": lambda b, c: (np.ones(len(b), dtype=np.float64), None),
}


# -- element-wise kernels ------------------------------------------------------


def _sgn(v: np.ndarray) -> np.ndarray:
    signs: np.ndarray = np.sign(v)  # NumPy types a ufunc's result as Any
    return signs


# Go's math.Log2 and math.Log10 (which Prometheus calls) are not libm's: Log2 splits off the
# exponent first and Log10 multiplies Log by 1/Ln10, so their last bit can differ from numpy's.
# promtool compares results exactly.
_LOG2_E = 1.4426950408889634074
_LOG10_E = 0.43429448190325182765


def _go_log2(v: np.ndarray) -> np.ndarray:
    frac, exp = np.frexp(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.log(frac) * _LOG2_E + exp
    log2: np.ndarray = np.where(frac == 0.5, exp - 1.0, result)
    return log2


def _go_log10(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        log10: np.ndarray = np.log(v) * _LOG10_E
    return log10


ELEMENTWISE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "ln": np.log,
    "log2": _go_log2,
    "log10": _go_log10,
    "sqrt": np.sqrt,
    "sgn": _sgn,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": np.degrees,
    "rad": np.radians,
}


def apply_elementwise(name: str, values: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return ELEMENTWISE[name](values)


def go_round(value: float, to_nearest: float) -> float:
    """Prometheus ``round``: half up, to the nearest multiple of ``to_nearest``."""
    inverse = 1.0 / to_nearest
    with np.errstate(all="ignore"):
        return float(np.floor(np.float64(value) * inverse + 0.5) / inverse)


def go_max(a: float, b: float) -> float:
    """Go ``math.Max``: NaN wins."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def go_min(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return min(a, b)


# -- binary arithmetic with Go float semantics -----------------------------------


def arithmetic(op: str, a: float, b: float) -> float:
    """``a op b`` as Go computes it on float64 (no exceptions: Inf and NaN instead)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            if a == 0 or math.isnan(a):
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1.0, b)
        return a / b
    if op == "%":
        if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
            return math.nan
        return math.fmod(a, b)
    if op == "^":
        return _go_pow(a, b)
    if op == "atan2":
        return math.atan2(a, b)
    raise AssertionError(op)


def _go_pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        odd = b.is_integer() and int(b) % 2 == 1
        return -math.inf if a < 0 and odd else math.inf
    except ValueError:
        if a == 0:
            odd = b.is_integer() and int(b) % 2 == 1
            return math.copysign(math.inf, a) if odd else math.inf
        return math.nan


COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def compare(op: str, a: float, b: float) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    raise AssertionError(op)


# -- classic histogram quantile -----------------------------------------------------

_SMALL_DELTA_TOLERANCE = 1e-12


def almost_equal(a: float, b: float, epsilon: float) -> bool:
    """Prometheus ``almost.Equal``: relative comparison, NaN equals NaN."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    min_normal = 2.2250738585072014e-308
    if a == 0 or b == 0 or abs_sum < min_normal:
        return diff < epsilon * min_normal
    return diff / min(abs_sum, 1.7976931348623157e308) < epsilon


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Quantile from classic ``le`` buckets (Prometheus ``BucketQuantile``)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return math.nan
    coalesced: list[list[float]] = []
    for bound, count in buckets:
        if coalesced and coalesced[-1][0] == bound:
            coalesced[-1][1] += count
        else:
            coalesced.append([bound, count])
    prev = coalesced[0][1]
    for bucket in coalesced[1:]:
        current = bucket[1]
        if current == prev:
            continue
        if almost_equal(prev, current, _SMALL_DELTA_TOLERANCE) or current < prev:
            bucket[1] = prev
            continue
        prev = current
    if len(coalesced) < 2:
        return math.nan
    observations = coalesced[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    index = next((i for i in range(len(coalesced) - 1) if coalesced[i][1] >= rank), len(coalesced) - 1)
    if index == len(coalesced) - 1:
        return coalesced[-2][0]
    if index == 0 and coalesced[0][0] <= 0:
        return coalesced[0][0]
    bucket_start = 0.0
    bucket_end, count = coalesced[index]
    if index > 0:
        bucket_start = coalesced[index - 1][0]
        count -= coalesced[index - 1][1]
        rank -= coalesced[index - 1][1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


# -- label_replace template expansion (Go regexp.Expand) ------------------------------


def go_expand(template: str, match: re.Match[str]) -> str:
    """Expand ``$1``, ``${name}`` and ``$$`` as Go's ``Regexp.ExpandString`` does."""
    out: list[str] = []
    rest = template
    while rest:
        before, sep, after = rest.partition("$")
        out.append(before)
        if not sep:
            return "".join(out)
        rest = after
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        name, remaining = _extract_group_name(rest)
        if name is None:
            out.append("$")
            continue
        rest = remaining
        out.append(_group_value(match, name))
    return "".join(out)


def _extract_group_name(text: str) -> tuple[str | None, str]:
    brace = text.startswith("{")
    body = text[1:] if brace else text
    i = 0
    while i < len(body) and (unicodedata.category(body[i])[0] in "LN" or body[i] == "_"):
        i += 1
    if i == 0:
        return None, text
    name = body[:i]
    if brace:
        if i >= len(body) or body[i] != "}":
            return None, text
        i += 1
    return name, body[i:]


def _group_value(match: re.Match[str], name: str) -> str:
    if name.isdigit() and name.isascii():
        if len(name) > 1 and name[0] == "0":
            return ""
        index = int(name)
        if index > match.re.groups:
            return ""
        return match.group(index) or ""
    try:
        return match.group(name) or ""
    except IndexError:
        return ""


# -- dates (UTC, from Unix seconds) ---------------------------------------------------


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day count since 1970-01-01."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def date_part(name: str, seconds: float) -> float:
    """One calendar field of a Unix timestamp in UTC (Prometheus date functions)."""
    whole = int(seconds) if math.isfinite(seconds) else -(2**63)
    days, second_of_day = divmod(whole, 86400)
    year, month, day = _civil_from_days(days)
    if name == "year":
        return float(year)
    if name == "month":
        return float(month)
    if name == "day_of_month":
        return float(day)
    if name == "day_of_week":
        return float((days + 4) % 7)
    if name == "day_of_year":
        return float(_DAYS_BEFORE_MONTH[month - 1] + day + (1 if month > 2 and _is_leap(year) else 0))
    if name == "days_in_month":
        lengths = (31, 29 if _is_leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
        return float(lengths[month - 1])
    if name == "hour":
        return float(second_of_day // 3600)
    if name == "minute":
        return float(second_of_day % 3600 // 60)
    raise AssertionError(name)


def format_value_label(value: float) -> str:
    """A float as Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` renders it (count_values)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
