"""Runner for Prometheus' promqltest ``.test`` scripts against our engine.

``python3 -m tests.promqltest [-v] [file.test ...]`` prints the pass rate per file. A case
is one ``eval``. Native-histogram samples are not loaded (mixed series keep their float
samples). Native-histogram cases are counted apart in the ``nh`` column: those expecting
``{{...}}`` results, and failing cases whose query selects a series that had histogram
samples. Every other case either passes or is listed in ``SKIPPED_FILES``/``SKIPPED_CASES``
with the reason.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rules.durations import parse_duration
from rules.model import NAME_LABEL, STALE_NAN, Labels, is_stale_nan
from rules.promql import Engine, PromQLError, parse
from rules.promql.ast import Expr, MatrixSelector, VectorSelector
from rules.promql.functions import almost_equal
from rules.promql.lexer import EOF, IDENT, STRING, Lexer
from rules.promql.parser import parse_number
from rules.promql.values import MatrixResult, ScalarResult, StringResult, VectorResult
from rules.store import SeriesStore

TESTDATA = Path("/work/shared/conformance/promqltest")
EPSILON = 1e-6

# Whole files we do not run, with the reason.
SKIPPED_FILES = {
    "native_histograms.test": "native histograms are not supported",
    "info.test": "info() is experimental and not supported",
    "limit.test": "limitk/limit_ratio are experimental and not supported",
    "fill-modifier.test": "fill modifiers are experimental and not supported",
    "duration_expression.test": "duration expressions are experimental and not supported",
    "extended_vectors.test": "anchored/smoothed range selectors are experimental and not supported",
    "type_and_unit.test": "type-and-unit labels are experimental and not supported",
    "start_timestamps.test": "start timestamps are experimental and not supported",
}



def _cases(reason: str, *lines: int) -> dict[int, str]:
    return dict.fromkeys(lines, reason)


_EXPERIMENTAL = "experimental function {} is not supported"

# Individual cases (file -> eval line -> reason) we do not pass, each with the reason.
SKIPPED_CASES: dict[str, dict[int, str]] = {
    "aggregators.test": {
        **_cases("limitk is experimental and not supported", 425),
        **_cases("limit_ratio is experimental and not supported", 428),
    },
    "at_modifier.test": _cases(_EXPERIMENTAL.format("mad_over_time"), 283),
    "functions.test": {
        **_cases(_EXPERIMENTAL.format("sort_by_label"), 754, 767, 780, 793, 806, 858, 871, 877),
        **_cases(_EXPERIMENTAL.format("sort_by_label_desc"), 819, 832, 845),
        **_cases(_EXPERIMENTAL.format("double_exponential_smoothing"), 898, 906, 914, 926),
        **_cases(_EXPERIMENTAL.format("mad_over_time"), 1287, 1292, 1297, 1302, 1307, 1311, 1315),
        **_cases(_EXPERIMENTAL.format("ts_of_min_over_time"), 1324),
        **_cases(_EXPERIMENTAL.format("ts_of_max_over_time"), 1327),
        **_cases(_EXPERIMENTAL.format("ts_of_last_over_time"), 1337, 1340, 1343, 1346),
        **_cases(_EXPERIMENTAL.format("ts_of_first_over_time"), 1356, 1359, 1362, 1365, 1368),
        **_cases(_EXPERIMENTAL.format("step()"), 2081, 2084, 2087, 2101, 2112, 2122, 2129),
        **_cases(_EXPERIMENTAL.format("range()"), 2091, 2094, 2097, 2105, 2108, 2115, 2125, 2133),
        **_cases(_EXPERIMENTAL.format("start()"), 2140, 2143, 2146, 2160, 2163, 2174, 2181, 2195),
        **_cases(_EXPERIMENTAL.format("end()"), 2150, 2153, 2156, 2167, 2170, 2177, 2184, 2188, 2191, 2198),
        **_cases(_EXPERIMENTAL.format("min_of"), 2221, 2224, 2234, 2241, 2248, 2255, 2258),
        **_cases(_EXPERIMENTAL.format("max_of"), 2227, 2230, 2237, 2244, 2251, 2261, 2264),
    },
    "range_queries.test": {
        **_cases(_EXPERIMENTAL.format("sort_by_label"), 115),
        **_cases(_EXPERIMENTAL.format("sort_by_label_desc"), 118),
    },
}


@dataclass
class Load:
    line: int
    interval_ms: int
    series: list[tuple[Labels, list[tuple[int, float]]]]
    histogram_series: list[Labels]


@dataclass
class Eval:
    line: int
    expr: str
    instant_ms: int | None = None
    range_ms: tuple[int, int, int] | None = None
    expect_fail: bool = False
    fail_message: str | None = None
    fail_regex: str | None = None
    ordered: bool = False
    scalar: float | None = None
    expected: list[tuple[Labels, list[float | None]]] = field(default_factory=list)
    expected_string: str | None = None
    range_vector: tuple[int, int, int] | None = None
    histogram: bool = False


Command = Load | Eval | None  # None is "clear"


def parse_time_ms(text: str) -> int:
    """``50m``, ``10s53ms``, ``0`` or a number of seconds, as milliseconds."""
    text = text.strip()
    try:
        return round(float(text) * 1000)
    except ValueError:
        return round(parse_duration(text) * 1000)


_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[iI]nf|[nN]a[nN]"
_ITEM_RE = re.compile(
    rf"^(?P<start>[+-]?(?:{_NUMBER})|stale)(?:(?P<step>[+-](?:{_NUMBER}))?x(?P<times>[0-9]+))?$"
)
_BLANK_RE = re.compile(r"^_(?:x(?P<times>[0-9]+))?$")


def expand_values(text: str) -> list[float | None]:
    """Expand the promtool series notation (``1+2x3 _ stale -1-1x2 3x2``); None is a gap."""
    out: list[float | None] = []
    for item in text.split():
        blank = _BLANK_RE.match(item)
        if blank:
            out.extend([None] * (int(blank["times"]) if blank["times"] else 1))
            continue
        match = _ITEM_RE.match(item)
        if match is None:
            raise ValueError(f"bad series value {item!r}")
        value = STALE_NAN if match["start"] == "stale" else _number(match["start"])
        out.append(value)
        if match["times"] is None:
            continue
        step = _number(match["step"]) if match["step"] else 0.0
        for _ in range(int(match["times"])):
            # Accumulate like Prometheus (repeated addition, not start + i*step).
            value += step
            out.append(value)
    return out


def _number(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * parse_number(text.lstrip("+-"))


def split_series(line: str) -> tuple[Labels, str]:
    """Split ``metric{a="b"} values`` into labels and the values text."""
    histogram_at = line.find("{{")
    if histogram_at >= 0:
        head, _ = split_series(line[:histogram_at])
        return head, line[histogram_at:]
    lexer = Lexer(line)
    token = lexer.next_token()
    labels: dict[str, str] = {}
    if token.kind == IDENT:
        labels[NAME_LABEL] = token.text
        token = lexer.next_token()
    if token.kind == "{":
        token = lexer.next_token()
        while token.kind != "}":
            following = lexer.next_token()
            if following.kind in (",", "}") and token.kind == STRING:
                labels[NAME_LABEL] = token.text
                token = following
            else:
                value = lexer.next_token()
                if following.kind != "=" or value.kind != STRING:
                    raise ValueError(f"bad series description {line!r}")
                labels[token.text] = value.text
                token = lexer.next_token()
            if token.kind == ",":
                token = lexer.next_token()
        return Labels(labels), line[lexer.pos :]
    return Labels(labels), line[token.pos :] if token.kind != EOF else ""


def _lines_from(lines: list[str], start: int) -> Iterator[tuple[int, str]]:
    index = start
    while index < len(lines) and lines[index]:
        yield index, lines[index]
        index += 1


def parse_script(text: str) -> list[tuple[int, Command]]:
    lines = [("" if l.strip().startswith("#") else l.strip()) for l in text.split("\n")]
    commands: list[tuple[int, Command]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line:
            index += 1
            continue
        body = list(_lines_from(lines, index + 1))
        words = line.split()
        if words[0] == "clear":
            commands.append((index + 1, None))
            body = []
        elif words[0] in ("load", "load_with_nhcb"):
            commands.append((index + 1, _parse_load(index + 1, words, body)))
        elif words[0].startswith("eval"):
            commands.append((index + 1, _parse_eval(index + 1, line, body)))
        else:
            raise ValueError(f"line {index + 1}: unknown command {line!r}")
        index += 1 + len(body)
    return commands


def _parse_load(line_no: int, words: list[str], body: list[tuple[int, str]]) -> Load:
    interval_ms = parse_time_ms(words[1])
    load = Load(line_no, interval_ms, [], [])
    for _, text in body:
        labels, values = split_series(text)
        if "{{" in values:
            # Keep the float samples of a mixed series; its histogram samples become gaps.
            load.histogram_series.append(labels)
            values = _HISTOGRAM_RE.sub(lambda m: f"_x{int(m[1]) + 1}" if m[1] else "_", values)
        points = [(i * interval_ms, v) for i, v in enumerate(expand_values(values)) if v is not None]
        load.series.append((labels, points))
        if words[0] == "load_with_nhcb" and labels.name.endswith("_bucket"):
            # The NHCB conversion adds a histogram series named without "_bucket".
            load.histogram_series.append(labels.without("le").with_values(__name__=labels.name[: -len("_bucket")]))
    return load


_HISTOGRAM_RE = re.compile(r"\{\{.*?\}\}(?:[+-]\{\{.*?\}\})?(?:x([0-9]+))?")
_EVAL_INSTANT_RE = re.compile(r"^(eval\w*) instant at (\S+) (.+)$")
_EVAL_RANGE_RE = re.compile(r"^(eval\w*) range from (\S+) to (\S+) step (\S+) (.+)$")


def _parse_eval(line_no: int, line: str, body: list[tuple[int, str]]) -> Eval:
    instant = _EVAL_INSTANT_RE.match(line)
    if instant:
        command = instant[1]
        case = Eval(line_no, instant[3], instant_ms=parse_time_ms(instant[2]))
    else:
        ranged = _EVAL_RANGE_RE.match(line)
        if ranged is None:
            raise ValueError(f"line {line_no}: bad eval {line!r}")
        command = ranged[1]
        case = Eval(
            line_no,
            ranged[5],
            range_ms=(parse_time_ms(ranged[2]), parse_time_ms(ranged[3]), parse_time_ms(ranged[4])),
        )
    case.expect_fail = command == "eval_fail"
    case.ordered = command == "eval_ordered"
    for _, text in body:
        if text.startswith("expect "):
            _parse_expect(case, text[len("expect ") :].strip())
            continue
        if "{{" in text:
            case.histogram = True
            continue
        try:
            case.scalar = _number(text)
            continue
        except ValueError:
            pass
        labels, values = split_series(text)
        case.expected.append((labels, expand_values(values)))
    return case


def _parse_expect(case: Eval, text: str) -> None:
    kind, _, rest = text.partition(" ")
    if kind == "fail":
        case.expect_fail = True
        match_type, _, message = rest.partition(":")
        message = message.strip()
        if match_type.strip() == "msg":
            case.fail_message = message.strip('"') if message.startswith('"') else message
        elif match_type.strip() == "regex":
            case.fail_regex = message.strip('"') if message.startswith('"') else message
    elif kind == "ordered":
        case.ordered = True
    elif kind == "string":
        case.expected_string = Lexer(rest.strip()).tokens()[0].text
    elif kind == "range":
        match = re.match(r"vector from (\S+) to (\S+) step (\S+)", rest)
        assert match is not None, text
        case.range_vector = (parse_time_ms(match[1]), parse_time_ms(match[2]), parse_time_ms(match[3]))
    # warn, info, no_warn, no_info: annotations are not produced by this engine; results still checked.


# -- running ---------------------------------------------------------------------------


def _values_equal(expected: float, got: float) -> bool:
    if is_stale_nan(expected) or is_stale_nan(got):
        return is_stale_nan(expected) and is_stale_nan(got)
    return almost_equal(expected, got, EPSILON)


def _selectors(node: Expr) -> Iterator[VectorSelector]:
    if isinstance(node, VectorSelector):
        yield node
        return
    if isinstance(node, MatrixSelector):
        yield node.selector
        return
    for value in vars(node).values():
        children = value if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, Expr):
                yield from _selectors(child)


def touches_histograms(expr: str, histogram_series: list[Labels]) -> bool:
    try:
        node = parse(expr)
    except PromQLError as exc:
        return "native histogram" in str(exc)
    return any(
        all(m.matches(labels.get(m.name)) for m in selector.matchers)
        for selector in _selectors(node)
        for labels in histogram_series
    )


def check_case(engine: Engine, store: SeriesStore, case: Eval) -> str | None:
    """None if the case passes, else what went wrong."""
    try:
        if case.instant_ms is not None:
            result = engine.instant(case.expr, store, case.instant_ms)
        else:
            assert case.range_ms is not None
            result = engine.range(case.expr, store, *case.range_ms)
    except PromQLError as exc:
        if not case.expect_fail:
            return f"unexpected error: {exc}"
        message = getattr(exc, "message", str(exc))
        if case.fail_message is not None and case.fail_message not in (message, str(exc)):
            return f"error {message!r}, expected {case.fail_message!r}"
        if case.fail_regex is not None and not re.search(case.fail_regex, str(exc)):
            return f"error {str(exc)!r} does not match {case.fail_regex!r}"
        return None
    if case.expect_fail:
        return f"expected an error, got {result}"
    if case.expected_string is not None:
        if not isinstance(result, StringResult) or result.value != case.expected_string:
            return f"expected string {case.expected_string!r}, got {result}"
        return None
    if isinstance(result, ScalarResult):
        if case.scalar is None or case.expected:
            return f"got scalar {result.value}, expected {case.expected or 'nothing'}"
        if not _values_equal(case.scalar, result.value):
            return f"expected scalar {case.scalar}, got {result.value}"
        return None
    if isinstance(result, VectorResult):
        return _check_vector(case, result)
    if isinstance(result, MatrixResult):
        return _check_matrix(case, result)
    return f"unexpected result {result}"


def _check_vector(case: Eval, result: VectorResult) -> str | None:
    if case.scalar is not None:
        return f"expected scalar {case.scalar}, got vector {result.samples}"
    expected = {labels: (pos, values) for pos, (labels, values) in enumerate(case.expected)}
    if len(result.samples) != len(case.expected):
        return f"expected {len(case.expected)} samples, got {len(result.samples)}: {result.samples}"
    for pos, (labels, value) in enumerate(result.samples):
        if labels not in expected:
            return f"unexpected metric {labels} in result"
        want_pos, values = expected[labels]
        if case.ordered and want_pos != pos:
            return f"expected {labels} at position {want_pos}, got {pos}"
        if values[0] is None or not _values_equal(values[0], value):
            return f"{labels}: expected {values[0]}, got {value}"
    return None


def _check_matrix(case: Eval, result: MatrixResult) -> str | None:
    if case.range_ms is not None:
        start, _, step = case.range_ms
    elif case.range_vector is not None:
        start, _, step = case.range_vector
    else:
        return f"got a range vector but no 'expect range vector': {result.series}"
    expected: dict[Labels, list[tuple[int, float]]] = {}
    for labels, values in case.expected:
        points = [(start + i * step, v) for i, v in enumerate(values) if v is not None]
        if points:
            expected[labels] = points
    got = dict(result.series)
    if set(got) != set(expected):
        missing = set(expected) - set(got)
        extra = set(got) - set(expected)
        return f"series differ: missing {sorted(map(str, missing))}, unexpected {sorted(map(str, extra))}"
    for labels, points in expected.items():
        actual = got[labels]
        if len(actual) != len(points) or any(
            t1 != t2 or not _values_equal(v1, v2) for (t1, v1), (t2, v2) in zip(points, actual)
        ):
            return f"{labels}: expected {points}, got {actual}"
    return None


@dataclass
class FileReport:
    name: str
    passed: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0
    histogram: int = 0
    unexpected_passes: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.passed + len(self.failed) + self.skipped


def run_file(path: Path, engine: Engine | None = None) -> FileReport:
    """Run every case of one script; skip-listed cases are run too, to spot stale entries."""
    engine = engine or Engine(lookback_s=300)
    report = FileReport(path.name)
    skips = SKIPPED_CASES.get(path.name, {})
    store = SeriesStore(retention_s=None)
    histogram_series: list[Labels] = []
    for _, command in parse_script(path.read_text()):
        if command is None:
            store = SeriesStore(retention_s=None)
            histogram_series = []
        elif isinstance(command, Load):
            merged: dict[Labels, dict[int, float]] = {}
            for labels, points in command.series:
                # A series listed twice in one load: later values win, as in Prometheus' test storage.
                merged.setdefault(labels, {}).update(points)
            for labels, by_time in merged.items():
                for t_ms in sorted(by_time):
                    store.append(labels, t_ms, by_time[t_ms])
            histogram_series.extend(command.histogram_series)
        elif command.histogram:
            report.histogram += 1
        else:
            problem = check_case(engine, store, command)
            if problem is not None and touches_histograms(command.expr, histogram_series):
                # Prometheus saw native-histogram samples this engine never loads.
                report.histogram += 1
            elif command.line in skips:
                report.skipped += 1
                if problem is None:
                    report.unexpected_passes.append(command.line)
            elif problem is None:
                report.passed += 1
            else:
                report.failed.append((command.line, problem))
    return report


def script_paths() -> list[Path]:
    return sorted(TESTDATA.glob("*.test"))


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    names = [a for a in argv if not a.startswith("-")]
    print(f"{'file':28} {'passed':>7} {'total':>6} {'skipped':>8} {'nh':>5}  rate")
    for path in script_paths():
        if names and path.name not in names:
            continue
        if path.name in SKIPPED_FILES:
            print(f"{path.name:28} {'-':>7} {'-':>6} {'-':>8} {'-':>5}  skipped: {SKIPPED_FILES[path.name]}")
            continue
        report = run_file(path)
        rate = f"{100 * report.passed / report.total:.1f}%" if report.total else "-"
        print(f"{path.name:28} {report.passed:>7} {report.total:>6} {report.skipped:>8} {report.histogram:>5}  {rate}")
        if verbose:
            for line, problem in report.failed:
                print(f"    line {line}: {problem[:300]}")
            for line in report.unexpected_passes:
                print(f"    line {line}: skip-listed but passes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
