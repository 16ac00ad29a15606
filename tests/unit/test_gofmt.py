"""Go's fmt/strconv formatting as templates print values; expectations are Go's own outputs.

Expected strings come from the Go documentation and fmt/strconv tests, and were
checked against the Go-built ``promtool`` installed here (``printf`` in a rule
annotation), which prints through the same fmt package.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.golang.fmt import (
    GoMap,
    GoSlice,
    format_float,
    quote,
    sprint,
    sprintf,
    sprintln,
    type_name,
)

SHORTEST = [
    (1e6, "1e+06"),
    (1234567.0, "1.234567e+06"),
    (123456789.0, "1.23456789e+08"),
    (100000.0, "100000"),
    (0.0001, "0.0001"),
    (0.00001, "1e-05"),
    (1e21, "1e+21"),
    (0.1, "0.1"),
    (1.5, "1.5"),
    (11.0, "11"),
    (-0.0, "-0"),
    (0.0, "0"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (math.inf, "+Inf"),
    (-math.inf, "-Inf"),
    (math.nan, "NaN"),
]


@pytest.mark.parametrize(("value", "expected"), SHORTEST)
def test_shortest_float_matches_strconv_g(value: float, expected: str) -> None:
    """strconv.FormatFloat(v, 'g', -1, 64): shortest digits, exponent form outside [1e-4, 1e6)."""
    assert format_float(value) == expected


@pytest.mark.parametrize(("value", "fmt", "prec", "expected"), [
    (3.0, "e", -1, "3e+00"),
    (1e21, "f", -1, "1000000000000000000000"),
    (1e-5, "f", -1, "0.00001"),
    (12345.678, "e", 6, "1.234568e+04"),
    (1234567.0, "g", 4, "1.235e+06"),
    (0.0001234, "g", 4, "0.0001234"),
    (100.0, "g", 4, "100"),
    (3.0, "x", -1, "0x1.8p+01"),
    (0.0, "x", -1, "0x0p+00"),
    (5e-324, "x", -1, "0x1p-1074"),
])
def test_format_float_with_explicit_format(value: float, fmt: str, prec: int, expected: str) -> None:
    """FormatFloat honours the e, f, g and x formats with and without a precision."""
    assert format_float(value, fmt, prec) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_shortest_float_round_trips(value: float) -> None:
    """The shortest form always parses back to the same float, as strconv guarantees."""
    assert float(format_float(value)) == value
    assert float(format_float(value, "e", -1)) == value


PRINTF = [
    ('%.2f %d %s %q %x %g %e', (1.5, 3, "s", "q\n", 255, 1e6, 12345.678),
     '1.50 3 s "q\\n" ff 1e+06 1.234568e+04'),
    ("%v %5.1f|%-6d|%06.2f|%+d|%x|%X|%o|%c|%q|%U|%t", (1e-7, 3.14159, 42, 3.14159, 5, -255, 255,
                                                      8, 65, 66, 67, True),
     "1e-07   3.1|42    |003.14|+5|-ff|FF|10|A|'B'|U+0043|true"),
    ("%s|%d", (1.5, "x"), "%!s(float64=1.5)|%!d(string=x)"),
    ("%s %d", (), "%!s(MISSING) %!d(MISSING)"),
    ("%d", (1, 2), "1%!(EXTRA int=2)"),
    ("%z", (1,), "%!z(int=1)"),
    ("%", (), "%!(NOVERB)"),
    ("100%%", (), "100%"),
    ("%5s|%-5s|%.2s|%05d|%x|%X|% x|%#x", ("ab", "ab", "abc", -42, "hi", "hi", "hi", 255),
     "   ab|ab   |ab|-0042|6869|6869|68 69|0xff"),
    ("%*d|%-*d|%.*f", (5, 1, 4, 2, 2, 3.14159), "    1|2   |3.14"),
    ("%e %E %.3e %g %G %.3g %f %.0f %8.3f %-8.3f| %+.2f % .2f",
     (1234.5678, 0.000012, 1e100, 1e-7, 1e21, 123456.0, 1e6, 2.5, 3.14159, 3.14159, 2.0, 2.0),
     ("1.234568e+03 1.200000E-05 1.000e+100 1e-07 1E+21 1.23e+05 1000000.000000 2    3.142 "
     "3.142   | +2.00  2.00")),
    ("%q %+q %#q", ("héllo\x01", "héllo", "back`tick"), '"héllo\\x01" "h\\u00e9llo" "back`tick"'),
    ("%c%c %U %#U", (72, 105, 0x1F600, 65), "Hi U+1F600 U+0041 'A'"),
    ("%b %o %O %#o", (5, 8, 8, 8), "101 10 0o10 010"),
    ("%x %X", (3.5, -1.0), "0x1.cp+01 -0X1P+00"),
    ("%v %v %v", (None, True, 1.5), "<nil> true 1.5"),
    ("%T %T %T %T %T", (GoMap({"a": "b"}), True, 1, 1.5, "s"),
     "map[string]string bool int float64 string"),
    ("%#v %#v %#v", ("s", 1.0, GoMap({"a": "b"})), '"s" 1 map[string]string{"a":"b"}'),
    ("%d", (GoMap({"k": "v"}),), "map[%!d(string=k):%!d(string=v)]"),
    ("%.1f", (float("nan"),), "NaN"),
    ("%5.1f|%-6v|", (float("inf"), float("-inf")), " +Inf|-Inf  |"),
]


@pytest.mark.parametrize(("fmt", "args", "expected"), PRINTF)
def test_sprintf_matches_go(fmt: str, args: tuple[object, ...], expected: str) -> None:
    """Verbs, flags, width, precision and the %!verb(...) error markers follow Go's fmt."""
    assert sprintf(fmt, *args) == expected


def test_sprint_spaces_only_between_non_strings() -> None:
    """fmt.Sprint adds a space between operands only when neither is a string."""
    assert sprint(1, 2, "a", 3, "b", "c") == "1 2a3bc"
    assert sprint("a", None, 1) == "a<nil> 1"


def test_sprintln_always_spaces_and_ends_with_newline() -> None:
    """fmt.Sprintln separates every operand and appends a newline."""
    assert sprintln(1, "a") == "1 a\n"


def test_maps_print_with_sorted_keys_and_slices_with_spaces() -> None:
    """Maps print as map[k:v ...] in key order; slices as [a b]."""
    labels = GoMap({"job": "b", "instance": "a", "__name__": "m"})
    assert sprint(labels) == "map[__name__:m instance:a job:b]"
    assert sprint(GoMap()) == "map[]"
    assert sprint(GoSlice([1, "x", 2.5])) == "[1 x 2.5]"


def test_quote_escapes_like_strconv() -> None:
    """strconv.Quote keeps printable runes and escapes controls with Go's escapes."""
    assert quote('a"b\\c\n\t\x00\u2028é') == '"a\\"b\\\\c\\n\\t\\x00\\u2028é"'


def test_type_names_are_go_names() -> None:
    """%T names: nil, bool, int, float64, string and the carried Go type of composites."""
    assert [type_name(v) for v in (None, False, 1, 1.0, "s")] == [
        "<nil>", "bool", "int", "float64", "string"]
    assert type_name(GoSlice([], go_type="template.queryResult")) == "template.queryResult"
