"""Alert templates render byte-for-byte as Prometheus renders them.

The oracle is Prometheus' own ``template/template_test.go`` (its cases are the
UPSTREAM table below, error messages included), Go's text/template behaviour,
and, where installed, the real ``promtool`` expanding the same annotations.
Where Go or Prometheus changed between versions, the expectations follow
Prometheus 3.x built with a current Go (noted at each such case).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.template import PRELUDE, QuerySample, Template, TemplateError, expand
from rules.template.literals import unquote
from harness.processes import require_binary

LABELS = {"__name__": "m", "instance": "a", "job": "b"}
EXTERNAL_URL = "http://testhost:9090/path/prefix"

METRIC_A = QuerySample({"__name__": "metric", "instance": "a"}, 11.0)
METRIC_B = QuerySample({"__name__": "metric", "instance": "b"}, 21.0)


def fixed_query(*samples: QuerySample) -> Callable[[str], list[QuerySample]]:
    """A query function answering every expression with ``samples``."""
    return lambda _expr: list(samples)


def upstream(text: str, query: Callable[[str], list[QuerySample]] | None = None) -> str:
    """Expand like Prometheus' tests do: template named "test", no prelude; error text on failure."""
    try:
        template = Template.parse(text, "test", prelude=False)
    except TemplateError as err:
        return f"error parsing template test: {err}"
    result = template.expand({}, 0.0, external_url=EXTERNAL_URL, query=query)
    return result.error if result.error is not None else result.text


def render(text: str, value: float = 1e6, labels: dict[str, str] | None = None,
           query: Callable[[str], list[QuerySample]] | None = None) -> str:
    """Render an alert annotation the way the rule engine will."""
    template = Template.parse(text, "__alert_A")
    return template.render(LABELS if labels is None else labels, value,
                           {"region": "eu"}, EXTERNAL_URL, query)


def each(function: str, literals: list[str], outputs: list[str]) -> list[tuple[str, str]]:
    """Upstream ranges over a slice; here each element is one template with a literal argument."""
    return [(f"{{{{ {function} {lit} }}}}", out) for lit, out in zip(literals, outputs, strict=True)]


HUMANIZE_DURATION_SECONDS = ["0s", "1s", "1m 0s", "1h 0m 0s", "1d 0h 0m 0s", "1d 1h 0m 0s",
                             "-2d 3h 4m 5s", "14m 59s"]
HUMANIZE_DURATION_FRACTIONS = ["100ms", "100us", "123.5ms", "1m 0s", "1m 0s", "1.234s", "12.35s"]
FRACTIONS = [".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"]

UPSTREAM: list[tuple[str, str]] = [
    ("plain text", "plain text"),
    ("{{ 1 }}", "1"),
    ('{{ "<b>" }}', "<b>"),
    ('{{define "x"}}{{.arg0}} {{.arg1}}{{end}}{{template "x" (args 1 "2")}}', "1 2"),
    ('{{ reReplaceAll "(a)b" "x$1" "ab" }}', "xa"),
    *each("humanize", ["0.0", "1.0", "1234567.0", ".12"], ["0", "1", "1.235M", "120m"]),
    *each("humanize", ['"0.0"', '"1.0"', '"1234567.0"', '".12"'], ["0", "1", "1.235M", "120m"]),
    *each("humanize", ["0", "-1", "1", "1234567", "9223372036854775807"],
          ["0", "-1", "1", "1.235M", "9.223E"]),
    *each("humanize1024", ["0.0", "1.0", "1048576.0", ".12"], ["0", "1", "1Mi", "0.12"]),
    *each("humanize1024", ['"0.0"', '"1.0"', '"1048576.0"', '".12"'], ["0", "1", "1Mi", "0.12"]),
    *each("humanize1024", ["0", "-1", "1", "1234567", "9223372036854775807"],
          ["0", "-1", "1", "1.177Mi", "8Ei"]),
    *each("humanizeDuration", ["0", "1", "60", "3600", "86400", "90000", "-183845", "899.99"],
          HUMANIZE_DURATION_SECONDS),
    *each("humanizeDuration", ['"0"', '"1"', '"60"', '"3600"', '"86400"'],
          HUMANIZE_DURATION_SECONDS[:5]),
    *each("humanizeDuration", FRACTIONS, HUMANIZE_DURATION_FRACTIONS),
    *each("humanizeDuration", [f'"{f}"' for f in FRACTIONS], HUMANIZE_DURATION_FRACTIONS),
    *each("humanizeDuration", ["0", "-1", "1", "1234567"], ["0s", "-1s", "1s", "14d 6h 56m 7s"]),
    *[(f'{{{{ {fn} "{v}" }}}}', v) for fn in ("humanize", "humanize1024", "humanizeDuration",
                                             "humanizeTimestamp") for v in ("+Inf", "-Inf", "NaN")],
    (("{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:"
     "{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}"),
     "-22.22%:0%:12.35%:123.5%"),
    *each("humanizePercentage", ["0", "-1", "1", "1234567", "9223372036854775807"],
          ["0%", "-100%", "100%", "1.235e+08%", "9.223e+20%"]),
    (('{{ "-0.22222" | humanizePercentage }}:{{ "0.0" | humanizePercentage }}:'
     '{{ "0.1234567" | humanizePercentage }}:{{ "1.23456" | humanizePercentage }}'),
     "-22.22%:0%:12.35%:123.5%"),
    *each("humanizeTimestamp", ["0", "-1", "1", "1234567", "9223372036"],
          ["1970-01-01 00:00:00 +0000 UTC", "1969-12-31 23:59:59 +0000 UTC",
           "1970-01-01 00:00:01 +0000 UTC", "1970-01-15 06:56:07 +0000 UTC",
           "2262-04-11 23:47:16 +0000 UTC"]),
    ("{{ 1435065584.128 | humanizeTimestamp }}", "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ "1435065584.128" | humanizeTimestamp }}', "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ (1435065584.128 | toTime).Format "2006" }}', "2015"),
    ('{{ ("1435065584.128" | toTime).Format "2006" }}', "2015"),
    ('{{ "aa bb CC" | title }}', "Aa Bb CC"),
    ('{{ "aa bb CC" | toUpper }}', "AA BB CC"),
    ('{{ "aA bB CC" | toLower }}', "aa bb cc"),
    ('{{ match "a+" "aa" }} {{ match "a+" "b" }}', "true false"),
    ('{{ graphLink "up" }}', "/graph?g0.expr=up&g0.tab=0"),
    ('{{ tableLink "up" }}', "/graph?g0.expr=up&g0.tab=1"),
    ("{{ pathPrefix }}", "/path/prefix"),
    ("{{ externalURL }}", "http://testhost:9090/path/prefix"),
    ('{{ printf "%0.2f" (parseDuration "1h2m10ms") }}', "3720.01"),
    *[(f'{{{{ "{host}" | stripPort }}}}', out) for host, out in [
        ("foo.example.com", "foo.example.com"), ("foo.example.com:12345", "foo.example.com"),
        ("192.0.2.1", "192.0.2.1"), ("192.0.2.1:12345", "192.0.2.1"),
        ("2001:0DB8::1", "2001:0DB8::1"), ("[2001:0DB8::1]:12345", "2001:0DB8::1"),
        ("[2001:0DB8::1]::12345", "[2001:0DB8::1]::12345")]],
    *[(f'{{{{ "{host}" | stripDomain }}}}', out) for host, out in [
        ("foo.example.com", "foo"), ("foo.example.com:12345", "foo:12345"),
        ("192.0.2.1", "192.0.2.1"), ("192.0.2.1:12345", "192.0.2.1:12345"),
        ("2001:0DB8::1", "2001:0DB8::1"), ("[2001:0DB8::1]:12345", "[2001:0DB8::1]:12345"),
        ("[2001:0DB8::1]::12345", "[2001:0DB8::1]::12345")]],
    # Errors, word for word.
    ("{{\u00a0}}", ("error parsing template test: template: test:1: "
                   "unrecognized character in action: U+00A0")),
    ("{{", "error parsing template test: template: test:1: unclosed action"),
    ('{{ humanize "one" }}',
     ('error executing template test: template: test:1:3: executing "test" at <humanize "one">: '
     'error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax')),
    ('{{ humanize1024 "one" }}',
     ('error executing template test: template: test:1:3: executing "test" at '
     '<humanize1024 "one">: error calling humanize1024: strconv.ParseFloat: parsing "one": '
     'invalid syntax')),
    ('{{ humanizeDuration "one" }}',
     ('error executing template test: template: test:1:3: executing "test" at '
     '<humanizeDuration "one">: error calling humanizeDuration: strconv.ParseFloat: parsing '
     '"one": invalid syntax')),
    ('{{ "one" | humanizePercentage }}',
     ('error executing template test: template: test:1:11: executing "test" at '
     '<humanizePercentage>: error calling humanizePercentage: strconv.ParseFloat: parsing '
     '"one": invalid syntax')),
    ("{{ humanizeTimestamp -9223372036854775808 }}",
     ('error executing template test: template: test:1:3: executing "test" at '
     '<humanizeTimestamp -9223372036854775808>: error calling humanizeTimestamp: '
     '-9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it '
     'overflows int64')),
]


@pytest.mark.parametrize(("text", "expected"), UPSTREAM)
def test_prometheus_template_test_cases(text: str, expected: str) -> None:
    """Each case of Prometheus' TestTemplateExpansion expands to the same text or error."""
    assert upstream(text) == expected


def test_query_first_value_and_label() -> None:
    """query | first | value / label / strvalue read the injected query's result."""
    query = fixed_query(QuerySample({"__name__": "metric", "instance": "a", "__value__": "v"},
                                    11.0))
    assert upstream('{{ query "1.5" | first | value }}', fixed_query(QuerySample({}, 1.5))) == "1.5"
    assert upstream("{{ query \"metric{instance='a'}\" | first | value }}", query) == "11"
    assert upstream("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}",
                    query) == "a"
    assert upstream("{{ query \"metric{__value__='a'}\" | first | strvalue }}", query) == "v"
    assert upstream("{{ query \"metric{instance='a'}\" | first | label \"foo\" }}", query) == ""
    assert upstream('{{ $x := query "metric" | first }}{{ $x.Labels.foo }}', query) == ""


def test_query_passes_the_expression_to_the_injected_function() -> None:
    """The query string reaches the rule engine's function unchanged."""
    seen: list[str] = []

    def query(expr: str) -> list[QuerySample]:
        seen.append(expr)
        return [METRIC_A]

    assert render('{{ printf "up{job=%q}" $labels.job | query | first | value }}',
                  query=query) == "11"
    assert seen == ['up{job="b"}']


def test_sort_by_label_orders_the_range() -> None:
    """sortByLabel sorts query results stably by one label before ranging."""
    text = ('{{ range query "metric" | sortByLabel "instance" }}'
            "{{.Labels.instance}}:{{.Value}}: {{end}}")
    assert upstream(text, fixed_query(METRIC_B, METRIC_A)) == "a:11: b:21: "


def test_query_errors_read_as_in_prometheus() -> None:
    """first on an empty result and a field of the result list fail with Go's messages."""
    empty = fixed_query()
    assert upstream('{{ query "missing" | first }}', empty) == (
        'error executing template test: template: test:1:21: executing "test" at <first>: '
        "error calling first: first() called on vector with no elements")
    assert upstream('{{ (query "missing").banana }}', empty) == (
        'error executing template test: template: test:1:10: executing "test" at <"missing">: '
        "can't evaluate field banana in type template.queryResult")


def test_a_failing_query_function_becomes_the_template_error() -> None:
    """An exception from the injected query function is reported like Prometheus' query error."""
    def broken(_expr: str) -> list[QuerySample]:
        raise RuntimeError('parse error: unexpected character: "!"')

    assert render('{{ query "!" }}', query=broken) == (
        '<error expanding template: error executing template __alert_A: template: '
        '__alert_A:1:115: executing "__alert_A" at <query "!">: error calling query: '
        'parse error: unexpected character: "!">')


PRELUDE_CASES = [
    ("{{ $value }}", 1e6, "1e+06"),
    ("{{ $value }}", 1234567.0, "1.234567e+06"),
    ("{{ $value }}", 0.5, "0.5"),
    ("{{ $value }}", float("nan"), "NaN"),
    ("{{ .Value }}|{{ $value | humanize }}", 1234567.0, "1.234567e+06|1.235M"),
    ("{{ $labels }}", 1.0, "map[__name__:m instance:a job:b]"),
    ("{{ $labels.instance }}/{{ .Labels.job }}", 1.0, "a/b"),
    ("[{{ $labels.missing }}]", 1.0, "[]"),
    ("{{ $externalLabels }} {{ $externalLabels.region }}", 1.0, "map[region:eu] eu"),
    ("{{ $externalURL }}|{{ .ExternalURL }}", 1.0, f"{EXTERNAL_URL}|{EXTERNAL_URL}"),
    ("{{ . }}", 1e6, f"{{map[__name__:m instance:a job:b] map[region:eu] {EXTERNAL_URL} 1e+06}}"),
]


@pytest.mark.parametrize(("text", "value", "expected"), PRELUDE_CASES)
def test_prelude_variables_print_like_go(text: str, value: float, expected: str) -> None:
    """$value is a float64 (1e+06), $labels a map[string]string (sorted, missing keys empty)."""
    assert render(text, value) == expected


def test_runtime_error_columns_count_the_prelude_on_line_one() -> None:
    """Go counts columns in the text with the prelude prepended; later lines are unaffected."""
    assert len(PRELUDE) == 112
    assert render('{{ humanize "one" }}') == (
        '<error expanding template: error executing template __alert_A: template: '
        '__alert_A:1:115: executing "__alert_A" at <humanize "one">: error calling humanize: '
        'strconv.ParseFloat: parsing "one": invalid syntax>')
    assert render('line1\n{{ humanize "x" }}').startswith(
        '<error expanding template: error executing template __alert_A: template: '
        '__alert_A:2:3: executing "__alert_A" at <humanize "x">')
    # Columns are bytes, as in Go: "é" is two.
    assert 'template: __alert_A:1:125: executing "__alert_A" at <.Foo>' in render(
        '{{ "é" }}{{ .Foo }}')


RUNTIME_ERRORS = [
    # Prometheus 3.x is built with Go >= 1.21, which names both types here.
    ("{{ gt $value 80 }}", "<gt $value 80>",
     "error calling gt: incompatible types for comparison: float64 and int"),
    ("{{ eq 1 1.0 }}", "<eq 1 1.0>",
     "error calling eq: incompatible types for comparison: int and float64"),
    ("{{ lt true false }}", "<lt true false>",
     "error calling lt: invalid type for comparison"),
    ("{{ eq $labels $labels }}", "<eq $labels $labels>",
     ("error calling eq: non-comparable type map[__name__:m instance:a job:b]: "
     "map[string]string")),
    ("{{ .Foo }}", "<.Foo>",
     ("can't evaluate field Foo in type struct { Labels map[string]string; ExternalLabels "
     "map[string]string; ExternalURL string; Value interface {} }")),
    ("{{ $value.x }}", "<$value.x>", "can't evaluate field x in type float64"),
    ("{{ humanize true }}", "<humanize true>", "error calling humanize: can't convert bool to float"),
    ("{{ humanize nil }}", "<humanize nil>", "error calling humanize: can't convert <nil> to float"),
    ("{{ humanize }}", "<humanize>", "wrong number of args for humanize: want 1 got 0"),
    ("{{ humanize 1 2 }}", "<humanize>", "wrong number of args for humanize: want 1 got 2"),
    ("{{ printf }}", "<printf>", "wrong number of args for printf: want at least 1 got 0"),
    ("{{ toUpper 1 }}", "<1>", "expected string; found 1"),
    ("{{ toUpper $value }}", "<$value>", "wrong type for value; expected string; got float64"),
    ('{{ "x" | safeHtml | toUpper }}', "<toUpper>",
     "wrong type for value; expected string; got template.HTML"),
    ("{{ 1 2 }}", "<1>", "can't give argument to non-function 1"),
    ("{{ nil }}", "<nil>", "nil is not a command"),
    ("{{ .Labels 1 }}", "<.Labels>", "Labels has arguments but cannot be invoked as function"),
    ("{{ range $value }}x{{ end }}", "<$value>", "range can't iterate over 1e+06"),
    ('{{ template "nope" }}', '<{{template "nope"}}>', 'template "nope" not defined'),
    ('{{ index $labels 1 }}', "<index $labels 1>",
     "error calling index: value has type int; should be string"),
    ("{{ index 1 1 }}", "<index 1 1>", "error calling index: can't index item of type int"),
    ("{{ len 3 }}", "<len 3>", "error calling len: len of type int"),
    ('{{ parseDuration "2m1h" }}', '<parseDuration "2m1h">',
     'error calling parseDuration: not a valid duration string: "2m1h"'),
    ('{{ reReplaceAll "(" "x" "y" }}', '<reReplaceAll "(" "x" "y">',
     ("error calling reReplaceAll: regexp: Compile(`(`): error parsing regexp: "
     "missing closing ): `(`")),
    ('{{ match "(" "x" }}', '<match "(" "x">',
     "error calling match: error parsing regexp: missing closing ): `(`"),
    ("{{ humanizeTimestamp 1e20 }}", "<humanizeTimestamp 1e20>",
     ("error calling humanizeTimestamp: 1e+20 cannot be represented as a nanoseconds timestamp "
     "since it overflows int64")),
    ("{{ 18446744073709551615 }}", "<18446744073709551615>", "18446744073709551615 overflows int"),
    # A missing key of an interface{} map is a typed nil, unlike a missing label.
    ("{{ first (args).x }}", "<args>",
     "wrong type for value; expected template.queryResult; got interface {}"),
    ('{{ label "x" (args).x }}', "<args>",
     "wrong type for value; expected *template.sample; got interface {}"),
    ("{{ (args).x.y }}", "<args>", "nil pointer evaluating interface {}.y"),
    # Go >= 1.21 names the callee.
    ("{{ call $labels 1 }}", "<call $labels 1>",
     "error calling call: non-function $labels of type map[string]string"),
]


@pytest.mark.parametrize(("text", "context", "message"), RUNTIME_ERRORS)
def test_runtime_errors_render_prometheus_error_text(text: str, context: str, message: str) -> None:
    """A failing expansion renders <error expanding template: ...> with Go's location and message."""
    rendered = render(text)
    match = re.fullmatch(r'<error expanding template: error executing template __alert_A: '
                         r'template: __alert_A:1:(\d+): executing "__alert_A" at (<.*?>): (.*)>',
                         rendered, re.DOTALL)
    assert match is not None, rendered
    assert (match.group(2), match.group(3)) == (context, message)


PARSE_ERRORS = [
    ("{{ nope }}", 'template: __alert_A:1: function "nope" not defined', 1, 4),
    ("{{ $y }}", 'template: __alert_A:1: undefined variable "$y"', 1, 7),
    ("{{ end }}", "template: __alert_A:1: unexpected {{end}}", 1, 8),
    ("a\n{{ if 1 }}\n", "template: __alert_A:3: unexpected EOF", 3, 1),
    ("{{ if true }}\n{{ end", "template: __alert_A:2: unclosed action", 2, 7),
    ('{{ "a\\q" }}', "template: __alert_A:1: invalid syntax", 1, 4),
    ("{{ 1 | 2 }}", "template: __alert_A:1: non executable command in pipeline stage 2", 1, 10),
    ("{{ 1e400 }}", 'template: __alert_A:1: illegal number syntax: "1e400"', 1, 4),
    ("{{ break }}", "template: __alert_A:1: {{break}} outside {{range}}", 1, 10),
    ("{{ if }}{{ end }}", "template: __alert_A:1: missing value for if", 1, 7),
    ('{{ printf "%s"\n  $labels.job', ("template: __alert_A:2: unclosed action started at "
                                       "__alert_A:1"), 2, 14),
    ("{{/* x", "template: __alert_A:1: unclosed comment", 1, 3),
    # Go >= 1.22's lexer; older Go reported 'unexpected ")" in command'.
    ("{{ ) }}", "template: __alert_A:1: unexpected right paren", 1, 4),
    ("{{ (1 }}", "template: __alert_A:1: unclosed left paren", 1, 7),
    ("{{ 'ab' }}", "template: __alert_A:1: malformed character constant: 'ab'", 1, 4),
    ("{{ $x := 1 }}{{ $x.y.z 1 | 2.5 }}", ("template: __alert_A:1: non executable command in "
                                          "pipeline stage 2"), 1, 32),
]


@pytest.mark.parametrize(("text", "message", "line", "column"), PARSE_ERRORS)
def test_parse_errors_use_gos_message_and_locate_the_token(
        text: str, message: str, line: int, column: int) -> None:
    """TemplateError carries Go's message (as promtool check rules prints it) and the position
    of the token the parser stopped at (Go names only the line)."""
    with pytest.raises(TemplateError) as caught:
        Template.parse(text, "__alert_A")
    assert (str(caught.value), caught.value.line, caught.value.column) == (message, line, column)


def test_expansion_keeps_the_error_apart_for_logging() -> None:
    """Template.expand returns Go's error separately, so the rule engine can log and count it."""
    result = Template.parse('{{ humanize "x" }}', "__alert_A").expand(LABELS, 1.0)
    assert result.text == ""
    assert result.error is not None
    assert result.error.startswith("error executing template __alert_A: template: __alert_A:1:115:")
    assert result.rendered() == f"<error expanding template: {result.error}>"


def test_expand_reports_parse_errors_as_prometheus_evaluation_does() -> None:
    """expand() renders an unparsable template as Prometheus' evaluation would."""
    assert expand("{{ nope }}", "__alert_HighCPU", LABELS, 1.0) == (
        '<error expanding template: error parsing template __alert_HighCPU: template: '
        '__alert_HighCPU:1: function "nope" not defined>')


CONSTRUCTS = [
    ('{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}', "high"),
    ("{{ with $labels.instance }}inst={{ . }}{{ else }}none{{ end }}", "inst=a"),
    ("{{ with $labels.nope }}inst={{ . }}{{ else }}none{{ end }}", "none"),
    ("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", "__name__=m;instance=a;job=b;"),
    ("{{ range $labels }}{{ . }},{{ end }}", "m,a,b,"),
    ("{{ range $i, $e := args 1 2 }}{{ $i }}{{ end }}", "arg0arg1"),
    ("{{ range (args).nope }}x{{ else }}empty{{ end }}", "empty"),
    ("{{ range .Labels.nope }}x{{ else }}empty{{ end }}",
     ('<error expanding template: error executing template __alert_A: template: __alert_A:1:128: '
     'executing "__alert_A" at <.Labels.nope>: range can\'t iterate over >')),
    ("{{ range $labels }}{{ . }},{{ break }}{{ end }}", "m,"),
    (('{{ range $k, $v := $labels }}{{ if eq $k "instance" }}{{ continue }}{{ end }}{{ $k }} '
     "{{ end }}"), "__name__ job "),
    ("{{ range 3 }}{{ . }}{{ end }}", "012"),  # Go 1.22+ ranges over integers.
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", "2"),
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ end }}{{ $x }}", "1"),
    ("{{ $.Labels.job }}", "b"),
    ('{{- " a " -}} b {{- 1 }} {{ 2 -}} c', " a b1 2c"),
    ("{{/* comment */}}x{{- /* c2 */ -}} y", "xy"),
    (("{{ if and $labels.instance $labels.job }}both{{ end }}|{{ or \"\" \"x\" }}|{{ and 1 0 }}|"
     "{{ not 0 }}|{{ or 0 \"\" }}"), "both|x|0|true|"),
    ('{{ or 1 (humanize "x") }}|{{ and 0 (humanize "x") }}', "1|0"),
    (('{{ eq $labels.job "b" }} {{ eq "x" "a" "b" "x" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} '
     '{{ ge "a" "b" }} {{ gt 1.5 1.2 }}'), "true true true true true false true"),
    (('{{ len $labels }} {{ index $labels "job" }} [{{ index $labels "zz" }}] '
     "{{ (args 1).arg5 }}"), "3 b [] <no value>"),
    ('{{ len "héllo" }} {{ index "abc" 1 }} {{ slice "abcdef" 1 3 }} {{ len (args 1 2) }}',
     "6 98 bc 2"),
    ('{{ html "<a href=\'x\'>&\\"" }}', "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"),
    ('{{ js "it\'s <b>\\"x\\"</b> = \\\\ \\n é" }}',
     "it\\'s \\u003Cb\\u003E\\\"x\\\"\\u003C/b\\u003E \\u003D \\\\ \\u000A é"),
    ('{{ urlquery "a b&c=d/é" }}', "a+b%26c%3Dd%2F%C3%A9"),
    ('{{ print 1 2 "a" 3 }}|{{ println 1 "a" }}|{{ print nil }}', "1 2a3|1 a\n|<nil>"),
    ('{{ printf "%s is %.1f%%" $labels.instance 99.5 }}', "a is 99.5%"),
    ('{{ $value | printf "%.1f" }} {{ 3 | printf "%d-%d" 4 }}', "1000000.0 4-3"),
    ("{{ 0x1F }} {{ 'a' }} {{ 1_000 }} {{ 0b101 }} {{ 0o17 }} {{ 017 }} {{ 1.5e3 }} {{ -3 }}",
     "31 97 1000 5 15 15 1500 -3"),
    ('{{ "\\u00e9\\x41\\101\\t|" }} {{ `raw\\n` }}', "éAA\t| raw\\n"),
    ("{{ 1i }} {{ 1+2i }}", "(0+1i) (1+2i)"),
    (('{{ define "a" }}A{{ . }}{{ end }}{{ template "a" 5 }}{{ template "a" }}'
     '{{ block "b" "z" }}B{{ . }}{{ end }}'), "A5A<no value>Bz"),
    (('{{ reReplaceAll "x*" "-" "abxd" }} {{ reReplaceAll "(?P<h>[^:]+):(\\\\d+)" '
     '"${h}-$2-$1x-$$" "host:90" }}'), "-a-b-d- host-90--$"),
    ('{{ match "^a$" "a\\n" }} {{ match "\\\\d" "x1" }}', "false true"),
    (('{{ humanize 1234567 }} {{ humanize 0.001234 }} {{ humanize "1234" }} {{ humanize 1e30 }} '
     "{{ humanize 1e-30 }}"), "1.235M 1.234m 1.234k 1e+06Y 1e-06y"),
    ("{{ humanizeDuration 3725 }} {{ humanizeDuration 0.1234 }} {{ humanizePercentage 0.1234 }}",
     "1h 2m 5s 123.4ms 12.34%"),
    ('{{ (toTime 1435065584.128).Format "2006-01-02T15:04:05.000Z07:00 Mon Jan _2" }}',
     "2015-06-23T13:19:44.128Z Tue Jun 23"),
    ("{{ toTime 1435065584.128 }}", "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ $v := query "m" | first }}{{ $v }}', "{map[__name__:metric instance:a] 11}"),
    ('{{ printf "%v|%d" (toTime 1) (toTime 1) }}', "1970-01-01 00:00:01 +0000 UTC|&{0 62135596801 0}"),
    ('{{ index (query "m") 0 }}|{{ (index (query "m") 0).Labels.instance }}',
     "{map[__name__:metric instance:a] 11}|a"),
]


@pytest.mark.parametrize(("text", "expected"), CONSTRUCTS)
def test_go_template_constructs(text: str, expected: str) -> None:
    """if/else if/with/range (maps sorted, break, continue), variables, trimming, builtins."""
    assert render(text, query=fixed_query(METRIC_A)) == expected


# Templates whose output does not depend on the Go or Prometheus version; promtool expands them.
ORACLE_TEMPLATES = [
    "{{ $value }}|{{ $labels }}|{{ humanize $value }}|{{ humanize1024 $value }}",
    "{{ humanizeDuration $value }}|{{ humanizePercentage $value }}|{{ humanizeTimestamp $value }}",
    ('{{ printf "%.2f %d %s %q %x %g %e %v %5.1f|%-6d|%06.2f|%+d" 1.5 3 "s" "q" 255 1e6 12345.678 '
    "1e-7 3.14159 42 3.14159 5 }}"),
    '{{ printf "%s %d" }} {{ printf "%d" 1 2 }} {{ print 1 2 "a" 3 "b" "c" }} {{ println 1 "a" }}',
    "{{ 1234567.0 }} {{ 100000.0 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 1e21 }}",
    "{{ if gt $value 80.0 }}high{{ else }}low{{ end }}",
    "{{ range $k, $v := $labels }}{{$k}}={{$v}};{{ end }}",
    "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
    ('{{ len $labels }} {{ index $labels "job" }} {{ index $labels "zz" }}|{{ .Labels.zz }}|'
    "{{ (args 1).arg5 }}"),
    ('{{ html "<a href=\'x\'>&\\"" }} {{ js "it\'s <b>\\"x\\"</b> = \\\\ \\n é" }} '
    '{{ urlquery "a b&c=d/é" }}'),
    '{{ reReplaceAll "(a)b" "x$1" "ab" }} {{ reReplaceAll "x*" "-" "abxd" }}',
    '{{ match "a+" "aa" }} {{ match "^a$" "a\\n" }} {{ match "(" "x" }}',
    '{{ humanize 1234567 }} {{ humanize 0.001234 }} {{ humanize "1234" }} {{ humanize -1234.5 }}',
    "{{ humanizeTimestamp 1435065584.128 }} {{ humanizeTimestamp -0.5 }} {{ humanizeTimestamp 1e10 }}",
    '{{ humanize "one" }}',
    "{{ humanize true }}",
    '{{ "x" | safeHtml | toUpper }}',
    ('{{ printf "%e %E %.3e %g %G %.3g %f %.0f %8.3f" 1234.5678 0.000012 1e100 1e-7 1e21 123456.0 '
    "1e6 2.5 3.14159 }}"),
    '{{ printf "%08.3f|%+08d|%-08d|%08s|%x|% X|%#X" -3.14159 42 42 "ab" -1 "ab" "ab" }}',
    '{{ printf "%x %X %#v %#v" 3.5 -1.0 "s" $labels }}',
    "{{ range $value }}x{{ end }}",
    "{{ nil }}",
    '{{ 0x1F }} {{ \'a\' }} {{ 1.5e3 }} {{ "\\u00e9\\x41\\101\\t|" }} {{ `raw\\n` }}',
    "{{- \" a \" -}} b {{- 1 }} {{ 2 -}} c\n{{/* multi\nline */}}x",
    'line1\n{{ humanize "x" }}',
    '{{ query "m" | first | value }}|{{ range query "m" }}{{ .Labels.job }}={{ .Value }}{{ end }}',
    '{{ (query "m" | first) }}|{{ query "m" | first | label "instance" }}',
    '{{ (toTime $value).Format "2006-01-02 15:04:05 Mon Jan _2" }}',
]


def promtool_expand(tmp_path: Path, templates: list[str], value: str) -> list[str]:
    """Have the real promtool expand each template as an annotation of a firing alert."""
    promtool = require_binary("promtool")
    annotations = {f"a{i}": t for i, t in enumerate(templates)}
    rules = {"groups": [{"name": "g", "rules": [
        {"alert": "A", "expr": "m > -1e300 or m <= -1e300", "annotations": annotations}]}]}
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": 'm{instance="a",job="b"}', "values": value}],
        "alert_rule_test": [{"eval_time": "0m", "alertname": "A",
                             "exp_alerts": [{"exp_labels": {"instance": "a", "job": "b"}}]}]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    got = re.search(r"got:\[.*?Annotations:\{(.*)\}\s*\]", output, re.DOTALL)
    assert got is not None, output
    values = dict(re.findall(r'(a\d+)="((?:[^"\\]|\\.)*)"', got.group(1)))
    return [unquote(f'"{values[f"a{i}"]}"') for i in range(len(templates))]


@pytest.mark.parametrize("value", ["1000000", "0.5", "-0.000123", "1435065584.128"])
def test_promtool_expands_the_same_text(tmp_path: Path, value: str) -> None:
    """The real promtool, expanding alert annotations, produces exactly our output."""
    expected = promtool_expand(tmp_path, ORACLE_TEMPLATES, value)
    series = QuerySample(LABELS, float(value))
    ours = [Template.parse(t, "__alert_A").render(LABELS, float(value),
                                                  query=fixed_query(series))
            for t in ORACLE_TEMPLATES]
    assert ours == expected


TEMPLATE_PIECES = st.sampled_from([
    "{{", "}}", "{{- ", " -}}", " ", "\n", "$x", "$", ":=", "=", "|", ",", ".", ".Labels",
    ".Value", "$labels", "$value", ".instance", "humanize", "printf", "query", "first", "value",
    "label", "len", "index", "eq", "lt", "and", "or", "not", "args", "toTime", "title",
    "reReplaceAll", "range", "if", "else", "end", "with", "break", "continue", "define",
    "template", "block", "nil", "true", "1", "-2", "1.5", "1e3", "0x1F", "'a'", '"%d %s %v"',
    '"x"', "`raw`", "(", ")", "/*", "*/", "é", "\\", "\u00a0", "0.1i", '"m"',
])


def _render_anything(text: str) -> None:
    try:
        template = Template.parse(text, "__alert_fuzz")
    except TemplateError as err:
        assert str(err).startswith("template: __alert_fuzz:")
        return
    rendered = template.render(LABELS, 42.0, query=fixed_query(METRIC_A, METRIC_B))
    assert "panic expanding template" not in rendered


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEMPLATE_PIECES, max_size=30).map("".join))
def test_template_like_text_only_raises_template_error(text: str) -> None:
    """Any mix of template tokens either fails to parse with TemplateError or renders a string."""
    _render_anything(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_only_raises_template_error(text: str) -> None:
    """Arbitrary text never escapes as anything but TemplateError, and rendering never raises."""
    _render_anything(text)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    """Pathologically nested input is rejected or rendered, never a RecursionError."""
    _render_anything("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}")
    _render_anything("{{ if 1 }}" * 3000 + "{{ end }}" * 3000)
