"""Rule unit tests in promtool's format: ``healwatch test rules TEST.yaml...``.

A test file names rule files and lists test groups, each with input series
(in the expanding notation ``1+2x3 _ stale``), alerts expected to fire at given
times and PromQL expressions with their expected samples. Evaluation follows
``promtool test rules``: input samples are loaded up to the last evaluation
step, every rule group is evaluated at every ``evaluation_interval`` step from
0 to the largest ``eval_time``, an alert test at time t is checked against the
evaluation at the last step not after t, and only firing alerts count. The
report (``Unit Testing:``, ``FAILED:``, the exp/got diff, ``SUCCESS``) and the
exit code are promtool's.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rules.durations import format_duration, parse_duration
from rules.errors import SourceError, SourceIssue
from rules.golang.fmt import format_float, quote
from rules.group import RuleGroup
from rules.matchers import MatchOp
from rules.model import STALE_NAN, AlertState, Labels
from rules.promql import Engine, PromQLError, ScalarResult, VectorResult, parse
from rules.promql.ast import VectorSelector
from rules.promql.parser import parse_number
from rules.rulefile import GroupSpec, load_rule_files
from rules.store import SeriesStore
from rules.yamlfile import Path as YamlPath
from rules.yamlfile import Positions, load_yaml, read_source

DEFAULT_EVALUATION_INTERVAL_MS = 60_000
LOOKBACK_S = 300.0
# Limits far above real tests (a day at 1m is 1,440 steps), so that a typo like 0+1x100000000 or
# eval_time: 10000000000d is an error at once instead of minutes of work and gigabytes of samples.
MAX_SERIES_VALUES = 100_000
MAX_FILE_VALUES = 1_000_000
MAX_EVAL_STEPS = 100_000
# Each query (expression test, rule, template query) is bounded like promtool's test engine bounds it
# (50M samples), and by a time far above any real test's query: a subquery such as [1h:1ms] in a test
# is an error after 2 s instead of minutes.
QUERY_MAX_SAMPLES = 50_000_000
QUERY_TIMEOUT_S = 2.0

FILE_KEYS = ("rule_files", "evaluation_interval", "group_eval_order", "fuzzy_compare", "tests")
GROUP_KEYS = ("name", "interval", "input_series", "alert_rule_test", "promql_expr_test",
              "external_labels", "external_url")
SERIES_KEYS = ("series", "values")
ALERT_TEST_KEYS = ("eval_time", "alertname", "exp_alerts")
ALERT_KEYS = ("exp_labels", "exp_annotations")
EXPR_TEST_KEYS = ("expr", "eval_time", "exp_samples")
SAMPLE_KEYS = ("labels", "value")

# No hex: Prometheus reads "0x6" as 0 repeated six more times.
_NUMBER = r"(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[iI]nf|[nN]a[nN])"
_ITEM_RE = re.compile(rf"^(?P<start>[+-]?{_NUMBER}|stale)(?:(?P<step>[+-]{_NUMBER})?x(?P<times>[0-9]+))?$")
_GAP_RE = re.compile(r"^_(?:x(?P<times>[0-9]+))?$")


# -- the series notation ----------------------------------------------------------------


def expand_values(text: str, limit: int = MAX_SERIES_VALUES) -> list[float | None]:
    """Expand promtool's value notation (``1+2x3 _x2 stale 5x2``); None is a missing sample.

    ``a+bxn`` is a and n further values each b more; ``axn`` is a, n+1 times;
    ``_xn`` is n missing samples. Raises ValueError naming the bad item, also
    the one that takes the series past ``limit`` values.
    """
    values: list[float | None] = []
    for item in text.split():
        gap = _GAP_RE.match(item)
        if gap:
            values.extend([None] * _room(item, len(values), _times(gap["times"], 1), limit))
            continue
        match = _ITEM_RE.match(item)
        if match is None or (match["start"] == "stale" and match["times"] is not None):
            raise ValueError(
                f"invalid value {item!r}: expected a number, 'a+bxn', 'a-bxn', 'axn', '_', '_xn' or 'stale'"
            )
        repeats = _room(item, len(values), 1 + _times(match["times"], 0), limit) - 1
        value = STALE_NAN if match["start"] == "stale" else _number(match["start"])
        values.append(value)
        step = _number(match["step"]) if match["step"] else 0.0
        for _ in range(repeats):
            # Repeated addition, as Prometheus' loader does (not start + i*step).
            value += step
            values.append(value)
    return values


def _times(digits: str | None, default: int) -> int:
    if digits is None:
        return default
    # Past any limit without converting: int() refuses thousands of digits with an unrelated message.
    return int(digits) if len(digits.lstrip("0")) <= 18 else 10**18


def _room(item: str, have: int, adding: int, limit: int) -> int:
    """``adding``, if ``have + adding`` values stay within ``limit``."""
    if have + adding > limit:
        raise ValueError(f"{item!r} takes the series past the limit of {limit} values")
    return adding


def parse_series(text: str) -> Labels:
    """Labels of a series written ``name{label="value", ...}``; raises ValueError."""
    return Labels(_metric_pairs(text))


def _metric_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """The label pairs of ``name{...}``, sorted, empty values kept (as Go's ParseMetric keeps them)."""
    stripped = text.strip()
    if stripped in ("", "{}"):
        return ()
    try:
        node = parse(stripped)
    except PromQLError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(node, VectorSelector) or node.offset_ms or node.at is not None:
        raise ValueError(f"{text!r} is not a series: expected name{{label=\"value\", ...}}")
    pairs: dict[str, str] = {}
    for matcher in node.matchers:
        if matcher.op is not MatchOp.EQ:
            raise ValueError(f"{text!r} is not a series: labels must be set with '=', not {matcher.op.value!r}")
        if matcher.name in pairs:
            raise ValueError(f"{text!r} is not a series: label {matcher.name!r} is set twice")
        pairs[matcher.name] = matcher.value
    return tuple(sorted(pairs.items()))


def _number(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * parse_number(text.lstrip("+-"))


# -- the test file ----------------------------------------------------------------------


@dataclass(frozen=True)
class InputSeries:
    labels: Labels
    values: list[float | None]


@dataclass(frozen=True)
class ExpectedAlert:
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class AlertTest:
    eval_ms: int
    alertname: str
    alerts: tuple[ExpectedAlert, ...]


@dataclass(frozen=True)
class ExpectedSample:
    labels: str  # parsed when the test runs: a bad one fails that test, as in promtool
    value: float


@dataclass(frozen=True)
class ExprTest:
    expr: str
    eval_ms: int
    samples: tuple[ExpectedSample, ...]


@dataclass(frozen=True)
class TestGroup:
    name: str
    interval_ms: int
    series: tuple[InputSeries, ...]
    alert_tests: tuple[AlertTest, ...]
    expr_tests: tuple[ExprTest, ...]
    external_labels: dict[str, str]
    external_url: str


@dataclass(frozen=True)
class TestFile:
    path: str
    rule_files: tuple[str, ...]  # patterns, made relative to the test file's directory
    evaluation_interval_ms: int
    group_eval_order: tuple[str, ...]
    fuzzy_compare: bool
    tests: tuple[TestGroup, ...]


def load_test_file(path: str) -> TestFile:
    """Read and validate a test file; raise SourceError listing every problem with its position."""
    return parse_test_file(read_source(path, "test file"), path)


def parse_test_file(text: str, path: str) -> TestFile:
    data, positions = load_yaml(text, path)
    reader = _Reader(positions)
    test_file = reader.test_file(data, path)
    if reader.issues:
        raise SourceError(reader.issues)
    return test_file


class _Reader:
    """Builds the test file's dataclasses, collecting every problem instead of stopping at the first."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.issues: list[SourceIssue] = []
        self.values_read = 0

    def fail(self, at: YamlPath, message: str, *, at_key: bool = False) -> None:
        self.issues.append(self.positions.issue(at, message, at_key=at_key))

    def mapping(self, value: Any, at: YamlPath, keys: Sequence[str], what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(at, f"{what} must be a mapping")
            return {}
        for key in value:
            if key not in keys:
                self.fail(at + (key,), f"unknown field {key!r} in {what} (expected one of: {', '.join(keys)})",
                          at_key=True)
        return value

    def items(self, value: Any, at: YamlPath, what: str) -> list[tuple[YamlPath, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(at, f"{what} must be a list")
            return []
        return [(at + (index,), item) for index, item in enumerate(value)]

    def string(self, value: Any, at: YamlPath, what: str) -> str:
        """A string field as promtool reads it: the scalar's source text (1.10 stays "1.10"), "" for null."""
        text = self.positions.text(at, value)
        if text is None:
            self.fail(at, f"{what} must be a string")
            return ""
        return text

    def strings(self, value: Any, at: YamlPath, what: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(at, f"{what} must be a mapping of names to strings")
            return {}
        return {str(key): self.string(item, at + (key,), f"{what} {key!r}") for key, item in value.items()}

    def duration_ms(self, value: Any, at: YamlPath, what: str) -> int:
        text = self.string(value, at, what).strip()
        if text in ("", "0"):
            return 0
        try:
            return round(parse_duration(text) * 1000)
        except ValueError as exc:
            self.fail(at, f"{what}: {exc}")
            return 0

    def test_file(self, data: Any, path: str) -> TestFile:
        top = self.mapping(data, (), FILE_KEYS, "the test file")
        base = os.path.dirname(path)
        rule_files = tuple(
            pattern if os.path.isabs(pattern) else os.path.normpath(os.path.join(base, pattern))
            for at, item in self.items(top.get("rule_files"), ("rule_files",), "rule_files")
            if (pattern := self.string(item, at, "a rule file"))
        )
        interval_ms = self.duration_ms(top.get("evaluation_interval"), ("evaluation_interval",),
                                       "evaluation_interval") or DEFAULT_EVALUATION_INTERVAL_MS
        order = tuple(self.string(item, at, "a group name")
                      for at, item in self.items(top.get("group_eval_order"), ("group_eval_order",),
                                                 "group_eval_order"))
        fuzzy = top.get("fuzzy_compare", False)
        if not isinstance(fuzzy, bool):
            self.fail(("fuzzy_compare",), "fuzzy_compare must be true or false")
            fuzzy = False
        tests = tuple(self.test_group(item, at, interval_ms)
                      for at, item in self.items(top.get("tests"), ("tests",), "tests"))
        return TestFile(path, rule_files, interval_ms, order, fuzzy, tests)

    def test_group(self, data: Any, at: YamlPath, evaluation_interval_ms: int) -> TestGroup:
        group = self.mapping(data, at, GROUP_KEYS, "a test group")
        series = tuple(self.input_series(item, item_at)
                       for item_at, item in self.items(group.get("input_series"), at + ("input_series",),
                                                       "input_series"))
        alert_tests = tuple(self.alert_test(item, item_at, evaluation_interval_ms)
                            for item_at, item in self.items(group.get("alert_rule_test"),
                                                            at + ("alert_rule_test",), "alert_rule_test"))
        expr_tests = tuple(self.expr_test(item, item_at, evaluation_interval_ms)
                           for item_at, item in self.items(group.get("promql_expr_test"),
                                                           at + ("promql_expr_test",), "promql_expr_test"))
        return TestGroup(
            name=self.string(group.get("name"), at + ("name",), "name"),
            interval_ms=self.duration_ms(group.get("interval"), at + ("interval",), "interval")
            or evaluation_interval_ms,
            series=series,
            alert_tests=alert_tests,
            expr_tests=expr_tests,
            external_labels=self.strings(group.get("external_labels"), at + ("external_labels",),
                                         "external_labels"),
            external_url=self.string(group.get("external_url"), at + ("external_url",), "external_url"),
        )

    def input_series(self, data: Any, at: YamlPath) -> InputSeries:
        item = self.mapping(data, at, SERIES_KEYS, "an input series")
        labels = Labels()
        values: list[float | None] = []
        try:
            labels = parse_series(self.string(item.get("series"), at + ("series",), "series"))
        except ValueError as exc:
            self.fail(at + ("series",), f"bad series: {exc}")
        if self.values_read > MAX_FILE_VALUES:
            return InputSeries(labels, values)  # reported once, at the series that crossed the limit
        try:
            values = expand_values(self.string(item.get("values"), at + ("values",), "values"))
        except ValueError as exc:
            self.fail(at + ("values",), str(exc))
        self.values_read += len(values)
        if self.values_read > MAX_FILE_VALUES:
            self.fail(at + ("values",), f"the input series take the file past the limit of {MAX_FILE_VALUES} values")
        return InputSeries(labels, values)

    def eval_time_ms(self, value: Any, at: YamlPath, step_ms: int) -> int:
        """An eval_time within MAX_EVAL_STEPS evaluation steps (every step up to it is evaluated)."""
        eval_ms = self.duration_ms(value, at, "eval_time")
        if eval_ms // step_ms > MAX_EVAL_STEPS:
            self.fail(at, f"eval_time needs more than {MAX_EVAL_STEPS} evaluation steps of "
                          f"{format_duration(step_ms / 1000)}; use a longer evaluation_interval")
            return 0
        return eval_ms

    def alert_test(self, data: Any, at: YamlPath, step_ms: int) -> AlertTest:
        item = self.mapping(data, at, ALERT_TEST_KEYS, "an alert_rule_test item")
        alerts = []
        for alert_at, alert in self.items(item.get("exp_alerts"), at + ("exp_alerts",), "exp_alerts"):
            fields = self.mapping(alert, alert_at, ALERT_KEYS, "an expected alert")
            alerts.append(ExpectedAlert(
                self.strings(fields.get("exp_labels"), alert_at + ("exp_labels",), "exp_labels"),
                self.strings(fields.get("exp_annotations"), alert_at + ("exp_annotations",), "exp_annotations"),
            ))
        return AlertTest(
            self.eval_time_ms(item.get("eval_time"), at + ("eval_time",), step_ms),
            self.string(item.get("alertname"), at + ("alertname",), "alertname"),
            tuple(alerts),
        )

    def expr_test(self, data: Any, at: YamlPath, step_ms: int) -> ExprTest:
        item = self.mapping(data, at, EXPR_TEST_KEYS, "a promql_expr_test item")
        samples = []
        for sample_at, sample in self.items(item.get("exp_samples"), at + ("exp_samples",), "exp_samples"):
            fields = self.mapping(sample, sample_at, SAMPLE_KEYS, "an expected sample")
            value = fields.get("value")
            if value is None:  # absent or null: 0, as in Go
                value = 0.0
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(sample_at + ("value",), "value must be a number (.nan, .inf and -.inf included)")
                value = 0.0
            samples.append(ExpectedSample(self.string(fields.get("labels"), sample_at + ("labels",), "labels"),
                                          float(value)))
        return ExprTest(
            self.string(item.get("expr"), at + ("expr",), "expr"),
            self.eval_time_ms(item.get("eval_time"), at + ("eval_time",), step_ms),
            tuple(samples),
        )


# -- running ----------------------------------------------------------------------------


def run_test_files(paths: Sequence[str], out: TextIO) -> int:
    """Run every test file, printing promtool's report to ``out``; 0 if all pass, else 1."""
    failed = False
    for path in paths:
        out.write(f"Unit Testing:  {path}\n")
        errors = run_test_file(path, out)
        if errors:
            out.write("  FAILED:\n")
            out.writelines(f"{error}\n\n" for error in errors)
            failed = True
        else:
            out.write("  SUCCESS\n")
        out.write("\n")
    return 1 if failed else 0


def run_test_file(path: str, out: TextIO) -> list[str]:
    """The failures of one test file (empty if it passes); glob warnings go to ``out`` at once."""
    try:
        test_file = load_test_file(path)
    except SourceError as exc:
        return [str(issue) for issue in exc.issues]
    seen: set[str] = set()
    for name in test_file.group_eval_order:
        if name in seen:
            return [f"group name repeated in evaluation order: {name}"]
        seen.add(name)
    rule_files = _expand_rule_files(test_file.rule_files, out)
    if not test_file.tests:
        return []
    try:
        specs = load_rule_files(rule_files)
    except SourceError as exc:
        return [str(issue) for issue in exc.issues]
    specs = _ordered(specs, test_file.group_eval_order)
    errors: list[str] = []
    for group in test_file.tests:
        errors.extend(_GroupRun(test_file, group, specs).run())
    return errors


def _expand_rule_files(patterns: Sequence[str], out: TextIO) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern))
        if not matched:
            out.write(f"  WARNING: no file match pattern {pattern}\n")
        files.extend(file for file in matched if file not in files)
    return files


def _ordered(specs: list[GroupSpec], order: Sequence[str]) -> list[GroupSpec]:
    """Groups in ``group_eval_order``; unlisted groups rank with the first listed one, as in promtool."""
    rank = {name: index for index, name in enumerate(order)}
    return sorted(specs, key=lambda spec: rank.get(spec.name, 0))


class _GroupRun:
    """One test group: its own store and rule groups, stepped from time 0 like promtool."""

    def __init__(self, test_file: TestFile, group: TestGroup, specs: list[GroupSpec]) -> None:
        self.test = group
        self.step_ms = test_file.evaluation_interval_ms
        self.fuzzy = test_file.fuzzy_compare
        self.engine = Engine(lookback_s=LOOKBACK_S, subquery_step_s=self.step_ms / 1000,
                             max_samples=QUERY_MAX_SAMPLES, timeout_s=QUERY_TIMEOUT_S)
        self.store = SeriesStore(retention_s=None)  # promtool's test storage keeps everything
        self.groups = [
            RuleGroup(spec, spec.interval_s or group.interval_ms / 1000, self.engine,
                      dict(group.external_labels), group.external_url)
            for spec in specs
        ]

    def run(self) -> list[str]:
        for case in self.test.alert_tests:
            if not case.alertname:
                where = f" (in TestGroup {self.test.name})" if self.test.name else ""
                at = format_duration(case.eval_ms / 1000)
                return [f"an item under alert_rule_test misses required attribute alertname at eval_time {at}{where}"]
        end_ms = max([case.eval_ms for case in self.test.alert_tests]
                     + [case.eval_ms for case in self.test.expr_tests] + [0])
        last_step_ms = end_ms - end_ms % self.step_ms
        self._load(last_step_ms)

        errors: list[str] = []
        pending = sorted({case.eval_ms for case in self.test.alert_tests})
        for step_ms in range(0, last_step_ms + 1, self.step_ms):
            eval_errors = self._evaluate(step_ms)
            if eval_errors:
                # promtool stops the test group here; the expression tests do not run.
                return errors + eval_errors
            while pending and step_ms <= pending[0] < step_ms + self.step_ms:
                at_ms = pending.pop(0)
                errors.extend(self._check_alerts(at_ms))
        for expr_case in self.test.expr_tests:
            error = self._check_expr(expr_case)
            if error:
                errors.append(error)
        return errors

    def _load(self, until_ms: int) -> None:
        """Input samples up to the last evaluation step: promtool loads no further."""
        for series in self.test.series:
            for index, value in enumerate(series.values):
                t_ms = index * self.test.interval_ms
                if t_ms > until_ms:
                    break
                if value is not None:
                    self.store.append(series.labels, t_ms, value)

    def _evaluate(self, step_ms: int) -> list[str]:
        errors = []
        for group in self.groups:
            group.evaluate(self.store, step_ms / 1000)
            for rule in group.rules:
                if rule.health == "err":
                    errors.append(f"    rule: {rule.spec.name}, time: {go_duration(step_ms)}, err: {rule.last_error}")
        return errors

    def _check_alerts(self, at_ms: int) -> list[str]:
        cases = [case for case in self.test.alert_tests if case.eval_ms == at_ms]
        errors = []
        for case in cases:
            got = sorted(
                (_pairs(alert.labels), _pairs(alert.annotations))
                for group in self.groups
                for rule in group.alerting_rules() if rule.name == case.alertname
                for alert in rule.active.values() if alert.state is AlertState.FIRING
            )
            expected = sorted(
                (_pairs({**alert.labels, "alertname": case.alertname}), _pairs(alert.annotations))
                for alert in case.alerts
            )
            if got != expected:
                name = f"    name: {self.test.name},\n" if self.test.name else ""
                errors.append(
                    f"{name}    alertname: {case.alertname}, time: {format_duration(case.eval_ms / 1000)}, \n"
                    f"        exp:{_indent(_alerts_text(expected), ' ' * 12)}, \n"
                    f"        got:{_indent(_alerts_text(got), ' ' * 12)}"
                )
        return errors

    def _check_expr(self, case: ExprTest) -> str | None:
        head = f"    expr: {quote(case.expr)}, time: {format_duration(case.eval_ms / 1000)}"
        try:
            result = self.engine.instant(case.expr, self.store, case.eval_ms)
        except PromQLError as exc:
            return f"{head}, err: {exc}"
        if isinstance(result, VectorResult):
            got = sorted((tuple(labels), value) for labels, value in result.samples)
        elif isinstance(result, ScalarResult):
            got = [((), result.value)]
        else:
            return f"{head}, err: rule result is not a vector or scalar"
        expected = []
        for sample in case.samples:
            try:
                expected.append((_metric_pairs(sample.labels), sample.value))
            except ValueError as exc:
                return f"{head}, err: labels {quote(sample.labels)}: {exc}"
        expected.sort(key=lambda item: item[0])
        if len(got) == len(expected) and all(
            got_labels == want_labels and self._same(got_value, want_value)
            for (got_labels, got_value), (want_labels, want_value) in zip(got, expected)
        ):
            return None
        return f"{head},\n        exp: {_samples_text(expected)}\n        got: {_samples_text(got)}"

    def _same(self, got: float, want: float) -> bool:
        # promtool compares exactly (so NaN never matches); fuzzy_compare forgives the mantissa's last bit.
        if got == want:
            return True
        return self.fuzzy and math.isfinite(want) and math.nextafter(want, got) == got


# -- promtool's text --------------------------------------------------------------------

_Pairs = tuple[tuple[str, str], ...]


def _pairs(mapping: dict[str, str] | Labels) -> _Pairs:
    items = mapping if isinstance(mapping, Labels) else sorted(mapping.items())
    return tuple(items)


def go_labels(pairs: _Pairs) -> str:
    """Labels as Go's ``labels.Labels.String()`` prints them: ``{a="1", b="2"}``."""
    return "{" + ", ".join(f"{name}={quote(value)}" for name, value in pairs) + "}"


def _alerts_text(alerts: list[tuple[_Pairs, _Pairs]]) -> str:
    if not alerts:
        return "[]"
    parts = [
        f"{index}:" + _indent(f"\nLabels:{go_labels(labels)}\nAnnotations:{go_labels(annotations)}", "  ")
        for index, (labels, annotations) in enumerate(alerts)
    ]
    return "[\n" + ",\n".join(parts) + "\n]"


def _samples_text(samples: list[tuple[_Pairs, float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(f"{go_labels(labels)} {format_float(value, 'E', -1)}" for labels, value in samples)


def _indent(text: str, indent: str) -> str:
    """Prefix every line but the first with ``indent`` (promtool's indentLines)."""
    return f"\n{indent}".join(text.split("\n"))


def go_duration(ms: int) -> str:
    """A whole number of milliseconds as Go's ``time.Duration.String()`` prints it (``4m0s``, ``1.5s``)."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    text = f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text
