"""Evaluating a PromQL expression over the agent's local store for one service, as healing steps need it.

A ``verify`` step (and a traffic restore's ``guard``) asks "what does this expression return for
this service now?". The runner depends only on the ``ExprEvaluator`` protocol; the agent passes
its implementation (``agent.healing.StoreEvaluator``: the agent's engine over its store, on the
event loop, within the engine's query budget) through ``HealingPlan.evaluate``, and the runtime
hands it to every run as ``ServiceActions.evaluate``. To use it in a step::

    samples = actions.evaluate(expr, actions.service, clock())   # raises PromQLError on a bad query
    journal_text = describe(samples)                              # bounded, for the journal

The service is available to the expression two ways: ``$service`` in the text is replaced by the
service's name (``rate(http_requests_total{service="$service",code=~"5.."}[1m])``), and series
labelled with another ``service`` are dropped from the result (series without the label, such as
``sum(...)`` or host metrics, are kept), so an expression naming no service is scoped to it anyway.
``check(expr)`` is what the config calls to refuse an expression that would never evaluate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rules.model import Labels
from rules.promql import PromQLError, parse
from rules.promql.ast import VECTOR

SERVICE_PLACEHOLDER = "$service"
SERVICE_LABEL = "service"
# How many series of one evaluation the journal keeps, and how long its text may grow.
DESCRIBE_SERIES = 5
DESCRIBE_CHARS = 600

Samples = list[tuple[Labels, float]]


class ExprEvaluator(Protocol):
    """Evaluates ``expr`` for ``service`` at Unix time ``now``; raises ``PromQLError`` when it cannot."""

    def __call__(self, expr: str, service: str, now: float) -> Samples: ...


def bind(expr: str, service: str) -> str:
    """``expr`` with ``$service`` replaced by the service's name (names are ``[A-Za-z0-9_.-]+``: no quoting needed)."""
    return expr.replace(SERVICE_PLACEHOLDER, service)


def scoped(samples: Sequence[tuple[Labels, float]], service: str) -> Samples:
    """The samples that are not another service's: no ``service`` label, or this one."""
    return [(labels, value) for labels, value in samples if labels.get(SERVICE_LABEL, service) == service]


def check(expr: str) -> str | None:
    """Why ``expr`` cannot serve as a healing condition (a syntax error, not an instant vector), or None."""
    try:
        node = parse(bind(expr, "service"))
    except PromQLError as exc:
        return str(exc)
    if node.type != VECTOR:
        return f"the expression must return an instant vector, not a {node.type}"
    return None


def describe(samples: Sequence[tuple[Labels, float]]) -> str:
    """One evaluation's result as bounded text: the count and the first few series with their values."""
    if not samples:
        return "empty"
    shown = "; ".join(f"{labels} {value:g}" for labels, value in samples[:DESCRIBE_SERIES])
    more = f"; and {len(samples) - DESCRIBE_SERIES} more" if len(samples) > DESCRIBE_SERIES else ""
    text = f"{len(samples)} series: {shown}{more}"
    return text if len(text) <= DESCRIBE_CHARS else text[:DESCRIBE_CHARS - 3] + "..."
