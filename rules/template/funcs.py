"""The functions a Prometheus alert template can call: Go's builtins and Prometheus' own.

Each function declares its Go parameter types so the executor can check and
convert arguments as text/template does; implementations raise ``CallError``
for a returned Go error (the message is Go's).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus, urlsplit

from rules.golang.fmt import (
    GoMap,
    GoSlice,
    GoStringer,
    GoStruct,
    format_float,
    quote,
    sprint,
    sprintf,
    sprintln,
    type_name,
)
from rules.golang import regexp
from rules.golang.time import GoTime, time_from_seconds
from rules.template.values import (
    ANY,
    HTML,
    MAP_STRING_ANY,
    NIL_INTERFACE,
    QUERY_RESULT,
    REFLECT_VALUE,
    SAMPLE_PTR,
    QueryResult,
    QuerySample,
    SamplePtr,
)


class CallError(Exception):
    """A Go function returned a non-nil error (or panicked); ``str`` is its message."""


@dataclass(frozen=True)
class GoFunc:
    """A callable with Go parameter types; ``variadic`` makes the last type repeatable."""

    params: tuple[str, ...]
    impl: Callable[..., object]
    variadic: bool = False


QueryFunc = Callable[[str], list[QuerySample]]

# ----------------------------------------------------------------- builtins


def truth(value: object) -> bool:
    """text/template's notion of true: non-zero, non-empty, non-nil."""
    ok, result = is_true(value)
    return result if ok else False


def is_true(value: object) -> tuple[bool, bool]:
    """(has a truth value, truth) as Go's isTrue."""
    if value is None:
        return True, False
    if isinstance(value, (bool, int, float, complex)):
        return True, bool(value)
    if isinstance(value, (str, GoMap, GoSlice)):
        return True, len(value) > 0
    if isinstance(value, (GoStruct, GoStringer)):
        return True, True
    return False, False


def _not(value: object) -> bool:
    return not truth(value)


def _len(value: object) -> int:
    if value is None:
        raise CallError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (GoMap, GoSlice)):
        return len(value)
    raise CallError(f"len of type {type_name(value)}")


def _index_arg(index: object, cap: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        if index is None:
            raise CallError("cannot index slice/array with nil")
        raise CallError(f"cannot index slice/array with type {type_name(index)}")
    if index < 0 or index > cap:
        raise CallError(f"index out of range: {index}")
    return index


def _index(item: object, *indexes: object) -> object:
    if item is None:
        raise CallError("index of untyped nil")
    for index in indexes:
        if item is None:
            raise CallError("index of nil pointer")
        if isinstance(item, (str, GoSlice)):
            data = item.encode() if isinstance(item, str) else item
            position = _index_arg(index, len(data))
            if position >= len(data):
                kind = "string" if isinstance(item, str) else "slice"
                raise CallError(f"reflect: {kind} index out of range")
            item = data[position]
        elif isinstance(item, GoMap):
            if index is None:
                raise CallError("value is nil; should be of type string")
            if not isinstance(index, str):
                raise CallError(f"value has type {type_name(index)}; should be string")
            item = item.get(index, None if item.elem_zero is NIL_INTERFACE else item.elem_zero)
        else:
            raise CallError(f"can't index item of type {type_name(item)}")
    return item


def _slice(item: object, *indexes: object) -> object:
    if item is None:
        raise CallError("slice of untyped nil")
    if len(indexes) > 3:
        raise CallError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise CallError("cannot 3-index slice a string")
        data: bytes | GoSlice = item.encode()
    elif isinstance(item, GoSlice):
        data = item
    else:
        raise CallError(f"can't slice item of type {type_name(item)}")
    positions = [_index_arg(index, len(data)) for index in indexes]
    bounds = [0, len(data)]
    bounds[:len(positions[:2])] = positions[:2]
    if bounds[0] > bounds[1]:
        raise CallError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(positions) == 3 and bounds[1] > positions[2]:
        raise CallError(f"invalid slice index: {bounds[1]} > {positions[2]}")
    if isinstance(data, bytes):
        return data[bounds[0]:bounds[1]].decode(errors="replace")
    return GoSlice(data[bounds[0]:bounds[1]], go_type=data.go_type)


_INT, _FLOAT, _STRING, _BOOL, _COMPLEX = "int", "float", "string", "bool", "complex"


def _basic_kind(value: object) -> str | None:
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _FLOAT
    if isinstance(value, complex):
        return _COMPLEX
    if isinstance(value, str):
        return _STRING
    return None


def _eq(arg1: object, *others: object) -> bool:
    if not others:
        raise CallError("missing argument for comparison")
    kind1 = _basic_kind(arg1)
    for arg in others:
        kind2 = _basic_kind(arg)
        if kind1 != kind2:
            if arg1 is not None and arg is not None:
                raise CallError(f"incompatible types for comparison: {type_name(arg1)} and "
                                f"{type_name(arg)}")
            matched = False
        elif kind1 is None:
            if arg1 is None or arg is None:
                matched = arg1 is None and arg is None
            elif type_name(arg1) != type_name(arg):
                raise CallError(f"non-comparable types {sprint(arg1)}: {type_name(arg1)}, "
                                f"{type_name(arg)}: {sprint(arg)}")
            elif isinstance(arg, (GoMap, GoSlice)):
                raise CallError(f"non-comparable type {sprint(arg)}: {type_name(arg)}")
            else:
                matched = arg1 is arg
        else:
            matched = arg1 == arg
        if matched:
            return True
    return False


def _ne(arg1: object, arg2: object) -> bool:
    return not _eq(arg1, arg2)


def _lt(arg1: object, arg2: object) -> bool:
    kind1, kind2 = _basic_kind(arg1), _basic_kind(arg2)
    if kind1 is None or kind2 is None:
        raise CallError("invalid type for comparison")
    if kind1 != kind2:
        raise CallError(f"incompatible types for comparison: {type_name(arg1)} and "
                        f"{type_name(arg2)}")
    if kind1 in (_BOOL, _COMPLEX):
        raise CallError("invalid type for comparison")
    # Same kind, int, float or string: comparable.
    if isinstance(arg1, str) and isinstance(arg2, str):
        return arg1 < arg2
    assert isinstance(arg1, (int, float)) and isinstance(arg2, (int, float))
    return arg1 < arg2


def _le(arg1: object, arg2: object) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


def _gt(arg1: object, arg2: object) -> bool:
    return not _le(arg1, arg2)


def _ge(arg1: object, arg2: object) -> bool:
    return not _lt(arg1, arg2)


def _eval_args(args: tuple[object, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(*args)


def html_escape(text: str) -> str:
    """template.HTMLEscapeString."""
    replacements = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;",
                    ">": "&gt;"}
    return "".join(replacements.get(c, c) for c in text)


def js_escape(text: str) -> str:
    """template.JSEscapeString."""
    specials = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E",
                "&": "\\u0026", "=": "\\u003D"}
    out = []
    for char in text:
        if char in specials:
            out.append(specials[char])
        elif ord(char) < 0x20:
            out.append(f"\\u00{ord(char):02X}")
        elif ord(char) < 0x80 or char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04X}")
    return "".join(out)


def _call(callee: str, fn: object, *args: object) -> object:
    """Templates here hold no function values, so ``call`` can only fail as Go's does."""
    if fn is None:
        raise CallError("call of nil")
    raise CallError(f"non-function {callee} of type {type_name(fn)}")


BUILTINS: dict[str, GoFunc] = {
    "and": GoFunc((REFLECT_VALUE, REFLECT_VALUE), lambda *a: a[-1], variadic=True),
    "or": GoFunc((REFLECT_VALUE, REFLECT_VALUE), lambda *a: a[-1], variadic=True),
    "call": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _call, variadic=True),
    "html": GoFunc((ANY,), lambda *a: html_escape(_eval_args(a)), variadic=True),
    "index": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _index, variadic=True),
    "slice": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _slice, variadic=True),
    "js": GoFunc((ANY,), lambda *a: js_escape(_eval_args(a)), variadic=True),
    "len": GoFunc((REFLECT_VALUE,), _len),
    "not": GoFunc((REFLECT_VALUE,), _not),
    "print": GoFunc((ANY,), sprint, variadic=True),
    "printf": GoFunc(("string", ANY), sprintf, variadic=True),
    "println": GoFunc((ANY,), sprintln, variadic=True),
    "urlquery": GoFunc((ANY,), lambda *a: quote_plus(_eval_args(a), safe=""), variadic=True),
    "eq": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _eq, variadic=True),
    "ge": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _ge),
    "gt": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _gt),
    "le": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _le),
    "lt": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _lt),
    "ne": GoFunc((REFLECT_VALUE, REFLECT_VALUE), _ne),
}

# ----------------------------------------------------------------- Prometheus

_GO_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:\d+(?:_\d+)*)?\.?\d*(?:_\d+)*(?:[eE][+-]?\d+(?:_\d+)*)?|0[xX][0-9a-fA-F_.]*[pP][+-]?\d+)")


def go_parse_float(text: str) -> float:
    """strconv.ParseFloat(text, 64), raising CallError with Go's message."""
    syntax = CallError(f"strconv.ParseFloat: parsing {quote(text)}: invalid syntax")
    lowered = text.lower()
    unsigned = lowered.lstrip("+-")
    if len(lowered) - len(unsigned) > 1:
        raise syntax
    if unsigned in ("inf", "infinity"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == "nan":
        return math.nan
    if not text or not _GO_FLOAT_RE.fullmatch(text) or not any(c.isdigit() for c in text):
        raise syntax
    try:
        if unsigned.startswith("0x"):
            value = float.fromhex(text.replace("_", ""))
        else:
            value = float(text)
    except (ValueError, OverflowError):
        if unsigned.startswith("0x"):
            raise CallError(f"strconv.ParseFloat: parsing {quote(text)}: value out of range") \
                from None
        raise syntax from None
    if math.isinf(value):
        raise CallError(f"strconv.ParseFloat: parsing {quote(text)}: value out of range")
    return value


def convert_to_float(value: object) -> float:
    """Prometheus' ConvertToFloat: float64, ints and numeric strings."""
    if isinstance(value, float):
        return value
    if isinstance(value, str) and not isinstance(value, HTML):
        return go_parse_float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise CallError(f"can't convert {type_name(value)} to float")


def _g4(value: float) -> str:
    return sprintf("%.4g", value)


def humanize(raw: object) -> str:
    value = convert_to_float(raw)
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    if abs(value) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = p
            value /= 1000
        return _g4(value) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return _g4(value) + prefix


def humanize1024(raw: object) -> str:
    value = convert_to_float(raw)
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = p
        value /= 1024
    return _g4(value) + prefix


def humanize_duration(raw: object) -> str:
    value = convert_to_float(raw)
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return sprintf("%.4gs", value)
    if abs(value) >= 1:
        sign = ""
        if value < 0:
            sign, value = "-", -value
        total = _int64(value)
        seconds, minutes = total % 60, (total // 60) % 60
        hours, days = (total // 3600) % 24, total // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return sprintf("%s%.4gs", sign, value)
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return sprintf("%.4g%ss", value, prefix)


def _int64(value: float) -> int:
    """Go's int64(float64) on amd64: out-of-range values become math.MinInt64."""
    if math.isnan(value) or not -(2 ** 63) <= value < 2 ** 63:
        return -(2 ** 63)
    return int(value)


def humanize_percentage(raw: object) -> str:
    return sprintf("%.4g%%", convert_to_float(raw) * 100)


def _float_to_time(value: float) -> GoTime:
    timestamp = value * 1e9
    if timestamp > 2.0 ** 63 or timestamp < -(2.0 ** 63):
        raise CallError(f"{format_float(value)} cannot be represented as a nanoseconds "
                        "timestamp since it overflows int64")
    return time_from_seconds(value)


def humanize_timestamp(raw: object) -> str:
    value = convert_to_float(raw)
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    return _float_to_time(value).go_string()


def to_time(raw: object) -> GoTime:
    value = convert_to_float(raw)
    if math.isnan(value) or math.isinf(value):
        raise CallError("value is NaN or Inf")
    return _float_to_time(value)


_DURATION_UNITS = {"y": (1, 365 * 86400 * 10**9), "w": (2, 7 * 86400 * 10**9),
                   "d": (3, 86400 * 10**9), "h": (4, 3600 * 10**9), "m": (5, 60 * 10**9),
                   "s": (6, 10**9), "ms": (7, 10**6)}
_DURATION_PART = re.compile(r"([0-9]*)([^0-9]*)")


def parse_duration(text: str) -> float:
    """model.ParseDuration, in seconds."""
    if text == "0":
        return 0.0
    if text == "":
        raise CallError("empty duration string")
    invalid = CallError(f"not a valid duration string: {quote(text)}")
    rest, total, last_position = text, 0, 0
    while rest:
        part = _DURATION_PART.match(rest)
        assert part is not None  # both runs may be empty: it matches any string
        digits, unit = part.groups()
        if not digits or not unit:
            raise invalid
        rest = rest[part.end():]
        if unit not in _DURATION_UNITS:
            raise CallError(f"unknown unit {quote(unit)} in duration {quote(text)}")
        position, multiplier = _DURATION_UNITS[unit]
        if position <= last_position:
            raise invalid
        last_position = position
        amount = int(digits)
        if amount >= 2 ** 64 or amount > (1 << 63) // multiplier:
            raise CallError("duration out of range")
        total += amount * multiplier
        if total > (1 << 63) - 1:
            raise CallError("duration out of range")
    return total / 1e9


def split_host_port(hostport: str) -> tuple[str, str] | None:
    """net.SplitHostPort; None when Go would return an error."""
    i = hostport.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            return None
    if "[" in hostport[j:] or "]" in hostport[k:]:
        return None
    return host, hostport[i + 1:]


def _is_ip(host: str) -> bool:
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def strip_port(hostport: str) -> str:
    parts = split_host_port(hostport)
    return hostport if parts is None else parts[0]


def strip_domain(hostport: str) -> str:
    parts = split_host_port(hostport)
    host, port = (hostport, "") if parts is None else parts
    if _is_ip(host):
        return hostport
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def title(text: str) -> str:
    """Upper-case the first letter of every word, leaving the rest (cases.Title, NoLower)."""
    out = []
    in_word = False
    for i, char in enumerate(text):
        word_char = char.isalnum() or char == "_" or (
            in_word and char in "'.:·" and text[i + 1:i + 2].isalpha())
        if word_char and not in_word:
            out.append(char.title() if char.isalpha() else char)
        else:
            out.append(char)
        in_word = word_char
    return "".join(out)


def _upper(text: str) -> str:
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in text)


def _lower(text: str) -> str:
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _match(pattern: str, text: str) -> bool:
    try:
        return regexp.compile_go(pattern).search(text) is not None
    except regexp.RegexpError as err:
        raise CallError(str(err)) from None


def _re_replace_all(pattern: str, replacement: str, text: str) -> str:
    try:
        compiled = regexp.compile_go(pattern)
    except regexp.RegexpError as err:
        raise CallError(regexp.must_compile_message(pattern, err)) from None
    return regexp.replace_all(compiled, text, replacement)


def _args(*values: object) -> GoMap:
    return GoMap({f"arg{i}": v for i, v in enumerate(values)}, go_type=MAP_STRING_ANY,
                 elem_zero=NIL_INTERFACE)


def _first(result: object) -> object:
    # A nil queryResult (e.g. a missing map entry) has no elements either.
    if isinstance(result, list) and result:
        return result[0]
    raise CallError("first() called on vector with no elements")


def _sample_field(sample: object, name: str) -> object:
    if not isinstance(sample, SamplePtr):
        raise CallError("runtime error: invalid memory address or nil pointer dereference")
    return sample.labels if name == "Labels" else sample.value


def _label(name: str, sample: object) -> str:
    labels = _sample_field(sample, "Labels")
    assert isinstance(labels, GoMap)
    return str(labels.get(name, ""))


def _sort_by_label(name: str, result: object) -> object:
    if not isinstance(result, list):
        return QueryResult()
    result.sort(key=lambda s: str(s.labels.get(name, "")) if isinstance(s, SamplePtr) else "")
    return result


def graph_link(expr: str, tab: int) -> str:
    return f"/graph?g0.expr={quote_plus(expr, safe='')}&g0.tab={tab}"


def prometheus_funcs(query: QueryFunc | None, external_url: str) -> dict[str, GoFunc]:
    """Prometheus' template FuncMap for one expansion."""

    def run_query(expr: str) -> QueryResult:
        if query is None:
            raise CallError("no query function configured")
        try:
            samples = query(expr)
        except Exception as err:  # noqa: BLE001 - any query failure becomes the template error
            raise CallError(str(err) or type(err).__name__) from None
        return QueryResult([SamplePtr(s) for s in samples])

    parsed_path = _url_path(external_url)
    return {
        "query": GoFunc(("string",), run_query),
        "first": GoFunc((QUERY_RESULT,), _first),
        "label": GoFunc(("string", SAMPLE_PTR), _label),
        "value": GoFunc((SAMPLE_PTR,), lambda s: _sample_field(s, "Value")),
        "strvalue": GoFunc((SAMPLE_PTR,), lambda s: _label("__value__", s)),
        "args": GoFunc((ANY,), _args, variadic=True),
        "reReplaceAll": GoFunc(("string", "string", "string"), _re_replace_all),
        "safeHtml": GoFunc(("string",), HTML),
        "match": GoFunc(("string", "string"), _match),
        "title": GoFunc(("string",), title),
        "toUpper": GoFunc(("string",), _upper),
        "toLower": GoFunc(("string",), _lower),
        "graphLink": GoFunc(("string",), lambda e: graph_link(e, 0)),
        "tableLink": GoFunc(("string",), lambda e: graph_link(e, 1)),
        "sortByLabel": GoFunc(("string", QUERY_RESULT), _sort_by_label),
        "stripPort": GoFunc(("string",), strip_port),
        "stripDomain": GoFunc(("string",), strip_domain),
        "humanize": GoFunc((ANY,), humanize),
        "humanize1024": GoFunc((ANY,), humanize1024),
        "humanizeDuration": GoFunc((ANY,), humanize_duration),
        "humanizePercentage": GoFunc((ANY,), humanize_percentage),
        "humanizeTimestamp": GoFunc((ANY,), humanize_timestamp),
        "toTime": GoFunc((ANY,), to_time),
        "pathPrefix": GoFunc((), lambda: parsed_path),
        "externalURL": GoFunc((), lambda: external_url),
        "parseDuration": GoFunc(("string",), parse_duration),
    }


def _url_path(url: str) -> str:
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


FUNCTION_NAMES = frozenset(BUILTINS) | frozenset(prometheus_funcs(None, ""))
