"""PromQL evaluation against the real SeriesStore: windows, staleness, rate, matching, results, errors."""

from __future__ import annotations

import math

import pytest

from rules.model import Labels
from rules.promql import Engine, MatrixResult, PromQLEvalError, ScalarResult, StringResult, VectorResult, parse
from rules.promql.ast import Expr
from rules.promql.budget import QueryBudget, QueryLimitError, QueryTimeoutError
from rules.promql.snapshot import Snapshot
from rules.store import SeriesStore

MINUTE = 60_000


def _store(series: dict[Labels, list[tuple[int, float]]]) -> SeriesStore:
    store = SeriesStore(retention_s=None)
    for labels, points in series.items():
        for t_ms, value in points:
            assert store.append(labels, t_ms, value)
    return store


def _vector(result: object) -> dict[str, float]:
    assert isinstance(result, VectorResult)
    return {str(labels): value for labels, value in result.samples}


def test_lookback_is_left_open_and_configurable() -> None:
    """A sample exactly lookback old is out of the window; a shorter lookback hides older samples."""
    store = _store({Labels.of("up", {"job": "a"}): [(0, 1.0)]})
    engine = Engine(lookback_s=300)
    assert _vector(engine.instant("up", store, 299_999)) == {'up{job="a"}': 1.0}
    assert _vector(engine.instant("up", store, 300_000)) == {}
    assert _vector(Engine(lookback_s=60).instant("up", store, 61_000)) == {}


def test_stale_marker_from_ingest_ends_series() -> None:
    """A series a source stops reporting disappears at once, not after the lookback."""
    store = SeriesStore(retention_s=None)
    a, b = Labels.of("up", {"job": "a"}), Labels.of("up", {"job": "b"})
    store.ingest("scrape", [(a, 1.0), (b, 1.0)], 0)
    store.ingest("scrape", [(a, 1.0)], 15_000)
    engine = Engine()
    assert _vector(engine.instant("up", store, 10_000)) == {'up{job="a"}': 1.0, 'up{job="b"}': 1.0}
    assert _vector(engine.instant("up", store, 16_000)) == {'up{job="a"}': 1.0}
    assert _vector(engine.instant("count_over_time(up[1m])", store, 16_000)) == {'{job="a"}': 2.0, '{job="b"}': 1.0}


def test_rate_handles_counter_reset_and_extrapolates() -> None:
    """rate/increase add the pre-reset value back and extrapolate to the window edges like Prometheus."""
    counter = Labels.of("requests_total")
    # 15s scrapes, +10 per scrape, reset to 0 after 40.
    values = [0, 10, 20, 30, 40, 0, 10, 20, 30]
    store = _store({counter: [(i * 15_000, float(v)) for i, v in enumerate(values)]})
    engine = Engine()
    t = 8 * 15_000
    increase = _vector(engine.instant("increase(requests_total[2m])", store, t))["{}"]
    # The window (0, 120s] holds 15s..120s: 30 - 10 plus 40 lost at the reset = 60 over 105s, extrapolated
    # 15s back to the window start (under 1.1 * the 15s spacing, and before the zero point at 17.5s).
    assert increase == pytest.approx(60 * 120 / 105)
    rate = _vector(engine.instant("rate(requests_total[2m])", store, t))["{}"]
    assert rate == pytest.approx(increase / 120)
    assert _vector(engine.instant("resets(requests_total[5m])", store, t)) == {"{}": 1.0}
    assert _vector(engine.instant("irate(requests_total[1m])", store, t)) == {"{}": pytest.approx(10 / 15)}


def test_range_query_returns_matrix_sorted_by_labels() -> None:
    """A range query evaluates every step and returns series sorted by labels with their points."""
    store = _store(
        {
            Labels.of("m", {"i": "b"}): [(i * MINUTE, float(i)) for i in range(5)],
            Labels.of("m", {"i": "a"}): [(i * MINUTE, 10.0 * i) for i in range(3)],
        }
    )
    result = Engine().range("m * 2", store, 0, 4 * MINUTE, 2 * MINUTE)
    assert isinstance(result, MatrixResult)
    assert [(str(labels), points) for labels, points in result.series] == [
        ('{i="a"}', [(0, 0.0), (120_000, 40.0), (240_000, 40.0)]),
        ('{i="b"}', [(0, 0.0), (120_000, 4.0), (240_000, 8.0)]),
    ]


def test_at_start_and_end_in_range_query() -> None:
    """@ start() and @ end() pin a selector to the query's first and last step."""
    store = _store({Labels.of("g"): [(i * MINUTE, float(i)) for i in range(10)]})
    result = Engine().range("g @ end() - g @ start()", store, 2 * MINUTE, 5 * MINUTE, MINUTE)
    assert [v for _, v in result.series[0][1]] == [3.0, 3.0, 3.0, 3.0]


def test_result_types() -> None:
    """Scalars, strings and range vectors come back typed; a range query refuses a string."""
    store = _store({Labels.of("g"): [(0, 1.0), (MINUTE, 2.0)]})
    engine = Engine()
    assert engine.instant("time() + 1", store, MINUTE) == ScalarResult(61.0)
    assert engine.instant('"hello"', store, 0) == StringResult("hello")
    matrix = engine.instant("g[2m]", store, MINUTE)
    assert isinstance(matrix, MatrixResult) and matrix.series[0][1] == [(0, 1.0), (MINUTE, 2.0)]
    with pytest.raises(PromQLEvalError, match="invalid expression type"):
        engine.range('"hello"', store, 0, MINUTE, MINUTE)


def test_vector_matching_and_name_dropping() -> None:
    """group_left copies labels from the one side; arithmetic drops the name, comparison keeps it."""
    store = _store(
        {
            Labels.of("cpu", {"node": "n1", "mode": "idle"}): [(0, 3.0)],
            Labels.of("cpu", {"node": "n1", "mode": "user"}): [(0, 1.0)],
            Labels.of("node_info", {"node": "n1", "zone": "z"}): [(0, 1.0)],
        }
    )
    engine = Engine()
    joined = _vector(engine.instant("cpu * on(node) group_left(zone) node_info", store, 0))
    assert joined == {'{mode="idle", node="n1", zone="z"}': 3.0, '{mode="user", node="n1", zone="z"}': 1.0}
    assert _vector(engine.instant("cpu > 2", store, 0)) == {'cpu{mode="idle", node="n1"}': 3.0}
    assert _vector(engine.instant("cpu > bool 2", store, 0)) == {
        '{mode="idle", node="n1"}': 1.0,
        '{mode="user", node="n1"}': 0.0,
    }


def test_evaluation_errors_are_clear() -> None:
    """Ambiguous matches and duplicate output label sets raise PromQLEvalError with Prometheus' text."""
    store = _store(
        {
            Labels.of("a", {"x": "1", "y": "1"}): [(0, 1.0)],
            Labels.of("a", {"x": "1", "y": "2"}): [(0, 1.0)],
            Labels.of("b", {"x": "1"}): [(0, 1.0)],
        }
    )
    engine = Engine()
    with pytest.raises(PromQLEvalError, match="many-to-one matching must be explicit"):
        engine.instant("a + on(x) b", store, 0)
    with pytest.raises(PromQLEvalError, match="found duplicate series for the match group"):
        engine.instant("b + on(x) group_right a * 0 + on(x) a", store, 0)
    with pytest.raises(PromQLEvalError, match="vector cannot contain metrics with the same labelset"):
        engine.instant('label_replace(a, "y", "", "y", ".*")', store, 0)


def test_aggregations_and_topk_order() -> None:
    """Aggregations group by labels; topk returns the largest first; NaN ranks last."""
    store = _store({Labels.of("v", {"i": str(i)}): [(0, float(i))] for i in range(5)} | {Labels.of("v", {"i": "n"}): [(0, math.nan)]})
    engine = Engine()
    assert _vector(engine.instant("sum(v)", store, 0)) == {"{}": pytest.approx(math.nan, nan_ok=True)}
    assert _vector(engine.instant('sum(v{i!="n"})', store, 0)) == {"{}": 10.0}
    top = engine.instant("topk(2, v)", store, 0)
    assert isinstance(top, VectorResult) and [v for _, v in top.samples] == [4.0, 3.0]
    assert _vector(engine.instant('quantile(0.5, v{i!="n"})', store, 0)) == {"{}": 2.0}
    assert _vector(engine.instant('count_values("val", v{i=~"[12]"})', store, 0)) == {'{val="1"}': 1.0, '{val="2"}': 1.0}


def test_logarithms_round_like_go() -> None:
    """log10 and log2 give Go's last bit (what promtool compares exactly), not libm's."""
    store = SeriesStore(retention_s=None)
    for value in (0.3, 7.0, 9.0, 1000.0):
        store.append(Labels.of("x", {"v": repr(value)}), 0, value)
    engine = Engine()
    log10_result, log2_result = engine.instant("log10(x)", store, 0), engine.instant("log2(x)", store, 0)
    assert isinstance(log10_result, VectorResult) and isinstance(log2_result, VectorResult)
    log10 = {labels.get("v"): value for labels, value in log10_result.samples}
    log2 = {labels.get("v"): value for labels, value in log2_result.samples}
    # Values printed by promtool 2.42 for the same inputs.
    assert log10 == {"0.3": -0.5228787452803376, "7.0": 0.8450980400142568, "9.0": 0.954242509439325, "1000.0": 3.0}
    assert log2 == {"0.3": -1.736965594166206, "7.0": 2.807354922057604, "9.0": 3.1699250014423126,
                    "1000.0": 9.965784284662087}


# -- query bounds and snapshots (issue #12) ---------------------------------------------


def _snapshot(engine: Engine, node: Expr, store: SeriesStore, start_ms: int, end_ms: int) -> Snapshot:
    snapshot = Snapshot(node, start_ms, end_ms, engine.lookback_ms)
    for _ in snapshot.fill(store, QueryBudget()):
        pass
    return snapshot


@pytest.mark.parametrize("expr", [
    "up", "up offset 3m", "up @ 120", "rate(up[2m])", "max_over_time(up[5m:30s])",
    "max_over_time(rate(up[1m])[4m:1m] offset 2m)", "up @ start() - up @ end()", "timestamp(up)",
    "absent_over_time(nothing[1m])", "count_over_time(up[30s] @ end())",
])
def test_a_snapshot_answers_like_the_live_store(expr: str) -> None:
    """Evaluated against a snapshot taken for its range, a query returns exactly what the live store gives."""
    store = _store({Labels.of("up", {"job": job}): [(i * 15_000, float(i * n)) for i in range(60)]
                    for n, job in enumerate("abc", start=1)})
    engine = Engine(lookback_s=60)
    start_ms, end_ms, step_ms = 5 * MINUTE, 14 * MINUTE, 45_000
    node = parse(expr)
    if node.type in ("vector", "scalar"):
        ranged = engine.range(node, _snapshot(engine, node, store, start_ms, end_ms), start_ms, end_ms, step_ms)
        assert ranged == engine.range(node, store, start_ms, end_ms, step_ms)
    snapshot = _snapshot(engine, node, store, end_ms, end_ms)
    assert engine.instant(node, snapshot, end_ms) == engine.instant(node, store, end_ms)


def test_the_sample_budget_covers_subquery_steps() -> None:
    """A subquery of a million steps over no data at all still runs out of a 10,000-sample budget."""
    with pytest.raises(QueryLimitError, match="query processing would load too many samples"):
        Engine().instant("sum_over_time(vector(1)[1000s:1ms])", SeriesStore(), 1_000_000, QueryBudget(10_000))


def test_the_deadline_is_checked_while_evaluating() -> None:
    """With a clock that advances a second per reading, a 5 s budget stops a long subquery with a timeout."""
    ticks = iter(range(10**9))
    budget = QueryBudget(timeout_s=5, clock=lambda: float(next(ticks)))
    with pytest.raises(QueryTimeoutError, match="query timed out in query execution"):
        Engine().instant("sum_over_time(vector(1)[1000s:1ms])", SeriesStore(), 1_000_000, budget)
    assert budget.clock() < 100


def test_a_subquery_that_can_never_fit_is_refused_before_its_first_step() -> None:
    """[10000d:1ms] is 864 billion steps: refused at once against the engine's own default budget."""
    ticks = iter(range(10**9))
    engine = Engine(max_samples=50_000_000)
    with pytest.raises(QueryLimitError):
        engine.instant("max_over_time(vector(1)[10000d:1ms])", SeriesStore(), 1_000_000,
                       QueryBudget(50_000_000, timeout_s=10**8, clock=lambda: float(next(ticks))))
    with pytest.raises(QueryLimitError):
        engine.instant("max_over_time(vector(1)[10000d:1ms])", SeriesStore(), 1_000_000)


def test_an_engine_bounds_queries_that_bring_no_budget() -> None:
    """The engine's max_samples applies to every query not given a budget, as rule evaluations are not."""
    with pytest.raises(QueryLimitError):
        Engine(max_samples=10_000).instant("sum_over_time(vector(1)[1000s:10ms])", SeriesStore(), 1_000_000)
    assert Engine().instant("sum_over_time(vector(1)[1000s:1s])", SeriesStore(), 1_000_000) is not None
