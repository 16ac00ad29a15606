"""PromQL function signatures: argument and return types, and the functions refused by name.

The parser needs only these; the kernels in functions.py (and numpy) load with the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass

SCALAR = "scalar"
VECTOR = "instant vector"
MATRIX = "range vector"
STRING = "string"


@dataclass(frozen=True)
class FunctionSpec:
    """Argument types, return type and how many optional trailing arguments a function takes.

    ``variadic`` is 0 for a fixed arity, n > 0 for up to n optional trailing arguments and
    -1 for any number of repetitions of the last argument type (as in Prometheus).
    """

    arg_types: tuple[str, ...]
    return_type: str
    variadic: int = 0


def _spec(args: str, ret: str = VECTOR, variadic: int = 0) -> FunctionSpec:
    names = {"s": SCALAR, "v": VECTOR, "m": MATRIX, "t": STRING}
    return FunctionSpec(tuple(names[a] for a in args), ret, variadic)


_MATH = (
    "abs ceil floor exp ln log2 log10 sqrt sgn sin cos tan asin acos atan sinh cosh tanh "
    "asinh acosh atanh deg rad"
).split()
_OVER_TIME = (
    "avg_over_time min_over_time max_over_time sum_over_time count_over_time stddev_over_time "
    "stdvar_over_time last_over_time first_over_time present_over_time"
).split()
_DATE = "day_of_month day_of_week day_of_year days_in_month hour minute month year".split()
_RANGE = "rate irate increase delta idelta deriv changes resets".split()

FUNCTIONS: dict[str, FunctionSpec] = {
    **{name: _spec("v") for name in _MATH},
    **{name: _spec("m") for name in _OVER_TIME + _RANGE},
    **{name: _spec("v", variadic=1) for name in _DATE},
    "absent": _spec("v"),
    "absent_over_time": _spec("m"),
    "clamp": _spec("vss"),
    "clamp_max": _spec("vs"),
    "clamp_min": _spec("vs"),
    "histogram_quantile": _spec("sv"),
    "label_join": _spec("vttt", variadic=-1),
    "label_replace": _spec("vtttt"),
    "pi": _spec("", SCALAR),
    "predict_linear": _spec("ms"),
    "quantile_over_time": _spec("sm"),
    "round": _spec("vs", variadic=1),
    "scalar": _spec("v", SCALAR),
    "sort": _spec("v"),
    "sort_desc": _spec("v"),
    "time": _spec("", SCALAR),
    "timestamp": _spec("v"),
    "vector": _spec("s"),
}

# Prometheus functions this engine rejects by name, with the reason.
UNSUPPORTED_FUNCTIONS = {
    **{
        name: "native histograms are not supported"
        for name in (
            "histogram_avg histogram_count histogram_sum histogram_fraction histogram_stddev "
            "histogram_stdvar histogram_quantiles"
        ).split()
    },
    **{
        name: "experimental functions are not supported"
        for name in (
            "double_exponential_smoothing holt_winters mad_over_time sort_by_label sort_by_label_desc "
            "info limitk limit_ratio ts_of_max_over_time ts_of_min_over_time ts_of_last_over_time "
            "ts_of_first_over_time step range start end min_of max_of"
        ).split()
    },
}
