"""The PromQL subset: parser, printer and evaluator with Prometheus 3 semantics."""

from __future__ import annotations

from rules.promql.engine import Engine
from rules.promql.errors import PromQLError, PromQLEvalError, PromQLSyntaxError
from rules.promql.parser import parse
from rules.promql.values import MatrixResult, Result, ScalarResult, StringResult, VectorResult

__all__ = [
    "Engine",
    "MatrixResult",
    "PromQLError",
    "PromQLEvalError",
    "PromQLSyntaxError",
    "Result",
    "ScalarResult",
    "StringResult",
    "VectorResult",
    "parse",
]
