"""PromQL lexer/parser: precedence, literals, positions of errors, printing round trips, fuzzing."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.matchers import MatchOp
from rules.promql import PromQLSyntaxError, parse
from rules.promql.parser import MAX_DEPTH
from rules.promql.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    MatrixSelector,
    NumberLiteral,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorSelector,
)


def test_precedence_follows_prometheus() -> None:
    """* binds tighter than +, ^ is right-associative, and unary minus binds looser than ^."""
    node = parse("a + b * c ^ d ^ e")
    assert isinstance(node, BinaryExpr) and node.op == "+"
    product = node.rhs
    assert isinstance(product, BinaryExpr) and product.op == "*"
    power = product.rhs
    assert isinstance(power, BinaryExpr) and power.op == "^" and isinstance(power.rhs, BinaryExpr)
    negated = parse("-a ^ b")
    assert isinstance(negated, UnaryExpr) and isinstance(negated.expr, BinaryExpr)
    assert str(parse("a or b and c unless d == e")) == "a or b and c unless d == e"
    assert isinstance(parse("a or b and c"), BinaryExpr) and parse("a or b and c").op == "or"  # type: ignore[attr-defined]


def test_number_literals() -> None:
    """Decimal, exponent, hex, Inf/NaN in any case, leading-dot numbers and durations read as seconds."""
    cases = {"12.34e6": 12340000.0, ".2": 0.2, "2.": 2.0, "0x1F": 31.0, "inF": math.inf, "-inf": -math.inf, "1m": 60.0}
    for text, value in cases.items():
        node = parse(text)
        assert isinstance(node, NumberLiteral) and node.value == value, text
    nan = parse("NaN")
    assert isinstance(nan, NumberLiteral) and math.isnan(nan.value)


def test_string_literals_and_escapes() -> None:
    """Double, single and back quotes; Go escapes in the first two only."""
    cases = {'"a\\tb"': "a\tb", "'it\\'s'": "it's", "`raw\\n`": "raw\\n", '"\\u00e9\\x41\\101"': "éAA"}
    for text, value in cases.items():
        node = parse(text)
        assert isinstance(node, StringLiteral) and node.value == value, text


def test_selectors_and_modifiers() -> None:
    """Matchers of all four kinds, ranges, negative offsets, @ timestamps and start()/end()."""
    node = parse('rate(http_requests_total{job="api", code!="500", path=~"/a.*", m!~"x"}[5m] offset -1m @ 100)')
    assert isinstance(node, Call)
    matrix = node.args[0]
    assert isinstance(matrix, MatrixSelector) and matrix.range_ms == 300_000
    selector = matrix.selector
    assert [m.op for m in selector.matchers] == [MatchOp.EQ, MatchOp.NE, MatchOp.RE, MatchOp.NRE, MatchOp.EQ]
    assert selector.offset_ms == -60_000 and selector.at is not None and selector.at.ms == 100_000
    assert parse("foo[90]").range_ms == 90_000  # type: ignore[attr-defined]
    named = parse('{__name__="up", job="x"}')
    assert isinstance(named, VectorSelector) and named.name is None
    sub = parse("max_over_time(rate(x[1m])[10m:30s] @ end())")
    assert isinstance(sub, Call) and isinstance(sub.args[0], SubqueryExpr)


def test_aggregation_modifier_positions() -> None:
    """by/without may come before or after the body; parameters are checked."""
    assert parse("sum by (a) (x)") == parse("sum(x) by (a)")
    node = parse("topk without (b) (3, x)")
    assert isinstance(node, AggregateExpr) and node.without and node.grouping == ("b",)
    assert isinstance(node.param, NumberLiteral)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("up = 1", 'unexpected "="'),
        ("up , 1", 'unexpected ","'),
        ("1 (2)", 'unexpected "("'),
        ('up{a="b"} {', 'unexpected "{"'),
        ("(1 + )", 'unexpected ")"'),
        ('foo{a=}', 'unexpected "}" in label matching, expected string'),
        ("sum(up) by (a,,)", 'unexpected "," in grouping opts, expected label'),
        ("up )", "unexpected right parenthesis ')'"),
        ("(1]", "unexpected right bracket ']'"),
        ("1 + }", "unexpected character: '}'"),
        ("foo{(}", "unexpected character inside braces: '('"),
        ("up[1m:1m:1m]", "unexpected colon ':'"),
    ],
)
def test_unexpected_tokens_are_named_as_prometheus_names_them(expr: str, message: str) -> None:
    """A token out of place is its quoted text, as promtool says; one Prometheus' lexer refuses gets the lexer's words."""
    with pytest.raises(PromQLSyntaxError) as info:
        parse(expr)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("expr", "message", "column"),
    [
        ("sum(foo", "unclosed left parenthesis", 4),
        ("foo)", "unexpected right parenthesis ')'", 4),
        ("1 +", "unexpected end of input", 4),
        ("rate(foo)", 'expected type range vector in call to function "rate", got instant vector', 6),
        ("1 > 2", "comparisons between scalars must use BOOL modifier", 3),
        ("foo + bool bar", "bool modifier can only be used on comparison operators", 5),
        ("{}", "vector selector must contain at least one non-empty matcher", 1),
        ('foo{__name__="bar"}', 'metric name must not be set twice: "foo" or "bar"', 1),
        ("nosuch(x)", 'unknown function with name "nosuch"', 1),
        ("histogram_count(x)", 'function "histogram_count" is not supported: native histograms are not supported', 1),
        ("limitk(1, x)", "aggregation limitk is not supported (experimental in Prometheus)", 1),
        ("sum(x, y)", "wrong number of arguments for aggregate expression provided, expected 1, got 2", 1),
        ("(foo)[5m]", "ranges only allowed for vector selectors", 1),
        ("foo offset 1m offset 2m", "offset may not be set multiple times", 15),
        ("x and 1", 'set operator "and" not allowed in binary scalar expression', 3),
        ('"a" + 1', "binary expression must contain only scalar and instant vector types", 1),
        ("foo[5m] + 1", "binary expression must contain only scalar and instant vector types", 1),
        ("foo !- 1", "unexpected character after '!': '-'", 5),
        ('"abc', "unterminated quoted string", 1),
        ("1.5m", "bad number or duration syntax: '1.5m'", 1),
        ("rate(x[5m])[1m:] + on(a) group_left(a) y", 'label "a" must not occur in ON and GROUP clause at once', 18),
    ],
)
def test_syntax_errors_name_problem_and_position(expr: str, message: str, column: int) -> None:
    """Each error carries Prometheus' message and the 1-based column where it was found."""
    with pytest.raises(PromQLSyntaxError) as caught:
        parse(expr)
    assert caught.value.message == message
    assert (caught.value.line, caught.value.column) == (1, column)
    assert str(caught.value) == f"1:{column}: parse error: {message}"


def test_error_position_on_later_line() -> None:
    """Line and column count newlines in multi-line expressions."""
    with pytest.raises(PromQLSyntaxError) as caught:
        parse("sum(\n  rate(x)\n)")
    assert (caught.value.line, caught.value.column, caught.value.pos) == (2, 8, 12)


EXAMPLES = [
    'sum by (job) (rate(http_requests_total{code=~"5.."}[5m] offset 1m))',
    "a + on(x) group_left(y) b",
    "a * ignoring(x) group_right() b",
    "a > bool 1",
    "-foo",
    "topk(3, x) or vector(1)",
    'label_replace(up, "dst", "$1", "src", "(.*)")',
    "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
    "foo @ 123.000",
    "rate(x[5m])[30m:1m] @ start()",
    "(1 + 2) * 3",
    'count_values("value", x)',
    '{"my.metric", "other.label"="v"}',
    "1e+21",
]


@pytest.mark.parametrize("expr", EXAMPLES)
def test_printer_round_trips(expr: str) -> None:
    """Printing a parsed expression gives text that parses back to an equal tree."""
    printed = str(parse(expr))
    assert parse(printed) == parse(expr)
    assert str(parse(printed)) == printed


_metric = st.sampled_from(["up", "http_requests_total", "node:cpu:rate5m", "sum", "by"])
_label = st.sampled_from(["job", "instance", "le", "on", "__name__"])
_value = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
_quoted = _value.map(lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"')
_matcher = st.builds(lambda l, op, v: f"{l}{op}{v}", _label.filter(lambda l: l != "__name__"), st.sampled_from(["=", "!="]), _quoted)
_selector = st.builds(
    lambda name, ms: f"{name}{{{', '.join(ms)}}}" if ms else name, _metric, st.lists(_matcher, max_size=2)
)
_duration = st.sampled_from(["1s", "5m", "1h30m", "90", "2d", "1w", "500ms"])
_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr).map(lambda s: {"inf": "Inf", "-inf": "-Inf", "nan": "NaN"}.get(s, s)),
    st.sampled_from(["0x1f", "1m", ".5", "2."]),
)


def _vector_expr(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    op = st.sampled_from(["+", "-", "*", "/", "%", "^", "and", "or", "unless", "== bool", "> bool", "atan2"])
    return st.one_of(
        st.builds(lambda a, o, b: f"{a} {o} {b}", children, op, children),
        st.builds(lambda a, b, l: f"{a} * on({l}) group_left() {b}", children, children, _label),
        st.builds(lambda a: f"({a})", children),
        st.builds(lambda a: f"-{a}", children),
        st.builds(lambda agg, g, a: f"{agg} {g} (job) ({a})", st.sampled_from(["sum", "avg", "max", "count"]), st.sampled_from(["by", "without"]), children),
        st.builds(lambda k, a: f"topk({k}, {a})", st.integers(0, 5), children),
        st.builds(lambda f, s, d: f"{f}({s}[{d}])", st.sampled_from(["rate", "increase", "max_over_time", "changes"]), _selector, _duration),
        st.builds(lambda a, d: f"max_over_time(({a})[{d}:])", children, _duration),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["abs", "sort", "sgn", "timestamp"]), children),
    )


_expressions = st.recursive(
    st.one_of(_selector, _selector.map(lambda s: f"{s} offset -5m"), _selector.map(lambda s: f"{s} @ 10")),
    _vector_expr,
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(_expressions, _number))
def test_printed_expressions_parse_back_equal(expr: str) -> None:
    """For generated expressions, print(parse(e)) re-parses to an equal tree and prints the same."""
    node = parse(expr)
    printed = str(node)
    assert parse(printed) == node
    assert str(parse(printed)) == printed


_FUZZ_WORDS = ["sum", "by", "offset", "rate", "[5m:]", "bool", "on", "group_left", "start()", "5m", "0x", "Inf"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(list('abc_:{}[]()"\'`=~!<>+-*/%^@,. 0123456789xeIN#\\\n') + _FUZZ_WORDS), max_size=30
    ).map("".join)
)
def test_fuzz_only_syntax_errors(text: str) -> None:
    """Arbitrary text either parses or raises PromQLSyntaxError with a position inside it, never anything else."""
    try:
        parse(text)
    except PromQLSyntaxError as exc:
        assert 0 <= exc.pos <= len(text)


@settings(max_examples=200, deadline=None)
@given(_expressions, st.integers(0, 200), st.text(max_size=3))
def test_fuzz_mutated_expressions(expr: str, where: int, junk: str) -> None:
    """Valid expressions with characters cut or inserted still fail only with PromQLSyntaxError."""
    cut = where % (len(expr) + 1)
    for mutated in (expr[:cut] + junk + expr[cut:], expr[:cut] + expr[cut + 1 :]):
        try:
            parse(mutated)
        except PromQLSyntaxError:
            pass


@pytest.mark.parametrize(
    ("nest", "column"),
    [
        (lambda n: "abs(" * n + "up" + ")" * n, 401),
        (lambda n: "(" * n + "1" + ")" * n, 101),
        (lambda n: "-" * n + "1", 101),
        (lambda n: "+".join(["up"] * (n + 1)), 300),
    ],
)
def test_nesting_beyond_the_limit_is_a_positioned_syntax_error(nest: Callable[[int], str], column: int) -> None:
    """Calls, parentheses, unary signs or a ``+`` chain 100 levels deep parse; deeper is an error, not a crash."""
    parse(nest(MAX_DEPTH - 1))
    with pytest.raises(PromQLSyntaxError) as info:
        parse(nest(MAX_DEPTH))
    assert str(info.value) == f"1:{column}: parse error: expression nested more than 100 levels deep"


@pytest.mark.parametrize(("expr", "printed"), [
    ("1000000", "1e+06"), ("123456.5", "123456.5"), ("0.0001", "0.0001"), ("0.00001", "1e-05"), ("-2.5e21", "-2.5e+21"),
])
def test_number_literals_print_as_go_prints_a_float(expr: str, printed: str) -> None:
    """A number prints as Go's %v (strconv's shortest 'g': exponent form below 1e-4 and from 1e6), as Prometheus' printer."""
    assert str(parse(expr)) == printed
