"""Go (RE2) regular expressions on top of Python's ``re``: syntax, errors and ReplaceAll.

The common RE2 syntax is translated (ASCII ``\\d \\w \\s \\b``, ``$`` meaning end of
text, ``\\z``, POSIX ``[[:alpha:]]`` classes, ``\\pL``/``\\pN``); compile errors are
reported in Go's words for the usual mistakes.
"""

from __future__ import annotations

import re

from rules.golang.fmt import quote

_PERL_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_UNICODE = {"L": "^\\W\\d_", "N": "\\d", "Nd": "\\d"}


class RegexpError(ValueError):
    """A pattern Go's regexp package would reject; the message is Go's."""


def _syntax_error(code: str, expr: str) -> RegexpError:
    return RegexpError(f"error parsing regexp: {code}: `{expr}`")


def translate(pattern: str) -> str:
    """Rewrite an RE2 pattern into an equivalent Python pattern."""
    multiline = re.search(r"\(\?[a-zA-Z]*m", pattern) is not None
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            piece, i = _escape(pattern, i, in_class=False)
            out.append(piece)
            continue
        if char == "[":
            piece, i = _char_class(pattern, i)
            out.append(piece)
            continue
        if char == "$" and not multiline:
            out.append("\\Z")
        elif char == "(" and pattern.startswith("(?P<", i):
            out.append("(?P<")
            i += 4
            continue
        elif char == "(" and pattern.startswith("(?<", i) and pattern[i + 3:i + 4] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        elif char == "(" and pattern.startswith("(?", i) and not re.match(
                r"\(\?[imsU-]*[:)]", pattern[i:]):
            raise _syntax_error("invalid or unsupported Perl syntax", pattern[i:i + 3])
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(pattern):
        raise _syntax_error("trailing backslash at end of expression", "")
    letter = pattern[i + 1]
    if letter in "dws":
        inner = _PERL_CLASSES[letter]
        return (inner if in_class else f"[{inner}]"), i + 2
    if letter in "DWS":
        inner = _PERL_CLASSES[letter.lower()]
        if in_class:
            raise _syntax_error("invalid character class range", pattern[i:i + 2])
        return f"[^{inner}]", i + 2
    if letter in "pP":
        if pattern[i + 2:i + 3] == "{":
            end = pattern.find("}", i)
            name, after = pattern[i + 3:end], end + 1
        else:
            name, after = pattern[i + 2:i + 3], i + 3
        if name not in _UNICODE:
            raise _syntax_error("invalid character class range", pattern[i:after])
        body = _UNICODE[name]
        negate = letter == "P"
        if in_class:
            if negate or body.startswith("^"):
                raise _syntax_error("invalid character class range", pattern[i:after])
            return body, after
        if body.startswith("^"):
            return (f"[{body[1:]}]" if negate else f"[{body}]"), after
        return (f"[^{body}]" if negate else f"[{body}]"), after
    if letter in "bB" and not in_class:
        return f"(?a:\\{letter})", i + 2
    if letter == "z" and not in_class:
        return "\\Z", i + 2
    if letter in "Aafnrtv" or (letter == "x") or not letter.isalnum():
        if letter == "A" and in_class:
            raise _syntax_error("invalid escape sequence", "\\A")
        return pattern[i:i + 2], i + 2
    if letter in "01234567":
        return pattern[i:i + 2], i + 2
    raise _syntax_error("invalid escape sequence", pattern[i:i + 2])


def _char_class(pattern: str, start: int) -> tuple[str, int]:
    out = ["["]
    i = start + 1
    if pattern[i:i + 1] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        char = pattern[i]
        if char == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end > 0:
                name = pattern[i + 2:end]
                negate = name.startswith("^")
                body = _POSIX.get(name.lstrip("^"))
                if body is None:
                    raise _syntax_error("invalid character class range", pattern[i:end + 2])
                if negate:
                    raise _syntax_error("invalid character class range", pattern[i:end + 2])
                out.append(body)
                i = end + 2
                continue
        if char == "\\":
            piece, i = _escape(pattern, i, in_class=True)
            out.append(piece)
            continue
        if char == "[":
            out.append("\\[")
        else:
            out.append(char)
        i += 1
    raise _syntax_error("missing closing ]", pattern[start:])


_cache: dict[str, re.Pattern[str]] = {}


def compile_go(pattern: str) -> re.Pattern[str]:
    """regexp.Compile; raise RegexpError with Go's message on a bad pattern."""
    cached = _cache.get(pattern)
    if cached is not None:
        return cached
    translated = translate(pattern)
    try:
        compiled = re.compile(translated)
    except re.error as err:
        raise _go_message(pattern, err) from None
    except (RecursionError, OverflowError):
        raise _syntax_error("expression too large", pattern) from None
    if len(_cache) > 256:
        _cache.clear()
    _cache[pattern] = compiled
    return compiled


def _go_message(pattern: str, err: re.error) -> RegexpError:
    message = err.msg
    if "missing ), unterminated subpattern" in message:
        return _syntax_error("missing closing )", pattern)
    if "unbalanced parenthesis" in message:
        return _syntax_error("unexpected )", pattern)
    if "nothing to repeat" in message or "multiple repeat" in message:
        position = err.pos or 0
        return _syntax_error("missing argument to repetition operator", pattern[position:position + 1])
    if "bad character range" in message:
        return _syntax_error("invalid character class range", pattern)
    return RegexpError(f"error parsing regexp: {message}: `{pattern}`")


def must_compile_message(pattern: str, err: RegexpError) -> str:
    """The panic text of regexp.MustCompile."""
    shown = f"`{pattern}`" if "`" not in pattern and pattern.isprintable() else quote(pattern)
    return f"regexp: Compile({shown}): {err}"


def expand(template: str, match: re.Match[str]) -> str:
    """Regexp.Expand: ``$1``, ``${1}``, ``$name``, ``${name}`` and ``$$``."""
    out: list[str] = []
    i = 0
    while i < len(template):
        dollar = template.find("$", i)
        if dollar < 0:
            out.append(template[i:])
            break
        out.append(template[i:dollar])
        rest = template[dollar + 1:]
        if rest.startswith("$"):
            out.append("$")
            i = dollar + 2
            continue
        name, consumed = _extract(rest)
        if name is None:
            out.append("$")
            i = dollar + 1
            continue
        i = dollar + 1 + consumed
        out.append(_group(match, name))
    return "".join(out)


def _extract(text: str) -> tuple[str | None, int]:
    braced = text.startswith("{")
    body = text[1:] if braced else text
    j = 0
    while j < len(body) and (body[j] == "_" or body[j].isalnum()):
        j += 1
    if j == 0:
        return None, 0
    if braced:
        if body[j:j + 1] != "}":
            return None, 0
        return body[:j], j + 2
    return body[:j], j


def _group(match: re.Match[str], name: str) -> str:
    if name.isdigit():
        index = int(name)
        if index <= (match.re.groups or 0):
            return match.group(index) or ""
        return ""
    if name in match.re.groupindex:
        return match.group(name) or ""
    return ""


def replace_all(compiled: re.Pattern[str], text: str, template: str) -> str:
    """Regexp.ReplaceAllString: empty matches right after a match are not replaced."""
    out: list[str] = []
    last_end = 0
    search_pos = 0
    while search_pos <= len(text):
        match = compiled.search(text, search_pos)
        if match is None:
            break
        start, end = match.span()
        out.append(text[last_end:start])
        if end > last_end or start == 0:
            out.append(expand(template, match))
        last_end = end
        search_pos = max(end, search_pos + 1)
    out.append(text[last_end:])
    return "".join(out)
