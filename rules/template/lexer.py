"""Tokens of Go's text/template, scanned the way text/template/parse/lex.go does.

Positions are byte offsets into the UTF-8 input (Go reports columns in bytes),
so the lexer works on the encoded text and decodes token values on the way out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from rules.golang.fmt import quote


class Item(IntEnum):
    """Token types; keywords sort after KEYWORD as in Go."""

    ERROR = 0
    BOOL = 1
    CHAR = 2
    CHAR_CONSTANT = 3
    COMMENT = 4
    COMPLEX = 5
    ASSIGN = 6
    DECLARE = 7
    EOF = 8
    FIELD = 9
    IDENTIFIER = 10
    LEFT_DELIM = 11
    LEFT_PAREN = 12
    NUMBER = 13
    PIPE = 14
    RAW_STRING = 15
    RIGHT_DELIM = 16
    RIGHT_PAREN = 17
    SPACE = 18
    STRING = 19
    TEXT = 20
    VARIABLE = 21
    KEYWORD = 22
    BLOCK = 23
    BREAK = 24
    CONTINUE = 25
    DOT = 26
    DEFINE = 27
    ELSE = 28
    END = 29
    IF = 30
    NIL = 31
    RANGE = 32
    TEMPLATE = 33
    WITH = 34


KEYWORDS = {
    ".": Item.DOT, "block": Item.BLOCK, "break": Item.BREAK, "continue": Item.CONTINUE,
    "define": Item.DEFINE, "else": Item.ELSE, "end": Item.END, "if": Item.IF,
    "range": Item.RANGE, "nil": Item.NIL, "template": Item.TEMPLATE, "with": Item.WITH,
}

LEFT_DELIM = b"{{"
RIGHT_DELIM = b"}}"
LEFT_COMMENT = b"/*"
RIGHT_COMMENT = b"*/"
SPACE_CHARS = b" \t\r\n"
TRIM_MARKER_LEN = 2
EOF_RUNE = ""


@dataclass(frozen=True)
class Token:
    """One scanned token: type, byte offset, text and 1-based line."""

    typ: Item
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        if self.typ == Item.EOF:
            return "EOF"
        if self.typ == Item.ERROR:
            return self.val
        if self.typ > Item.KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return quote(self.val[:10]) + "..."
        return quote(self.val)


def is_space(char: str) -> bool:
    return char in (" ", "\t", "\r", "\n")


def is_alphanumeric(char: str) -> bool:
    return char == "_" or (char != "" and (char.isalpha() or unicodedata.category(char) == "Nd"))


def _has_left_trim_marker(data: bytes) -> bool:
    return len(data) >= 2 and data[0:1] == b"-" and data[1:2] in (b" ", b"\t", b"\r", b"\n")


def _has_right_trim_marker(data: bytes) -> bool:
    return len(data) >= 2 and data[0:1] in (b" ", b"\t", b"\r", b"\n") and data[1:2] == b"-"


State = Callable[["Lexer"], "State | None"]


class Lexer:
    """Produces tokens on demand (``next_item``), like Go's synchronous lexer."""

    def __init__(self, text: str, break_ok: bool = True, continue_ok: bool = True) -> None:
        self.input = text.encode()
        self.pos = 0
        self.start = 0
        self.at_eof = False
        self.paren_depth = 0
        self.line = 1
        self.start_line = 1
        self.item = Token(Item.EOF, 0, "EOF", 1)
        self.inside_action = False
        self.break_ok = break_ok
        self.continue_ok = continue_ok

    # -- rune access (UTF-8 aware, byte positions)

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.at_eof = True
            return EOF_RUNE
        char, width = _decode(self.input, self.pos)
        self.pos += width
        if char == "\n":
            self.line += 1
        return char

    def peek(self) -> str:
        char = self.next()
        self.backup()
        return char

    def backup(self) -> None:
        if not self.at_eof and self.pos > 0:
            start = self.pos - 1
            while start > 0 and (self.input[start] & 0xC0) == 0x80:
                start -= 1
            if self.input[start:self.pos] == b"\n":
                self.line -= 1
            self.pos = start

    def this_item(self, typ: Item) -> Token:
        token = Token(typ, self.start, self.input[self.start:self.pos].decode(errors="replace"),
                      self.start_line)
        self.start = self.pos
        self.start_line = self.line
        return token

    def emit(self, typ: Item) -> None:
        self.item = self.this_item(typ)

    def ignore(self) -> None:
        self.line += self.input[self.start:self.pos].count(b"\n")
        self.start = self.pos
        self.start_line = self.line

    def accept(self, valid: str) -> bool:
        if (char := self.next()) != "" and char in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while (char := self.next()) != "" and char in valid:
            pass
        self.backup()

    def errorf(self, message: str) -> None:
        self.item = Token(Item.ERROR, self.start, message, self.start_line)
        self.start = 0
        self.pos = 0
        self.input = b""

    def next_item(self) -> Token:
        self.item = Token(Item.EOF, self.pos, "EOF", self.start_line)
        state: State | None = lex_inside_action if self.inside_action else lex_text
        while state is not None:
            state = state(self)
        return self.item

    def at_right_delim(self) -> tuple[bool, bool]:
        rest = self.input[self.pos:]
        if _has_right_trim_marker(rest) and rest[TRIM_MARKER_LEN:].startswith(RIGHT_DELIM):
            return True, True
        if rest.startswith(RIGHT_DELIM):
            return True, False
        return False, False

    def at_terminator(self) -> bool:
        char = self.peek()
        if is_space(char):
            return True
        if char in (EOF_RUNE, ".", ",", "|", ":", ")", "("):
            return True
        return self.input[self.pos:].startswith(RIGHT_DELIM)


def _decode(data: bytes, pos: int) -> tuple[str, int]:
    first = data[pos]
    if first < 0x80:
        return chr(first), 1
    width = 2 if first >= 0xC0 else 1
    if first >= 0xE0:
        width = 3
    if first >= 0xF0:
        width = 4
    try:
        return data[pos:pos + width].decode(), width
    except UnicodeDecodeError:
        return "\ufffd", 1


def _right_trim_length(data: bytes) -> int:
    return len(data) - len(data.rstrip(SPACE_CHARS))


def _left_trim_length(data: bytes) -> int:
    return len(data) - len(data.lstrip(SPACE_CHARS))


def lex_text(lx: Lexer) -> State | None:
    x = lx.input.find(LEFT_DELIM, lx.pos)
    if x >= 0:
        if x > lx.pos:
            lx.pos = x
            trim_length = 0
            delim_end = lx.pos + len(LEFT_DELIM)
            if _has_left_trim_marker(lx.input[delim_end:]):
                trim_length = _right_trim_length(lx.input[lx.start:lx.pos])
            lx.pos -= trim_length
            lx.line += lx.input[lx.start:lx.pos].count(b"\n")
            token = lx.this_item(Item.TEXT)
            lx.pos += trim_length
            lx.ignore()
            if token.val:
                lx.item = token
                return None
        return lex_left_delim
    lx.pos = len(lx.input)
    if lx.pos > lx.start:
        lx.line += lx.input[lx.start:lx.pos].count(b"\n")
        lx.emit(Item.TEXT)
        return None
    lx.emit(Item.EOF)
    return None


def lex_left_delim(lx: Lexer) -> State | None:
    lx.pos += len(LEFT_DELIM)
    trim_space = _has_left_trim_marker(lx.input[lx.pos:])
    after_marker = TRIM_MARKER_LEN if trim_space else 0
    if lx.input[lx.pos + after_marker:].startswith(LEFT_COMMENT):
        lx.pos += after_marker
        lx.ignore()
        return lex_comment
    token = lx.this_item(Item.LEFT_DELIM)
    lx.inside_action = True
    lx.pos += after_marker
    lx.ignore()
    lx.paren_depth = 0
    lx.item = token
    return None


def lex_comment(lx: Lexer) -> State | None:
    lx.pos += len(LEFT_COMMENT)
    x = lx.input.find(RIGHT_COMMENT, lx.pos)
    if x < 0:
        lx.errorf("unclosed comment")
        return None
    lx.pos = x + len(RIGHT_COMMENT)
    delim, trim_space = lx.at_right_delim()
    if not delim:
        lx.errorf("comment ends before closing delimiter")
        return None
    lx.line += lx.input[lx.start:lx.pos].count(b"\n")
    lx.this_item(Item.COMMENT)
    if trim_space:
        lx.pos += TRIM_MARKER_LEN
    lx.pos += len(RIGHT_DELIM)
    if trim_space:
        lx.pos += _left_trim_length(lx.input[lx.pos:])
    lx.ignore()
    return lex_text


def lex_right_delim(lx: Lexer) -> State | None:
    _, trim_space = lx.at_right_delim()
    if trim_space:
        lx.pos += TRIM_MARKER_LEN
        lx.ignore()
    lx.pos += len(RIGHT_DELIM)
    token = lx.this_item(Item.RIGHT_DELIM)
    if trim_space:
        lx.pos += _left_trim_length(lx.input[lx.pos:])
        lx.ignore()
    lx.inside_action = False
    lx.item = token
    return None


def lex_inside_action(lx: Lexer) -> State | None:
    delim, _ = lx.at_right_delim()
    if delim:
        if lx.paren_depth == 0:
            return lex_right_delim
        lx.errorf("unclosed left paren")
        return None
    char = lx.next()
    if char == EOF_RUNE:
        lx.errorf("unclosed action")
        return None
    if is_space(char):
        lx.backup()
        return lex_space
    if char == "=":
        lx.emit(Item.ASSIGN)
        return None
    if char == ":":
        if lx.next() != "=":
            lx.errorf("expected :=")
            return None
        lx.emit(Item.DECLARE)
        return None
    if char == "|":
        lx.emit(Item.PIPE)
        return None
    if char == '"':
        return lex_quote
    if char == "`":
        return lex_raw_quote
    if char == "$":
        return lex_variable
    if char == "'":
        return lex_char
    if char == "." and lx.pos < len(lx.input) and not (0x30 <= lx.input[lx.pos] <= 0x39):
        return lex_field
    if char in ".+-" or "0" <= char <= "9":
        lx.backup()
        return lex_number
    if is_alphanumeric(char):
        lx.backup()
        return lex_identifier
    if char == "(":
        lx.paren_depth += 1
        lx.emit(Item.LEFT_PAREN)
        return None
    if char == ")":
        lx.paren_depth -= 1
        if lx.paren_depth < 0:
            lx.errorf("unexpected right paren")
            return None
        lx.emit(Item.RIGHT_PAREN)
        return None
    if ord(char) <= 0x7F and char.isprintable():
        lx.emit(Item.CHAR)
        return None
    lx.errorf(f"unrecognized character in action: {go_unicode(char)}")
    return None


def go_unicode(char: str) -> str:
    """Go's %#U: ``U+00A0`` plus the quoted character when printable."""
    code = f"U+{ord(char):04X}"
    return f"{code} '{char}'" if char.isprintable() else code


def lex_space(lx: Lexer) -> State | None:
    spaces = 0
    while is_space(lx.peek()):
        lx.next()
        spaces += 1
    rest = lx.input[lx.pos - 1:]
    if _has_right_trim_marker(rest) and rest[TRIM_MARKER_LEN:].startswith(RIGHT_DELIM):
        lx.backup()
        if spaces == 1:
            return lex_right_delim
    lx.emit(Item.SPACE)
    return None


def lex_identifier(lx: Lexer) -> State | None:
    while True:
        char = lx.next()
        if is_alphanumeric(char):
            continue
        lx.backup()
        word = lx.input[lx.start:lx.pos].decode()
        if not lx.at_terminator():
            lx.errorf(f"bad character {go_unicode(char)}")
            return None
        keyword = KEYWORDS.get(word)
        if keyword is not None and keyword > Item.KEYWORD:
            if (keyword == Item.BREAK and not lx.break_ok) or (
                    keyword == Item.CONTINUE and not lx.continue_ok):
                lx.emit(Item.IDENTIFIER)
            else:
                lx.emit(keyword)
        elif word[0] == ".":
            lx.emit(Item.FIELD)
        elif word in ("true", "false"):
            lx.emit(Item.BOOL)
        else:
            lx.emit(Item.IDENTIFIER)
        return None


def lex_field(lx: Lexer) -> State | None:
    return _lex_field_or_variable(lx, Item.FIELD)


def lex_variable(lx: Lexer) -> State | None:
    if lx.at_terminator():
        lx.emit(Item.VARIABLE)
        return None
    return _lex_field_or_variable(lx, Item.VARIABLE)


def _lex_field_or_variable(lx: Lexer, typ: Item) -> State | None:
    if lx.at_terminator():
        lx.emit(Item.VARIABLE if typ == Item.VARIABLE else Item.DOT)
        return None
    while True:
        char = lx.next()
        if not is_alphanumeric(char):
            lx.backup()
            break
    if not lx.at_terminator():
        lx.errorf(f"bad character {go_unicode(char) if char else 'U+FFFFFFFF'}")
        return None
    lx.emit(typ)
    return None


def lex_char(lx: Lexer) -> State | None:
    while True:
        char = lx.next()
        if char == "\\":
            following = lx.next()
            if following not in (EOF_RUNE, "\n"):
                continue
            lx.errorf("unterminated character constant")
            return None
        if char in (EOF_RUNE, "\n"):
            lx.errorf("unterminated character constant")
            return None
        if char == "'":
            break
    lx.emit(Item.CHAR_CONSTANT)
    return None


def lex_number(lx: Lexer) -> State | None:
    if not _scan_number(lx):
        lx.errorf(f"bad number syntax: {quote(lx.input[lx.start:lx.pos].decode(errors='replace'))}")
        return None
    sign = lx.peek()
    if sign in ("+", "-"):
        if not _scan_number(lx) or lx.input[lx.pos - 1:lx.pos] != b"i":
            lx.errorf(f"bad number syntax: {quote(lx.input[lx.start:lx.pos].decode(errors='replace'))}")
            return None
        lx.emit(Item.COMPLEX)
        return None
    lx.emit(Item.NUMBER)
    return None


def _scan_number(lx: Lexer) -> bool:
    lx.accept("+-")
    digits = "0123456789_"
    if lx.accept("0"):
        if lx.accept("xX"):
            digits = "0123456789abcdefABCDEF_"
        elif lx.accept("oO"):
            digits = "01234567_"
        elif lx.accept("bB"):
            digits = "01_"
    lx.accept_run(digits)
    if lx.accept("."):
        lx.accept_run(digits)
    if len(digits) == 11 and lx.accept("eE"):
        lx.accept("+-")
        lx.accept_run("0123456789_")
    if len(digits) == 23 and lx.accept("pP"):
        lx.accept("+-")
        lx.accept_run("0123456789_")
    lx.accept("i")
    if is_alphanumeric(lx.peek()):
        lx.next()
        return False
    return True


def lex_quote(lx: Lexer) -> State | None:
    while True:
        char = lx.next()
        if char == "\\":
            following = lx.next()
            if following not in (EOF_RUNE, "\n"):
                continue
            lx.errorf("unterminated quoted string")
            return None
        if char in (EOF_RUNE, "\n"):
            lx.errorf("unterminated quoted string")
            return None
        if char == '"':
            break
    lx.emit(Item.STRING)
    return None


def lex_raw_quote(lx: Lexer) -> State | None:
    while True:
        char = lx.next()
        if char == EOF_RUNE:
            lx.errorf("unterminated raw quoted string")
            return None
        if char == "`":
            break
    lx.emit(Item.RAW_STRING)
    return None
