"""The healing steps' PromQL facility: $service, scoping to the service, config checks, bounded descriptions."""

from __future__ import annotations

import pytest

from agent.healing import StoreEvaluator
from healers.exprcheck import check, describe
from rules.model import Labels
from rules.promql import Engine, PromQLError
from rules.store import SeriesStore

T = 1_700_000_000.0


def _store() -> SeriesStore:
    store = SeriesStore(retention_s=None)
    for offset, errors in ((0, 1.0), (15, 4.0)):
        store.ingest("scrape:web", [
            (Labels.of("errors_total", {"service": "web"}), errors * 10),
            (Labels.of("errors_total", {"service": "db"}), errors),
            (Labels.of("node_load1"), 0.5),
        ], round((T + offset) * 1000))
    return store


def test_service_placeholder_and_scoping_to_the_service() -> None:
    evaluate = StoreEvaluator(Engine(), _store())
    assert evaluate('errors_total{service="$service"} > 5', "web", T + 15) == [
        (Labels.of("errors_total", {"service": "web"}), 40.0)]
    # Another service's series are dropped; series without a service label stay.
    assert sorted(str(labels) for labels, _ in evaluate("errors_total or node_load1", "db", T + 15)) == [
        'errors_total{service="db"}', "node_load1"]
    assert evaluate("sum(errors_total)", "web", T + 15) == [(Labels(), 44.0)]
    assert evaluate('errors_total{service="$service"} > 100', "web", T + 15) == []


def test_a_scalar_is_one_unlabelled_sample_and_other_types_are_errors() -> None:
    """A restore guard's config only parses its expression, so a scalar can reach the evaluator."""
    evaluate = StoreEvaluator(Engine(), _store())
    assert evaluate("scalar(sum(errors_total))", "web", T + 15) == [(Labels(), 44.0)]
    with pytest.raises(PromQLError, match="must return an instant vector"):
        evaluate('"text"', "web", T + 15)


def test_evaluation_errors_raise_promql_errors() -> None:
    evaluate = StoreEvaluator(Engine(), _store())
    with pytest.raises(PromQLError):
        evaluate("errors_total[1m]", "web", T + 15)
    with pytest.raises(PromQLError):
        evaluate("rate(", "web", T + 15)


def test_check_refuses_what_would_never_evaluate() -> None:
    assert check('rate(errors_total{service="$service"}[1m]) > 0') is None
    assert check("vector(1)") is None
    problem = check("rate(errors_total[1m]")
    assert problem is not None and "parse error" in problem
    assert check("errors_total[1m]") == "the expression must return an instant vector, not a range vector"
    assert check("1 + 1") == "the expression must return an instant vector, not a scalar"


def test_describe_is_bounded() -> None:
    assert describe([]) == "empty"
    many = [(Labels.of("x", {"i": str(i)}), float(i)) for i in range(40)]
    text = describe(many)
    assert text.startswith('40 series: x{i="0"} 0; x{i="1"} 1;') and text.endswith("and 35 more")
    wide = [(Labels.of("x", {"v": "a" * 400}), 1.0)] * 3
    assert len(describe(wide)) == 600
