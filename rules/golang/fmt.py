"""Go's fmt and strconv value formatting (Sprint, Sprintln, Sprintf, FormatFloat, Quote).

Templates print values exactly as Go does, so floats use strconv's shortest
round-trip digits (``1e+06``, ``0.1``), maps print as ``map[k:v]`` with sorted
keys, and printf's verbs, flags and error markers (``%!d(string=x)``) follow
the fmt package.

Values are Python natives (bool, int for Go int, float for float64, complex,
str, None for nil) or objects derived from the small Go-shaped classes below,
which carry their Go type name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal


class GoMap(dict[str, object]):
    """A Go map with string keys (the only maps templates see); ``go_type`` is its Go type name,
    ``elem_zero`` the zero value of its elements."""

    def __init__(self, items: Iterable[tuple[str, object]] | Mapping[str, object] = (),
                 go_type: str = "map[string]string", elem_zero: object = "") -> None:
        super().__init__(items)
        self.go_type = go_type
        self.elem_zero = elem_zero


class GoSlice(list[object]):
    """A Go slice; ``go_type`` is its Go type name."""

    def __init__(self, items: Iterable[object] = (), go_type: str = "[]interface {}") -> None:
        super().__init__(items)
        self.go_type = go_type


class GoStruct:
    """A Go struct value (or, with ``is_pointer``, a pointer to one)."""

    go_type = "struct {}"
    is_pointer = False

    def go_fields(self) -> list[tuple[str, object]]:
        """The struct's exported fields, in declaration order."""
        return []


class GoStringer:
    """A value whose type has a ``String() string`` method, which fmt prints instead."""

    def go_string(self) -> str:
        raise NotImplementedError


class GoString(str):
    """A named Go type whose underlying type is string (e.g. ``template.HTML``)."""

    go_type = "string"


def type_name(value: object) -> str:
    """The Go type name of ``value`` as ``%T`` prints it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, complex):
        return "complex128"
    go_type = getattr(value, "go_type", None)
    if isinstance(go_type, str):
        return go_type
    if isinstance(value, str):
        return "string"
    return type(value).__name__


# ---------------------------------------------------------------- strconv


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of |value| and the decimal point position."""
    if value == 0:
        return "0", 1
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    return digits.rstrip("0"), len(digits) + exponent


def _fmt_e(negative: bool, digits: str, point: int, prec: int, letter: str) -> str:
    mantissa = digits[0]
    if prec > 0:
        mantissa += "." + (digits[1:] + "0" * prec)[:prec]
    exponent = 0 if digits == "0" else point - 1
    sign = "-" if exponent < 0 else "+"
    return f"{'-' if negative else ''}{mantissa}{letter}{sign}{abs(exponent):02d}"


def _fmt_f(negative: bool, digits: str, point: int, prec: int) -> str:
    integer = digits[:point].ljust(point, "0") if point > 0 else "0"
    fraction = "".join(digits[j] if 0 <= j < len(digits) else "0"
                       for j in range(point, point + prec))
    return ("-" if negative else "") + integer + ("." + fraction if prec > 0 else "")


def format_float(value: float, fmt: str = "g", prec: int = -1) -> str:
    """strconv.FormatFloat(value, fmt, prec, 64) for fmt in e, E, f, F, g, G, x, X."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    negative = math.copysign(1.0, value) < 0
    if fmt in "xX":
        return _format_hex_float(value, fmt)
    if prec < 0:
        digits, point = _shortest_digits(value)
        if fmt in "eE":
            return _fmt_e(negative, digits, point, len(digits) - 1, fmt)
        if fmt in "fF":
            return _fmt_f(negative, digits, point, max(len(digits) - point, 0))
        exponent = point - 1
        # Shortest %g switches to exponent form outside [1e-4, 1e6), as Go does.
        if digits != "0" and (exponent < -4 or exponent >= 6):
            return _fmt_e(negative, digits, point, len(digits) - 1, "e" if fmt == "g" else "E")
        return _fmt_f(negative, digits, point, max(len(digits) - point, 0))
    if fmt in "eE":
        text = f"{abs(value):.{prec}e}"
        return ("-" if negative else "") + (text.upper() if fmt == "E" else text)
    if fmt in "fF":
        return ("-" if negative else "") + f"{abs(value):.{prec}f}"
    # Python's %g with a precision matches strconv's 'g' (trailing zeros dropped).
    text = f"{abs(value):.{max(prec, 1)}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{exp[0]}{int(exp[1:]):02d}"
    return ("-" if negative else "") + (text.upper() if fmt == "G" else text)


def _format_hex_float(value: float, fmt: str) -> str:
    """Shortest %x form of a float: ``0x1.8p+01`` (precision is not supported)."""
    negative = math.copysign(1.0, value) < 0
    mantissa_value, exponent = math.frexp(abs(value))  # value = m * 2**e, 0.5 <= m < 1
    if mantissa_value == 0:
        mantissa, exponent = "0", 0
    else:
        bits = int(mantissa_value * (1 << 53))  # 53 significant bits, leading bit set
        exponent -= 1
        frac = f"{bits - (1 << 52):013x}".rstrip("0")
        mantissa = "1" + ("." + frac if frac else "")
    sign = "-" if exponent < 0 else "+"
    text = f"{'-' if negative else ''}0x{mantissa}p{sign}{abs(exponent):02d}"
    return text.upper() if fmt == "X" else text


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\v": "\\v", "\\": "\\\\"}


def quote(text: str, quote_char: str = '"', ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteToASCII / QuoteRune with the arguments)."""
    out = [quote_char]
    for char in text:
        if char == quote_char:
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable() and not (ascii_only and ord(char) > 0x7E):
            out.append(char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append(quote_char)
    return "".join(out)


def _can_backquote(text: str) -> bool:
    return all(c == "\t" or (c.isprintable() and c != "`") for c in text) and "\ufeff" not in text


# ---------------------------------------------------------------- fmt


@dataclass
class _Spec:
    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    width: int | None = None
    prec: int | None = None


def _pad(text: str, spec: _Spec, zeros_ok: bool = False, signed: bool = False) -> str:
    if spec.width is None or len(text) >= spec.width:
        return text
    fill = spec.width - len(text)
    if spec.minus:
        return text + " " * fill
    if spec.zero and zeros_ok:
        sign = text[0] if signed and text[:1] in ("+", "-", " ") else ""
        return sign + "0" * fill + text[len(sign):]
    return " " * fill + text


def _fmt_integer(value: int, verb: str, spec: _Spec) -> str:
    negative = value < 0
    magnitude = abs(value)
    if verb == "c":
        return _pad(chr(magnitude) if magnitude < 0x110000 else "\ufffd", spec)
    if verb == "q":
        char = chr(magnitude) if magnitude < 0x110000 else "\ufffd"
        return _pad(quote(char, "'", ascii_only=spec.plus), spec)
    if verb == "U":
        text = f"U+{magnitude:04X}"
        if spec.sharp and magnitude < 0x110000 and chr(magnitude).isprintable():
            text += f" '{chr(magnitude)}'"
        return _pad(text, spec)
    base_digits = {"d": (10, ""), "v": (10, ""), "b": (2, "0b"), "o": (8, "0"), "O": (8, "0o"),
                   "x": (16, "0x"), "X": (16, "0X")}
    base, prefix = base_digits[verb]
    formats: dict[int, Callable[[int], str]] = {
        10: str, 2: lambda n: format(n, "b"), 8: lambda n: format(n, "o"),
        16: lambda n: format(n, "x" if verb == "x" else "X"),
    }
    digits = formats[base](magnitude)
    if spec.prec is not None:
        if spec.prec == 0 and magnitude == 0:
            digits = ""
        digits = digits.rjust(spec.prec, "0")
    if verb == "O" or (spec.sharp and verb in "bxX"):
        digits = prefix + digits
    elif spec.sharp and verb == "o" and not digits.startswith("0"):
        digits = "0" + digits
    sign = "-" if negative else ("+" if spec.plus else (" " if spec.space else ""))
    return _pad(sign + digits, spec, zeros_ok=spec.prec is None, signed=True)


def _fmt_float(value: float, verb: str, spec: _Spec) -> str:
    fmt = "g" if verb == "v" else verb
    prec = spec.prec if spec.prec is not None else (6 if fmt in "eEfF" else -1)
    text = format_float(value, fmt, prec)
    if text[0] not in "+-":
        text = ("+" if spec.plus else (" " if spec.space else "")) + text
    elif text[0] == "+" and not spec.plus and text[1:] != "Inf":
        text = text[1:]
    if text[-3:] in ("NaN", "Inf"):
        if text == "NaN" and spec.plus:
            text = "+NaN"
        return _pad(text, spec)
    return _pad(text, spec, zeros_ok=True, signed=True)


def _fmt_complex(value: complex, verb: str, spec: _Spec) -> str:
    inner = _Spec(plus=spec.plus, space=spec.space, sharp=spec.sharp, prec=spec.prec)
    real = _fmt_float(value.real, verb, inner)
    inner.plus = True
    imag = _fmt_float(value.imag, verb, inner)
    return _pad(f"({real}{imag}i)", spec)


def _fmt_string(text: str, verb: str, spec: _Spec) -> str:
    if spec.prec is not None and verb in "svxXq":
        text = text[: spec.prec]
    if verb in "sv":
        return _pad(text, spec, zeros_ok=True)
    if verb == "q":
        if spec.sharp and _can_backquote(text):
            return _pad("`" + text + "`", spec)
        return _pad(quote(text, ascii_only=spec.plus), spec)
    hex_bytes = [format(b, "02x" if verb == "x" else "02X") for b in text.encode()]
    prefix = ("0x" if verb == "x" else "0X") if spec.sharp else ""
    if spec.space:
        return _pad(" ".join(prefix + h for h in hex_bytes), spec)
    return _pad(prefix + "".join(hex_bytes), spec)


_INT_VERBS = set("bcdoOqxXUv")
_FLOAT_VERBS = set("beEfFgGxXv")
_STRING_VERBS = set("svxXq")


class _Printer:
    def __init__(self) -> None:
        self.out: list[str] = []

    def bad_verb(self, verb: str, value: object, spec: _Spec) -> None:
        # Go keeps the operand's flags, width and precision while printing it here.
        if value is None:
            self.out.append(f"%!{verb}(<nil>)")
            return
        self.out.append(f"%!{verb}({type_name(value)}=")
        self.print_arg(value, "v", spec, depth=0)
        self.out.append(")")

    def print_arg(self, value: object, verb: str, spec: _Spec, depth: int = 0) -> None:
        if value is None:
            if verb in "vT":
                self.out.append(_pad("<nil>", spec))
            else:
                self.bad_verb(verb, value, spec)
            return
        if verb == "T":
            self.out.append(_pad(type_name(value), spec))
            return
        if verb == "v" and spec.sharp:
            self.print_go_syntax(value)
            return
        if isinstance(value, bool):
            if verb in "tv":
                self.out.append(_pad("true" if value else "false", spec))
            else:
                self.bad_verb(verb, value, spec)
        elif isinstance(value, int):
            if verb in _INT_VERBS:
                self.out.append(_fmt_integer(value, verb, spec))
            else:
                self.bad_verb(verb, value, spec)
        elif isinstance(value, float):
            if verb in _FLOAT_VERBS and verb != "b":
                self.out.append(_fmt_float(value, verb, spec))
            else:
                self.bad_verb(verb, value, spec)
        elif isinstance(value, complex):
            if verb in _FLOAT_VERBS and verb not in "bxX":
                self.out.append(_fmt_complex(value, verb, spec))
            else:
                self.bad_verb(verb, value, spec)
        elif isinstance(value, GoStringer) and verb in _STRING_VERBS:
            self.out.append(_fmt_string(value.go_string(), verb, spec))
        elif isinstance(value, str):
            if verb in _STRING_VERBS:
                self.out.append(_fmt_string(value, verb, spec))
            else:
                self.bad_verb(verb, value, spec)
        else:
            self.print_composite(value, verb, spec, depth)

    def print_go_syntax(self, value: object) -> None:
        """%#v: the value as Go source (strings quoted, maps typed)."""
        if isinstance(value, str) and not isinstance(value, GoStringer):
            self.out.append(quote(value))
        elif isinstance(value, GoMap):
            self.out.append(type_name(value) + "{")
            for i, key in enumerate(sorted(value, key=_sort_key)):
                if i:
                    self.out.append(", ")
                self.print_go_syntax(key)
                self.out.append(":")
                self.print_go_syntax(value[key])
            self.out.append("}")
        else:
            self.print_arg(value, "v", _Spec())

    def print_composite(self, value: object, verb: str, spec: _Spec, depth: int) -> None:
        if isinstance(value, GoMap):
            self.out.append("map[")
            for i, key in enumerate(sorted(value, key=_sort_key)):
                if i:
                    self.out.append(" ")
                self.print_arg(key, verb, spec, depth + 1)
                self.out.append(":")
                self.print_arg(value[key], verb, spec, depth + 1)
            self.out.append("]")
        elif isinstance(value, GoSlice):
            self.out.append("[")
            for i, item in enumerate(value):
                if i:
                    self.out.append(" ")
                self.print_arg(item, verb, spec, depth + 1)
            self.out.append("]")
        elif isinstance(value, GoStruct):
            if value.is_pointer and depth > 0:
                # Go prints the address of nested pointers; it varies per run.
                self.out.append(f"0xc{id(value) & 0xFFFFFFFFF:09x}")
                return
            if value.is_pointer:
                self.out.append("&")
            self.out.append("{")
            for i, (name, field) in enumerate(value.go_fields()):
                if i:
                    self.out.append(" ")
                if spec.plus:
                    self.out.append(name + ":")
                self.print_arg(field, verb, spec, depth + 1)
            self.out.append("}")
        else:
            self.bad_verb(verb, str(value), spec)


def _sort_key(key: object) -> tuple[int, object]:
    if isinstance(key, str):
        return (1, key)
    if isinstance(key, (int, float)):
        return (0, key)
    return (2, str(key))


def sprint(*args: object) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    printer = _Printer()
    previous_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)  # named string types count too (Go checks the kind)
        if i > 0 and not is_string and not previous_string:
            printer.out.append(" ")
        printer.print_arg(arg, "v", _Spec())
        previous_string = is_string
    return "".join(printer.out)


def sprint_indirect(value: object) -> str:
    """How a template action prints its value: a top-level pointer is dereferenced first."""
    printer = _Printer()
    if isinstance(value, GoStruct) and value.is_pointer and not isinstance(value, GoStringer):
        printer.out.append("{")
        for i, (_, field) in enumerate(value.go_fields()):
            if i:
                printer.out.append(" ")
            printer.print_arg(field, "v", _Spec(), depth=1)
        printer.out.append("}")
    else:
        printer.print_arg(value, "v", _Spec())
    return "".join(printer.out)


def sprintln(*args: object) -> str:
    """fmt.Sprintln: operands always separated by spaces, newline appended."""
    printer = _Printer()
    for i, arg in enumerate(args):
        if i > 0:
            printer.out.append(" ")
        printer.print_arg(arg, "v", _Spec())
    printer.out.append("\n")
    return "".join(printer.out)


def sprintf(format_text: str, *args: object) -> str:
    """fmt.Sprintf with Go's verbs, flags, width, precision and error markers."""
    printer = _Printer()
    out = printer.out
    arg_index = 0
    i = 0
    end = len(format_text)
    while i < end:
        percent = format_text.find("%", i)
        if percent < 0:
            out.append(format_text[i:])
            break
        out.append(format_text[i:percent])
        i = percent + 1
        spec = _Spec()
        while i < end and format_text[i] in "#0+- ":
            flag = format_text[i]
            if flag == "#":
                spec.sharp = True
            elif flag == "0":
                spec.zero = not spec.minus
            elif flag == "+":
                spec.plus = True
            elif flag == "-":
                spec.minus = True
                spec.zero = False
            else:
                spec.space = True
            i += 1
        if i < end and format_text[i] == "*":
            i += 1
            width, arg_index = _int_from_args(args, arg_index)
            if width is None:
                out.append("%!(BADWIDTH)")
            else:
                if width < 0:
                    spec.minus, spec.zero, width = True, False, -width
                spec.width = width
        else:
            start = i
            while i < end and format_text[i].isdigit():
                i += 1
            if i > start:
                spec.width = int(format_text[start:i])
        if i < end and format_text[i] == ".":
            i += 1
            if i < end and format_text[i] == "*":
                i += 1
                prec, arg_index = _int_from_args(args, arg_index)
                if prec is None or prec < 0:
                    out.append("%!(BADPREC)")
                    prec = None
                spec.prec = prec
            else:
                start = i
                while i < end and format_text[i].isdigit():
                    i += 1
                spec.prec = int(format_text[start:i]) if i > start else 0
        if i >= end:
            out.append("%!(NOVERB)")
            break
        verb = format_text[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if arg_index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        printer.print_arg(args[arg_index], verb, spec)
        arg_index += 1
    if arg_index < len(args):
        out.append("%!(EXTRA ")
        for j, extra in enumerate(args[arg_index:]):
            if j:
                out.append(", ")
            if extra is None:
                out.append("<nil>")
            else:
                out.append(type_name(extra) + "=")
                printer.print_arg(extra, "v", _Spec())
        out.append(")")
    return "".join(out)


def _int_from_args(args: Sequence[object], index: int) -> tuple[int | None, int]:
    if index >= len(args):
        return None, index
    value = args[index]
    if isinstance(value, int) and not isinstance(value, bool):
        return value, index + 1
    return None, index + 1
