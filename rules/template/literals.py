"""Go literal syntax used by templates: strconv.Unquote/UnquoteChar and number parsing."""

from __future__ import annotations

import re

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\"}


class SyntaxErr(ValueError):
    """strconv.ErrSyntax."""

    def __init__(self) -> None:
        super().__init__("invalid syntax")


def unquote_char(text: str, quote_char: str) -> tuple[str, str]:
    """strconv.UnquoteChar: decode one (possibly escaped) character; return it and the tail."""
    if not text:
        raise SyntaxErr
    char = text[0]
    if char == quote_char and quote_char in "'\"":
        raise SyntaxErr
    if char != "\\":
        return char, text[1:]
    if len(text) < 2:
        raise SyntaxErr
    escape, rest = text[1], text[2:]
    if escape in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[escape], rest
    if escape in "xuU":
        size = {"x": 2, "u": 4, "U": 8}[escape]
        digits = rest[:size]
        if len(digits) < size or not re.fullmatch(r"[0-9a-fA-F]+", digits):
            raise SyntaxErr
        code = int(digits, 16)
        if escape != "x" and (code > 0x10FFFF or 0xD800 <= code <= 0xDFFF):
            raise SyntaxErr
        return chr(code), rest[size:]
    if escape in "01234567":
        digits = text[1:4]
        if len(digits) < 3 or not re.fullmatch(r"[0-7]{3}", digits):
            raise SyntaxErr
        code = int(digits, 8)
        if code > 255:
            raise SyntaxErr
        return chr(code), text[4:]
    if escape in "'\"":
        if escape != quote_char:
            raise SyntaxErr
        return escape, rest
    raise SyntaxErr


def unquote(text: str) -> str:
    """strconv.Unquote for double-quoted, back-quoted and single-quoted literals."""
    if len(text) < 2 or text[0] != text[-1]:
        raise SyntaxErr
    quote_char, body = text[0], text[1:-1]
    if quote_char == "`":
        if "`" in body:
            raise SyntaxErr
        return body.replace("\r", "")
    if quote_char not in "\"'":
        raise SyntaxErr
    if "\n" in body:
        raise SyntaxErr
    out = []
    while body:
        char, body = unquote_char(body, quote_char)
        out.append(char)
        if quote_char == "'" and body:
            raise SyntaxErr
    if quote_char == "'" and len(out) != 1:
        raise SyntaxErr
    return "".join(out)


_INT_RE = {
    16: re.compile(r"[0-9a-fA-F]+(_[0-9a-fA-F]+)*"),
    8: re.compile(r"[0-7]+(_[0-7]+)*"),
    2: re.compile(r"[01]+(_[01]+)*"),
    10: re.compile(r"[0-9]+(_[0-9]+)*"),
}


def parse_int(text: str, signed: bool) -> int:
    """strconv.ParseInt/ParseUint(text, 0, 64); raise ValueError when out of range or malformed."""
    body = text
    negative = False
    if body[:1] in "+-" and body:
        if not signed and body[0] == "-":
            raise ValueError(text)
        negative = body[0] == "-"
        body = body[1:]
    base = 10
    lowered = body.lower()
    if lowered.startswith("0x"):
        base, body = 16, body[2:]
        body = body.removeprefix("_")
    elif lowered.startswith("0o"):
        base, body = 8, body[2:]
        body = body.removeprefix("_")
    elif lowered.startswith("0b"):
        base, body = 2, body[2:]
        body = body.removeprefix("_")
    elif len(body) > 1 and body[0] == "0":
        base, body = 8, body[1:]
        body = body.removeprefix("_")
    if not body or not _INT_RE[base].fullmatch(body):
        raise ValueError(text)
    value = int(body.replace("_", ""), base)
    if negative:
        value = -value
    if signed and not -(1 << 63) <= value < (1 << 63):
        raise ValueError(text)
    if not signed and not 0 <= value < (1 << 64):
        raise ValueError(text)
    return value


def parse_float(text: str) -> float:
    """strconv.ParseFloat(text, 64) for the literal forms the template lexer produces."""
    body = text
    sign = 1.0
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body.lower().startswith("0x"):
        if "p" not in body.lower():
            raise ValueError(text)
        return sign * float.fromhex(body.replace("_", ""))
    if "_" in body or not re.fullmatch(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", body):
        raise ValueError(text)
    return sign * float(body)
