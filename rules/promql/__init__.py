"""The PromQL subset: parser, printer and evaluator with Prometheus 3 semantics.

Each name is imported on first use (PEP 562): checking a rule file parses its expressions
without loading the evaluator and numpy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rules.promql.engine import Engine
    from rules.promql.errors import PromQLError, PromQLEvalError, PromQLSyntaxError
    from rules.promql.parser import parse
    from rules.promql.values import MatrixResult, Result, ScalarResult, StringResult, VectorResult

_HOMES = {
    "Engine": "engine",
    "PromQLError": "errors",
    "PromQLEvalError": "errors",
    "PromQLSyntaxError": "errors",
    "parse": "parser",
    "MatrixResult": "values",
    "Result": "values",
    "ScalarResult": "values",
    "StringResult": "values",
    "VectorResult": "values",
}

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


def __getattr__(name: str) -> Any:
    """Import the module that holds ``name`` the first time it is asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
