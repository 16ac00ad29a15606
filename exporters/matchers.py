"""Alertmanager's matcher strings (``severity="critical"``, ``alertname=~"Disk.*"``, ``{a="b",c!~d}``).

Parsing follows Alertmanager's classic parser (``pkg/labels/parse.go``): the value
may be quoted or bare, ``\\n``, ``\\"`` and ``\\\\`` are escapes and any other
backslash is literal. Matching is ``rules.matchers.Matcher``'s: anchored regexes,
a missing label counts as the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from rules.matchers import Matcher, MatchOp

_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$", re.DOTALL)
# Alertmanager sorts a route's matchers by name, then value, then this operator order.
_OP_ORDER = {MatchOp.EQ: 0, MatchOp.NE: 1, MatchOp.RE: 2, MatchOp.NRE: 3}


def parse_matcher(text: str) -> Matcher:
    """One matcher such as ``team!="db"`` or ``env=prod``; ValueError says what is wrong."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(f"bad matcher format {text!r}: expected NAME OP VALUE with OP one of =, !=, =~, !~")
    name, op, raw = found.groups()
    return Matcher(name, MatchOp(op), _unescape(raw))


def parse_matchers(text: str) -> list[Matcher]:
    """A comma-separated list of matchers, optionally in braces: ``{alertname="X", severity!~"info|debug"}``."""
    inner = text.strip()
    if inner.startswith("{") != inner.endswith("}"):
        raise ValueError(f"bad matchers {text!r}: unbalanced braces")
    if inner.startswith("{"):
        inner = inner[1:-1]
    return [parse_matcher(part) for part in _split_commas(inner) if part.strip()]


def parse_matcher_list(texts: Iterable[str]) -> tuple[Matcher, ...]:
    """The matchers of a config list, each entry holding one matcher or several separated by commas."""
    return tuple(m for text in texts for m in parse_matchers(text))


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher accepts ``labels`` (an empty list accepts everything)."""
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


def sort_matchers(matchers: Iterable[Matcher]) -> list[Matcher]:
    """Matchers in Alertmanager's order (``labels.Matchers.Less``), which route keys depend on."""
    return sorted(matchers, key=lambda m: (m.name, m.value, _OP_ORDER[m.op]))


def format_matchers(matchers: Iterable[Matcher]) -> str:
    """``{a="b",c=~"d"}`` as Alertmanager's ``Matchers.String`` writes it (no space after commas)."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def _unescape(raw: str) -> str:
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    out: list[str] = []
    escaped = False
    for index, char in enumerate(body):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
            continue
        last = index == len(body) - 1
        if char == "\\" and not last:
            escaped = True
        elif char == '"':
            if not quoted or not last:
                raise ValueError(f"matcher value {raw!r} contains an unescaped double quote")
            quoted = False
        else:
            out.append(char)
    if quoted:
        raise ValueError(f"matcher value {raw!r} lacks its closing double quote")
    return "".join(out)


def _split_commas(text: str) -> list[str]:
    """Split at commas outside double-quoted values."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == "," and not in_quotes:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts
