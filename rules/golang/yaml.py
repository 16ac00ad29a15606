"""How Go's gopkg.in/yaml.v3 resolves a plain scalar, which is how Prometheus reads its files.

yaml.v3 follows YAML 1.2's core schema with Go's number syntax: only ``true``/``false`` (also
``True``, ``TRUE``...) are booleans, so ``yes``, ``on`` and ``no`` stay strings; integers are
what ``strconv.ParseInt(text, 0, 64)`` reads once ``_`` are removed (``0x1F``, ``0o17``, ``0b11``,
and ``017`` as octal, as yaml.v3 keeps for compatibility); floats need no dot (``1e3``, ``6E-01``);
``.inf``, ``-.inf`` and ``.nan`` are the special floats. Dates are not special here: Go makes
them a time.Time, which no field healwatch reads takes, so they stay text. A scalar decoded into a
string field is its source text whatever it resolves to (``Positions.text``).
"""

from __future__ import annotations

import math
import re
from typing import Any

BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
NULL_TAG = "tag:yaml.org,2002:null"
STR_TAG = "tag:yaml.org,2002:str"

_WORDS: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
# strconv.ParseInt with base 0: a prefix picks the base, a bare leading 0 means octal.
_INT_RE = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|0[bB]([01]+)|(0[0-7]*)|([1-9][0-9]*))")
# yaml.v3's yamlStyleFloat, matched once the underscores are gone.
_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
# strconv.ParseFloat of a scalar that starts with a dot: Go float syntax, "_" only between digits.
_DOT_FLOAT_RE = re.compile(r"\.[0-9](?:_?[0-9])*(?:[eE][-+]?[0-9](?:_?[0-9])*)?")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def resolve(text: str) -> Any:
    """The value yaml.v3 gives a plain scalar: a bool, None, an int, a float, or ``text`` itself."""
    if text in _WORDS:
        return _WORDS[text]
    if text[0] == ".":
        return _finite(text.replace("_", ""), text) if _DOT_FLOAT_RE.fullmatch(text) else text
    if text[0] not in "+-0123456789":
        return text
    plain = text.replace("_", "")
    number = _parse_int(plain)
    if number is not None:
        return number
    if _FLOAT_RE.fullmatch(plain):
        return _finite(plain, text)
    return text


def tag_of(text: str) -> str:
    """The tag yaml.v3 resolves a plain scalar to."""
    value = resolve(text)
    if isinstance(value, bool):
        return BOOL_TAG
    if isinstance(value, int):
        return INT_TAG
    if isinstance(value, float):
        return FLOAT_TAG
    return NULL_TAG if value is None else STR_TAG


def _parse_int(plain: str) -> int | None:
    """strconv.ParseInt(plain, 0, 64), or ParseUint for what only fits unsigned; None if neither reads it."""
    match = _INT_RE.fullmatch(plain)
    if match is None:
        return None
    sign, hexa, octal, binary, legacy_octal, decimal = match.groups()
    if hexa is not None:
        value = int(hexa, 16)
    elif octal is not None:
        value = int(octal, 8)
    elif binary is not None:
        value = int(binary, 2)
    elif legacy_octal is not None:
        value = int(legacy_octal, 8)
    else:
        value = int(decimal)
    if sign == "-":
        value = -value
    if _INT64_MIN <= value <= _INT64_MAX or (not sign and value <= _UINT64_MAX):
        return value
    return None


def _finite(number: str, text: str) -> float | str:
    """float(number), or the text where Go's ParseFloat reports ErrRange (beyond float64) and yaml.v3 keeps it."""
    value = float(number)
    return text if math.isinf(value) else value
