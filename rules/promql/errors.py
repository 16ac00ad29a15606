"""Errors raised while parsing or evaluating a PromQL expression."""

from __future__ import annotations


class PromQLError(Exception):
    """Base class of every PromQL parse or evaluation error."""


class PromQLSyntaxError(PromQLError):
    """A parse or type-check error at a position inside the expression.

    ``pos`` is the 0-based character offset; ``line`` and ``column`` are 1-based,
    as Prometheus prints them (``1:5: parse error: unexpected ...``).
    """

    def __init__(self, message: str, expr: str, pos: int) -> None:
        pos = max(0, min(pos, len(expr)))
        self.message = message
        self.expr = expr
        self.pos = pos
        self.line = expr.count("\n", 0, pos) + 1
        self.column = pos - (expr.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"{self.line}:{self.column}: parse error: {message}")


class PromQLEvalError(PromQLError):
    """An error found while evaluating a well-formed expression."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
