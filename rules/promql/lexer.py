"""Tokenizer for PromQL expressions, following the Prometheus 3 lexer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rules.promql.errors import PromQLSyntaxError

# Token kinds. Operators and punctuation use their own text as kind.
NUMBER = "NUMBER"
DURATION = "DURATION"
STRING = "STRING"
IDENT = "IDENT"
EOF = "EOF"

_OPERATORS = (
    "==", "!=", "<=", ">=", "=~", "!~",
    "+", "-", "*", "/", "%", "^", "<", ">", "=",
    "(", ")", "{", "}", "[", "]", ",", ":", "@",
)
# What Prometheus' lexer takes between { and }; anything else there is its "unexpected character inside braces".
_INSIDE_BRACES = frozenset({"}", ",", "=", "!=", "=~", "!~"})
_DIGITS = r"[0-9]+(?:_[0-9]+)*"
_HEX_RE = re.compile(r"0[xX]_?[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*")
_DECIMAL_RE = re.compile(
    rf"(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?[0-9]+)?"
)
_DURATION_RE = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+")
_IDENT_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
}


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (decoded value for strings) and 0-based offset.

    ``lex_error`` is what Prometheus' lexer says on reaching a token that can never be right where it
    stands (a ``)`` closing nothing, a ``(`` inside braces): the parser reports that rather than naming it.
    """

    kind: str
    text: str
    pos: int
    end: int
    lex_error: str = ""


def _is_alnum(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


class Lexer:
    """Turns an expression into tokens; errors carry the offending offset."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.pos = 0
        self.brace_depth = 0
        self.paren_depth = 0
        self.bracket_open = False
        self.bracket_colon = False

    def error(self, message: str, pos: int) -> PromQLSyntaxError:
        return PromQLSyntaxError(message, self.expr, pos)

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            token = self.next_token()
            out.append(token)
            if token.kind == EOF:
                return out

    def next_token(self) -> Token:
        expr = self.expr
        while self.pos < len(expr):
            ch = expr[self.pos]
            if ch in " \t\n\r":
                self.pos += 1
            elif ch == "#":
                end = expr.find("\n", self.pos)
                self.pos = len(expr) if end < 0 else end
            else:
                break
        start = self.pos
        if start >= len(expr):
            return Token(EOF, "", start, start)
        ch = expr[start]
        if ch in "\"'`":
            return self._string(ch)
        if ch.isdigit() or (ch == "." and start + 1 < len(expr) and expr[start + 1].isdigit()):
            return self._number_or_duration()
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            match = (_LABEL_RE if self.brace_depth else _IDENT_RE).match(expr, start)
            assert match is not None
            self.pos = match.end()
            word = match.group()
            if not self.brace_depth and word.lower() in ("inf", "nan"):
                return Token(NUMBER, word, start, self.pos)
            return Token(IDENT, word, start, self.pos)
        for op in _OPERATORS:
            if expr.startswith(op, start):
                self.pos = start + len(op)
                lex_error = self._balance(op)
                if op == "{":
                    self.brace_depth += 1
                elif op == "}" and self.brace_depth:
                    self.brace_depth -= 1
                return Token(op, op, start, self.pos, lex_error)
        if ch == "!":
            nxt = expr[start + 1 : start + 2]
            raise self.error(f"unexpected character after '!': {_go_quote_char(nxt)}", start)
        raise self.error(f"unexpected character: {_go_quote_char(ch)}", start)

    def _balance(self, op: str) -> str:
        """Track parentheses and brackets as Prometheus' lexer does; its error for ``op`` here, or ""."""
        if self.brace_depth:
            if op in _INSIDE_BRACES:
                return ""
            return "unexpected left brace '{'" if op == "{" else f"unexpected character inside braces: '{op[0]}'"
        if op == "}":
            return "unexpected character: '}'"
        if op == "(":
            self.paren_depth += 1
        elif op == ")":
            if self.paren_depth == 0:
                return "unexpected right parenthesis ')'"
            self.paren_depth -= 1
        elif op == "[":
            if self.bracket_open:
                return "unexpected left bracket '['"
            self.bracket_open, self.bracket_colon = True, False
        elif op == "]":
            if not self.bracket_open:
                return "unexpected right bracket ']'"
            self.bracket_open = False
        elif op == ":" and self.bracket_open:
            if self.bracket_colon:
                return "unexpected colon ':'"
            self.bracket_colon = True
        return ""

    def _number_or_duration(self) -> Token:
        expr, start = self.expr, self.pos
        match = _HEX_RE.match(expr, start) or _DECIMAL_RE.match(expr, start)
        if match is not None:
            end = match.end()
            if end >= len(expr) or not _is_alnum(expr[end]):
                self.pos = end
                return Token(NUMBER, match.group(), start, end)
        match = _DURATION_RE.match(expr, start)
        if match is not None:
            end = match.end()
            if end >= len(expr) or not _is_alnum(expr[end]):
                self.pos = end
                return Token(DURATION, match.group(), start, end)
        end = start
        while end < len(expr) and (_is_alnum(expr[end]) or expr[end] == "."):
            end += 1
        raise self.error(f"bad number or duration syntax: {expr[start:end]!r}", start)

    def _string(self, quote: str) -> Token:
        expr, start = self.expr, self.pos
        pos = start + 1
        if quote == "`":
            end = expr.find("`", pos)
            if end < 0:
                raise self.error("unterminated raw string", start)
            self.pos = end + 1
            return Token(STRING, expr[pos:end], start, self.pos)
        out = bytearray()
        while True:
            if pos >= len(expr) or expr[pos] == "\n":
                raise self.error("unterminated quoted string", start)
            ch = expr[pos]
            if ch == quote:
                break
            if ch != "\\":
                out += ch.encode("utf-8", "surrogateescape")
                pos += 1
                continue
            pos += 1
            if pos >= len(expr):
                raise self.error("escape sequence not terminated", pos)
            esc = expr[pos]
            if esc in _SIMPLE_ESCAPES:
                out += _SIMPLE_ESCAPES[esc].encode()
                pos += 1
            elif esc == quote:
                out += esc.encode()
                pos += 1
            elif esc in "01234567" or esc in "xuU":
                digits, base, limit = {"x": (2, 16, 255), "u": (4, 16, 0x10FFFF), "U": (8, 16, 0x10FFFF)}.get(
                    esc, (3, 8, 255)
                )
                first = pos if base == 8 else pos + 1
                text = expr[first : first + digits]
                valid = "01234567" if base == 8 else "0123456789abcdefABCDEF"
                if len(text) < digits or any(c not in valid for c in text):
                    raise self.error(f"illegal character {_go_quote_char(text[-1:] or quote)} in escape sequence", pos)
                value = int(text, base)
                if value > limit or (base == 16 and esc != "x" and 0xD800 <= value < 0xE000):
                    raise self.error("escape sequence is an invalid Unicode code point", pos)
                # \x and octal escapes are raw bytes; \u and \U are code points.
                out += bytes([value]) if esc in "x01234567" else chr(value).encode()
                pos = first + digits
            else:
                raise self.error(f"unknown escape sequence {_go_quote_char(esc)}", pos)
        self.pos = pos + 1
        return Token(STRING, out.decode("utf-8", "surrogateescape"), start, self.pos)


def _go_quote_char(ch: str) -> str:
    return repr(ch) if ch else "EOF"


def go_quote(value: str) -> str:
    """Quote a string the way Go's %q does (invalid UTF-8 bytes as \\xNN)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
