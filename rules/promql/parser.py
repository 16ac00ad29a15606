"""Recursive-descent PromQL parser with Prometheus 3 precedence and type checks."""

from __future__ import annotations

import math
from typing import TypeVar

from rules.durations import parse_duration
from rules.matchers import Matcher, MatchOp
from rules.model import NAME_LABEL
from rules.promql.ast import (
    COMPARISON_OPS,
    MANY_TO_MANY,
    MANY_TO_ONE,
    ONE_TO_MANY,
    ONE_TO_ONE,
    SCALAR,
    SET_OPS,
    STRING,
    VECTOR,
    AggregateExpr,
    AtModifier,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorMatching,
    VectorSelector,
    children,
)
from rules.promql.errors import PromQLSyntaxError
from rules.promql.signatures import FUNCTIONS, UNSUPPORTED_FUNCTIONS
from rules.promql.lexer import DURATION, EOF, IDENT, NUMBER, STRING as STRING_TOKEN, Lexer, Token, go_quote

_E = TypeVar("_E", bound=Expr)

AGGREGATORS = frozenset(
    {"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "count_values", "quantile"}
)
_UNSUPPORTED_AGGREGATORS = frozenset({"limitk", "limit_ratio"})
_PARAM_TYPES = {"topk": SCALAR, "bottomk": SCALAR, "quantile": SCALAR, "count_values": STRING}
_PRECEDENCE = {
    "or": 1,
    "and": 2, "unless": 2,
    "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
    "+": 4, "-": 4,
    "*": 5, "/": 5, "%": 5, "atan2": 5,
    "^": 6,
}
_WORD_OPS = frozenset({"and", "or", "unless", "atan2"})
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "start", "end"}
)
# Tokens Prometheus names by their quoted text (its ItemTypeStr entries that are not operators): unexpected "=".
_QUOTED_TOKENS = frozenset({"(", ")", "{", "}", "[", "]", ",", ":", "="})
_MATCH_OPS = {"=": MatchOp.EQ, "!=": MatchOp.NE, "=~": MatchOp.RE, "!~": MatchOp.NRE}
# Levels of nesting, in the text and in the tree (a+b+c is two levels): the parser, type checks, printing and
# evaluation all recurse once or a few times per level, and Python's stack ends near 1,000 frames.
MAX_DEPTH = 100


def parse(expr: str) -> Expr:
    """Parse and type-check a PromQL expression; raise PromQLSyntaxError on any problem."""
    return _Parser(expr).parse()


def _describe(token: Token) -> str:
    if token.kind == EOF:
        return "end of input"
    if token.kind == IDENT:
        word = token.text.lower()
        if word in AGGREGATORS or word in _UNSUPPORTED_AGGREGATORS:
            return f"<aggr:{word}>"
        if word in _WORD_OPS:
            return f"<op:{word}>"
        if word in _KEYWORDS:
            return f"<{word}>"
        return f'identifier "{token.text}"'
    if token.kind == NUMBER:
        return f'number "{token.text}"'
    if token.kind == DURATION:
        return f'duration "{token.text}"'
    if token.kind == STRING_TOKEN:
        return f"string {go_quote(token.text)}"
    if token.kind in _QUOTED_TOKENS:
        return go_quote(token.kind)
    if token.kind == "@":
        return "<@>"
    return f"<op:{token.kind}>"


def parse_number(text: str) -> float:
    """Value of a NUMBER token (decimal, hex, Inf, NaN, with ``_`` digit separators)."""
    lowered = text.lower()
    if lowered == "inf":
        return math.inf
    if lowered == "nan":
        return math.nan
    clean = text.replace("_", "")
    if clean[:2].lower() == "0x":
        return float(int(clean, 16))
    return float(clean)


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = Lexer(expr).tokens()
        self.index = 0
        self.depth = 0
        # Height of each subtree built so far, by id; the node is kept so that its id is never reused.
        self.heights: dict[int, tuple[Expr, int]] = {}

    # -- token helpers -------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != EOF:
            self.index += 1
        return token

    def error(self, message: str, pos: int) -> PromQLSyntaxError:
        return PromQLSyntaxError(message, self.expr, pos)

    def unexpected(self, token: Token, context: str = "") -> PromQLSyntaxError:
        if token.lex_error:
            return self.error(token.lex_error, token.pos)
        suffix = f" {context}" if context else ""
        return self.error(f"unexpected {_describe(token)}{suffix}", token.pos)

    def is_word(self, token: Token, *words: str) -> bool:
        return token.kind == IDENT and token.text.lower() in words

    def expect(self, kind: str, context: str = "") -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.unexpected(token, context)
        return self.advance()

    def close_paren(self, opening: Token) -> None:
        token = self.peek()
        if token.kind == ")":
            self.advance()
            return
        if token.kind == EOF:
            raise self.error("unclosed left parenthesis", opening.pos)
        raise self.unexpected(token)

    # -- expressions ---------------------------------------------------

    def parse(self) -> Expr:
        if self.peek().kind == EOF:
            raise self.error("no expression found in input", 0)
        node = self.parse_expr(0)
        token = self.peek()
        if token.kind != EOF:
            if token.kind == ")":
                raise self.error("unexpected right parenthesis ')'", token.pos)
            raise self.unexpected(token)
        return node

    def binary_op(self, token: Token) -> str | None:
        if token.kind == IDENT:
            word = token.text.lower()
            return word if word in _WORD_OPS else None
        return token.kind if token.kind in _PRECEDENCE else None

    def parse_expr(self, min_precedence: int) -> Expr:
        start = self.peek()
        if self.depth >= MAX_DEPTH:
            raise self.too_deep(start)
        self.depth += 1
        try:
            lhs = self.bounded(self.parse_unary(), start)
            while True:
                op_token = self.peek()
                op = self.binary_op(op_token)
                if op is None or _PRECEDENCE[op] < min_precedence:
                    return lhs
                self.advance()
                return_bool, matching = self.parse_binary_modifiers()
                # ^ is right-associative; all other operators are left-associative.
                next_min = _PRECEDENCE[op] if op == "^" else _PRECEDENCE[op] + 1
                rhs = self.parse_expr(next_min)
                node = self.bounded(BinaryExpr(op, lhs, rhs, return_bool, matching, pos=lhs.pos), op_token)
                lhs = self.check_binary(node, op_token)
        finally:
            self.depth -= 1

    def too_deep(self, token: Token) -> PromQLSyntaxError:
        return self.error(f"expression nested more than {MAX_DEPTH} levels deep", token.pos)

    def bounded(self, node: _E, token: Token) -> _E:
        """``node``, unless its tree is deeper than MAX_DEPTH (long operator chains grow it without recursion)."""
        if self.height(node) > MAX_DEPTH:
            raise self.too_deep(token)
        return node

    def height(self, node: Expr) -> int:
        """Levels of the tree under ``node``; subtrees from earlier calls are looked up, so this recurses little."""
        known = self.heights.get(id(node))
        if known is not None and known[0] is node:
            return known[1]
        height = 1 + max((self.height(child) for child in children(node)), default=0)
        self.heights[id(node)] = (node, height)
        return height

    def parse_binary_modifiers(self) -> tuple[bool, VectorMatching]:
        return_bool = False
        if self.is_word(self.peek(), "bool"):
            self.advance()
            return_bool = True
        matching = VectorMatching(ONE_TO_ONE)
        if self.is_word(self.peek(), "on", "ignoring"):
            matching.on = self.advance().text.lower() == "on"
            matching.labels = self.parse_label_list()
            if self.is_word(self.peek(), "group_left", "group_right"):
                side = self.advance().text.lower()
                matching.card = MANY_TO_ONE if side == "group_left" else ONE_TO_MANY
                if self.peek().kind == "(":
                    matching.include = self.parse_label_list()
        return return_bool, matching

    def parse_label_list(self) -> tuple[str, ...]:
        opening = self.expect("(", "in grouping opts, expected \"(\"")
        labels: list[str] = []
        while True:
            token = self.peek()
            if token.kind == ")":
                self.advance()
                return tuple(labels)
            if token.kind == EOF:
                raise self.error("unclosed left parenthesis", opening.pos)
            if token.kind not in (IDENT, STRING_TOKEN):
                raise self.unexpected(token, "in grouping opts, expected label")
            labels.append(self.advance().text)
            token = self.peek()
            if token.kind == ",":
                self.advance()
            elif token.kind != ")":
                raise self.unexpected(token, 'in grouping opts, expected ")" or ","')

    def parse_unary(self) -> Expr:
        token = self.peek()
        if token.kind in ("+", "-"):
            self.advance()
            # Unary operators bind tighter than everything but ^ (%prec MUL in the grammar).
            operand = self.parse_expr(_PRECEDENCE["^"])
            if isinstance(operand, NumberLiteral):
                value = -operand.value if token.kind == "-" else operand.value
                return NumberLiteral(value, pos=token.pos)
            if operand.type not in (SCALAR, VECTOR):
                raise self.error(
                    "unary expression only allowed on expressions of type scalar or instant vector, "
                    f'got "{operand.type}"',
                    token.pos,
                )
            return UnaryExpr(token.kind, operand, pos=token.pos)
        return self.parse_postfix(self.parse_primary())

    def parse_primary(self) -> Expr:
        token = self.peek()
        if token.kind == NUMBER:
            self.advance()
            try:
                return NumberLiteral(parse_number(token.text), pos=token.pos)
            except ValueError:
                raise self.error(f"error parsing number: {token.text}", token.pos) from None
        if token.kind == DURATION:
            self.advance()
            return NumberLiteral(self.duration_ms(token) / 1000, pos=token.pos)
        if token.kind == STRING_TOKEN:
            self.advance()
            return StringLiteral(token.text, pos=token.pos)
        if token.kind == "(":
            self.advance()
            inner = self.parse_expr(0)
            self.close_paren(token)
            return ParenExpr(inner, pos=token.pos)
        if token.kind == "{":
            return self.parse_selector(None, token)
        if token.kind == IDENT:
            word = token.text.lower()
            following = self.peek(1)
            starts_call = following.kind == "("
            if word in AGGREGATORS | _UNSUPPORTED_AGGREGATORS and (
                starts_call or self.is_word(following, "by", "without")
            ):
                return self.parse_aggregation()
            if starts_call:
                return self.parse_call()
            if word in _WORD_OPS:
                raise self.unexpected(token)
            self.advance()
            return self.parse_selector(token.text, token)
        raise self.unexpected(token)

    def parse_call(self) -> Expr:
        name_token = self.advance()
        name = name_token.text
        if name in UNSUPPORTED_FUNCTIONS:
            raise self.error(f"function {go_quote(name)} is not supported: {UNSUPPORTED_FUNCTIONS[name]}", name_token.pos)
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.error(f"unknown function with name {go_quote(name)}", name_token.pos)
        args = self.parse_call_args()
        call = Call(name, tuple(args), pos=name_token.pos)
        nargs = len(spec.arg_types)
        context = f"call to function {go_quote(name)}"
        if spec.variadic == 0:
            if nargs != len(args):
                raise self.error(
                    f"expected {nargs} argument(s) in {context}, got {len(args)}", name_token.pos
                )
        else:
            minimum = nargs - 1
            if minimum > len(args):
                raise self.error(
                    f"expected at least {minimum} argument(s) in {context}, got {len(args)}", name_token.pos
                )
            maximum = minimum + spec.variadic
            if spec.variadic > 0 and maximum < len(args):
                raise self.error(
                    f"expected at most {maximum} argument(s) in {context}, got {len(args)}", name_token.pos
                )
        for i, arg in enumerate(args):
            want = spec.arg_types[min(i, nargs - 1)]
            self.expect_type(arg, want, context)
        return call

    def parse_call_args(self) -> list[Expr]:
        opening = self.expect("(")
        args: list[Expr] = []
        while True:
            token = self.peek()
            if token.kind == ")":
                self.advance()
                return args
            if token.kind == EOF:
                raise self.error("unclosed left parenthesis", opening.pos)
            args.append(self.parse_expr(0))
            token = self.peek()
            if token.kind == ",":
                self.advance()
            elif token.kind != ")":
                if token.kind == EOF:
                    raise self.error("unclosed left parenthesis", opening.pos)
                raise self.unexpected(token)

    def parse_aggregation(self) -> Expr:
        op_token = self.advance()
        op = op_token.text.lower()
        if op in _UNSUPPORTED_AGGREGATORS:
            raise self.error(f"aggregation {op} is not supported (experimental in Prometheus)", op_token.pos)
        grouping: tuple[str, ...] = ()
        without = False
        modifier_seen = False
        if self.is_word(self.peek(), "by", "without"):
            without = self.advance().text.lower() == "without"
            grouping = self.parse_label_list()
            modifier_seen = True
        args = self.parse_call_args()
        if not modifier_seen and self.is_word(self.peek(), "by", "without"):
            without = self.advance().text.lower() == "without"
            grouping = self.parse_label_list()
        wanted = 2 if op in _PARAM_TYPES else 1
        if len(args) != wanted:
            raise self.error(
                f"wrong number of arguments for aggregate expression provided, expected {wanted}, got {len(args)}",
                op_token.pos,
            )
        param = args[0] if wanted == 2 else None
        inner = args[-1]
        self.expect_type(inner, VECTOR, "aggregation expression")
        if param is not None:
            self.expect_type(param, _PARAM_TYPES[op], "aggregation parameter")
        return AggregateExpr(op, inner, param, grouping, without, pos=op_token.pos)

    def parse_selector(self, name: str | None, first: Token) -> VectorSelector:
        matchers: list[Matcher] = []
        if self.peek().kind == "{":
            matchers = self.parse_matchers()
        if name is not None:
            for matcher in matchers:
                if matcher.name == NAME_LABEL and matcher.op is MatchOp.EQ:
                    raise self.error(
                        f"metric name must not be set twice: {go_quote(name)} or {go_quote(matcher.value)}", first.pos
                    )
            matchers.append(self.matcher(NAME_LABEL, MatchOp.EQ, name, first))
        if all(m.matches("") for m in matchers):
            raise self.error("vector selector must contain at least one non-empty matcher", first.pos)
        return VectorSelector(name, tuple(matchers), pos=first.pos)

    def matcher(self, name: str, op: MatchOp, value: str, token: Token) -> Matcher:
        try:
            return Matcher(name, op, value)
        except ValueError as exc:
            raise self.error(str(exc), token.pos) from None

    def parse_matchers(self) -> list[Matcher]:
        opening = self.advance()
        matchers: list[Matcher] = []
        while True:
            token = self.peek()
            if token.kind == "}":
                self.advance()
                return matchers
            if token.kind == EOF:
                raise self.error("unexpected end of input inside braces", opening.pos)
            if token.kind not in (IDENT, STRING_TOKEN):
                raise self.unexpected(token, "in label matching, expected label matching operator")
            label = self.advance()
            op_token = self.peek()
            if label.kind == STRING_TOKEN and op_token.kind in (",", "}"):
                # A lone quoted string is the metric name: {"my.metric"}.
                matchers.append(self.matcher(NAME_LABEL, MatchOp.EQ, label.text, label))
            else:
                if op_token.kind not in _MATCH_OPS:
                    raise self.unexpected(op_token, "in label matching, expected label matching operator")
                self.advance()
                value = self.peek()
                if value.kind != STRING_TOKEN:
                    raise self.unexpected(value, "in label matching, expected string")
                self.advance()
                matchers.append(self.matcher(label.text, _MATCH_OPS[op_token.kind], value.text, label))
            token = self.peek()
            if token.kind == ",":
                self.advance()
            elif token.kind != "}":
                if token.kind == EOF:
                    raise self.error("unexpected end of input inside braces", opening.pos)
                raise self.unexpected(token, 'in label matching, expected "," or "}"')

    # -- postfix modifiers ----------------------------------------------

    def parse_postfix(self, node: Expr) -> Expr:
        while True:
            token = self.peek()
            if token.kind == "[":
                node = self.parse_range(node)
            elif self.is_word(token, "offset"):
                self.advance()
                node = self.apply_offset(node, token)
            elif token.kind == "@":
                self.advance()
                node = self.apply_at(node, token)
            else:
                return node

    def duration_ms(self, token: Token) -> int:
        if token.kind == NUMBER:
            seconds = parse_number(token.text)
            if not math.isfinite(seconds):
                raise self.error(f"invalid duration {token.text!r}", token.pos)
            return round(seconds * 1000)
        try:
            return round(parse_duration(token.text) * 1000)
        except ValueError:
            raise self.error(f"not a valid duration string: {go_quote(token.text)}", token.pos) from None

    def duration_token(self, context: str) -> Token:
        token = self.peek()
        if token.kind not in (NUMBER, DURATION):
            raise self.unexpected(token, context)
        return self.advance()

    def parse_range(self, node: Expr) -> Expr:
        opening = self.advance()
        range_token = self.duration_token("in subquery or range selector, expected duration")
        range_ms = self.duration_ms(range_token)
        token = self.peek()
        if token.kind == "]":
            self.advance()
            if not isinstance(node, VectorSelector):
                raise self.error("ranges only allowed for vector selectors", node.pos)
            if node.offset_ms:
                raise self.error("no offset modifiers allowed before range", node.pos)
            if node.at is not None:
                raise self.error("no @ modifiers allowed before range", node.pos)
            if range_ms <= 0:
                raise self.error("range must be greater than 0", range_token.pos)
            return MatrixSelector(node, range_ms, pos=node.pos)
        if token.kind != ":":
            if token.kind == EOF:
                raise self.error("unclosed left bracket", opening.pos)
            raise self.unexpected(token, 'in subquery or range selector, expected "]" or ":"')
        self.advance()
        step_ms = 0
        if self.peek().kind != "]":
            step_ms = self.duration_ms(self.duration_token("in subquery, expected duration or \"]\""))
        closing = self.peek()
        if closing.kind != "]":
            if closing.kind == EOF:
                raise self.error("unclosed left bracket", opening.pos)
            raise self.unexpected(closing, 'in subquery, expected "]"')
        self.advance()
        if node.type != VECTOR:
            raise self.error(f"subquery is only allowed on instant vector, got {node.type}", node.pos)
        return SubqueryExpr(node, range_ms, step_ms, pos=node.pos)

    def modified_target(self, node: Expr, what: str) -> VectorSelector | SubqueryExpr:
        if isinstance(node, MatrixSelector):
            return node.selector
        if isinstance(node, (VectorSelector, SubqueryExpr)):
            return node
        raise self.error(
            f"{what} modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            node.pos,
        )

    def apply_offset(self, node: Expr, keyword: Token) -> Expr:
        target = self.modified_target(node, "offset")
        sign = 1
        if self.peek().kind in ("-", "+"):
            sign = -1 if self.advance().kind == "-" else 1
        offset_ms = sign * self.duration_ms(self.duration_token("in offset, expected duration"))
        if target.offset_ms:
            raise self.error("offset may not be set multiple times", keyword.pos)
        target.offset_ms = offset_ms
        return node

    def apply_at(self, node: Expr, at_token: Token) -> Expr:
        target = self.modified_target(node, "@")
        if target.at is not None:
            raise self.error("@ <timestamp> may not be set multiple times", at_token.pos)
        token = self.peek()
        if self.is_word(token, "start", "end"):
            self.advance()
            self.expect("(")
            self.expect(")")
            target.at = AtModifier(keyword=token.text.lower())
            return node
        sign = 1.0
        if token.kind in ("-", "+"):
            sign = -1.0 if self.advance().kind == "-" else 1.0
            token = self.peek()
        if token.kind not in (NUMBER, DURATION):
            raise self.unexpected(token, 'in @, expected timestamp or "start()" or "end()"')
        self.advance()
        seconds = sign * (parse_number(token.text) if token.kind == NUMBER else self.duration_ms(token) / 1000)
        if not math.isfinite(seconds) or abs(seconds) > 9.2e15:
            raise self.error(f"timestamp out of bounds for @ modifier: {seconds}", token.pos)
        target.at = AtModifier(ms=round(seconds * 1000))
        return node

    # -- type checks ------------------------------------------------------

    def expect_type(self, node: Expr, want: str, context: str) -> None:
        if node.type != want:
            raise self.error(f"expected type {want} in {context}, got {node.type}", node.pos)

    def check_binary(self, node: BinaryExpr, op_token: Token) -> BinaryExpr:
        op = node.op
        lt, rt = node.lhs.type, node.rhs.type
        matching = node.matching
        assert matching is not None
        if node.return_bool and op not in COMPARISON_OPS:
            raise self.error("bool modifier can only be used on comparison operators", op_token.pos)
        if op in COMPARISON_OPS and not node.return_bool and lt == SCALAR and rt == SCALAR:
            raise self.error("comparisons between scalars must use BOOL modifier", op_token.pos)
        if op in SET_OPS and matching.card == ONE_TO_ONE:
            matching.card = MANY_TO_MANY
        if matching.on:
            for label in matching.labels:
                if label in matching.include:
                    raise self.error(f"label {go_quote(label)} must not occur in ON and GROUP clause at once", op_token.pos)
        for side, side_type in ((node.lhs, lt), (node.rhs, rt)):
            if side_type not in (SCALAR, VECTOR):
                raise self.error("binary expression must contain only scalar and instant vector types", side.pos)
        if lt != VECTOR or rt != VECTOR:
            if matching.labels or matching.on or matching.card in (MANY_TO_ONE, ONE_TO_MANY):
                raise self.error("vector matching only allowed between instant vectors", op_token.pos)
            node.matching = None
        elif op in SET_OPS and matching.card in (MANY_TO_ONE, ONE_TO_MANY):
            raise self.error(f'no grouping allowed for "{op}" operation', op_token.pos)
        if (lt == SCALAR or rt == SCALAR) and op in SET_OPS:
            raise self.error(f'set operator "{op}" not allowed in binary scalar expression', op_token.pos)
        return node
