"""PromQL syntax tree; ``str(node)`` prints an expression that parses back to an equal tree."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rules.durations import format_duration
from rules.golang.fmt import format_float
from rules.matchers import Matcher, MatchOp
from rules.model import LABEL_NAME_RE, METRIC_NAME_RE, NAME_LABEL
from rules.promql.lexer import go_quote
from rules.promql.signatures import FUNCTIONS

# Value types of expressions, named as Prometheus names them in errors.
SCALAR = "scalar"
VECTOR = "instant vector"
MATRIX = "range vector"
STRING = "string"

ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})
COMPARISON_OPS = frozenset({"==", "!=", "<", "<=", ">", ">="})
SET_OPS = frozenset({"and", "or", "unless"})

ONE_TO_ONE = "one-to-one"
MANY_TO_ONE = "many-to-one"
ONE_TO_MANY = "one-to-many"
MANY_TO_MANY = "many-to-many"


def _format_ms(ms: int) -> str:
    if ms < 0:
        return "-" + format_duration(-ms / 1000)
    return format_duration(ms / 1000)


def _label_name(name: str) -> str:
    return name if LABEL_NAME_RE.match(name) else go_quote(name)


class Expr:
    """Base of every node; ``pos`` is the 0-based offset of the node's first character."""

    pos: int

    @property
    def type(self) -> str:
        raise NotImplementedError


def children(node: Expr) -> list[Expr]:
    """The expressions directly inside ``node`` (operands, arguments, the selector of a range)."""
    found: list[Expr] = []
    for value in vars(node).values():
        if isinstance(value, Expr):
            found.append(value)
        elif isinstance(value, tuple):
            found.extend(item for item in value if isinstance(item, Expr))
    return found


@dataclass(eq=False)
class NumberLiteral(Expr):
    value: float
    pos: int = field(default=0, compare=False)

    type = SCALAR

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumberLiteral):
            return NotImplemented
        both_nan = math.isnan(self.value) and math.isnan(other.value)
        return both_nan or self.value == other.value

    __hash__ = None  # type: ignore[assignment]  # unhashable, as __eq__ treats NaN as equal to NaN

    def __str__(self) -> str:
        # "+Inf" would re-parse as a unary plus that binds looser than ^.
        return "Inf" if self.value == math.inf else format_float(self.value)


@dataclass
class StringLiteral(Expr):
    value: str
    pos: int = field(default=0, compare=False)

    type = STRING

    def __str__(self) -> str:
        return go_quote(self.value)


@dataclass
class AtModifier:
    """``@ <seconds>``, ``@ start()`` or ``@ end()``: ``ms`` is set for a fixed time."""

    ms: int | None = None
    keyword: str | None = None

    def __str__(self) -> str:
        if self.keyword is not None:
            return f" @ {self.keyword}()"
        assert self.ms is not None
        return f" @ {self.ms / 1000:.3f}"


@dataclass
class VectorSelector(Expr):
    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at: AtModifier | None = None
    pos: int = field(default=0, compare=False)

    type = VECTOR

    def selector_str(self) -> str:
        shown = list(self.matchers)
        if self.name is not None:
            name_matcher = next(m for m in shown if m.name == NAME_LABEL and m.op is MatchOp.EQ and m.value == self.name)
            shown.remove(name_matcher)
        inner = ", ".join(f"{_label_name(m.name)}{m.op.value}{go_quote(m.value)}" for m in shown)
        if self.name is None:
            return "{" + inner + "}"
        name = self.name if METRIC_NAME_RE.match(self.name) else None
        if name is None:
            return "{" + ", ".join([go_quote(self.name)] + ([inner] if inner else [])) + "}"
        return f"{name}{{{inner}}}" if inner else name

    def modifiers_str(self) -> str:
        text = str(self.at) if self.at is not None else ""
        if self.offset_ms:
            text += f" offset {_format_ms(self.offset_ms)}"
        return text

    def __str__(self) -> str:
        return self.selector_str() + self.modifiers_str()


@dataclass
class MatrixSelector(Expr):
    selector: VectorSelector
    range_ms: int
    pos: int = field(default=0, compare=False)

    type = MATRIX

    def __str__(self) -> str:
        return f"{self.selector.selector_str()}[{_format_ms(self.range_ms)}]{self.selector.modifiers_str()}"


@dataclass
class SubqueryExpr(Expr):
    expr: Expr
    range_ms: int
    step_ms: int  # 0: the default evaluation interval
    offset_ms: int = 0
    at: AtModifier | None = None
    pos: int = field(default=0, compare=False)

    type = MATRIX

    def __str__(self) -> str:
        step = _format_ms(self.step_ms) if self.step_ms else ""
        text = f"{self.expr}[{_format_ms(self.range_ms)}:{step}]"
        if self.at is not None:
            text += str(self.at)
        if self.offset_ms:
            text += f" offset {_format_ms(self.offset_ms)}"
        return text


@dataclass
class Call(Expr):
    func: str
    args: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)

    @property
    def type(self) -> str:
        return FUNCTIONS[self.func].return_type

    def __str__(self) -> str:
        return f"{self.func}({', '.join(str(a) for a in self.args)})"


@dataclass
class AggregateExpr(Expr):
    op: str
    expr: Expr
    param: Expr | None
    grouping: tuple[str, ...]
    without: bool
    pos: int = field(default=0, compare=False)

    type = VECTOR

    def __str__(self) -> str:
        text = self.op
        labels = ", ".join(_label_name(name) for name in self.grouping)
        if self.without:
            text += f" without ({labels}) "
        elif self.grouping:
            text += f" by ({labels}) "
        args = f"{self.param}, {self.expr}" if self.param is not None else str(self.expr)
        return f"{text}({args})"


@dataclass
class VectorMatching:
    card: str
    labels: tuple[str, ...] = ()
    on: bool = False
    include: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = ""
        if self.on or self.labels:
            text = f" {'on' if self.on else 'ignoring'}({', '.join(_label_name(n) for n in self.labels)})"
        if self.card in (MANY_TO_ONE, ONE_TO_MANY):
            if not text:
                text = " ignoring()"
            side = "group_left" if self.card == MANY_TO_ONE else "group_right"
            text += f" {side}({', '.join(_label_name(n) for n in self.include)})"
        return text


@dataclass
class BinaryExpr(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None
    pos: int = field(default=0, compare=False)

    @property
    def type(self) -> str:
        if self.lhs.type == SCALAR and self.rhs.type == SCALAR:
            return SCALAR
        return VECTOR

    def __str__(self) -> str:
        modifiers = " bool" if self.return_bool else ""
        if self.matching is not None:
            modifiers += str(self.matching)
        return f"{self.lhs} {self.op}{modifiers} {self.rhs}"


@dataclass
class UnaryExpr(Expr):
    op: str
    expr: Expr
    pos: int = field(default=0, compare=False)

    @property
    def type(self) -> str:
        return self.expr.type

    def __str__(self) -> str:
        return f"{self.op}{self.expr}"


@dataclass
class ParenExpr(Expr):
    expr: Expr
    pos: int = field(default=0, compare=False)

    @property
    def type(self) -> str:
        return self.expr.type

    def __str__(self) -> str:
        return f"({self.expr})"
