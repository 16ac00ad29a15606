"""Prometheus rule files: loading, validation with every error positioned, and the simple form.

A file holds ``groups`` of ``rules``, each an alerting rule (``alert``) or a
recording rule (``record``) with a PromQL ``expr``, exactly as Prometheus reads
them. Rules may instead use the simple form older in-house tools wrote
(``metric``, ``aggregate``, ``window``, ``op``, ``threshold``), which is
compiled to the equivalent PromQL here so everything downstream sees PromQL.
"""

from __future__ import annotations

import difflib
import glob
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rules.durations import format_duration, parse_duration
from rules.errors import SourceError, SourceIssue
from rules.model import LABEL_NAME_RE, METRIC_NAME_RE, NAME_LABEL
from rules.promql.ast import MATRIX, SCALAR, VECTOR
from rules.promql.errors import PromQLSyntaxError
from rules.promql import parse as parse_expr
from rules.template import Template, TemplateError
from rules.yamlfile import Path as YamlPath
from rules.yamlfile import Positions, load_yaml, read_source

GROUP_KEYS = ("name", "interval", "query_offset", "limit", "labels", "rules")
RULE_KEYS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")
SIMPLE_KEYS = ("metric", "aggregate", "window", "op", "threshold")
SIMPLE_AGGREGATES = {
    "avg": "avg_over_time({m}[{w}])",
    "min": "min_over_time({m}[{w}])",
    "max": "max_over_time({m}[{w}])",
    "sum": "sum_over_time({m}[{w}])",
    "count": "count_over_time({m}[{w}])",
    "last": "last_over_time({m}[{w}])",
    "rate": "rate({m}[{w}])",
    "increase": "increase({m}[{w}])",
    "p50": "quantile_over_time(0.5, {m}[{w}])",
    "p90": "quantile_over_time(0.9, {m}[{w}])",
    "p95": "quantile_over_time(0.95, {m}[{w}])",
    "p99": "quantile_over_time(0.99, {m}[{w}])",
}
SIMPLE_OPS = (">", ">=", "<", "<=", "==", "!=")
_RULE_FIELDS = f"{', '.join(RULE_KEYS)}, or the simple form's {', '.join(SIMPLE_KEYS)}"


@dataclass(frozen=True)
class RuleSpec:
    """One validated rule; ``expr`` is PromQL (compiled already when written in the simple form)."""

    kind: Literal["alert", "record"]
    name: str
    expr: str
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    file: str = ""
    line: int = 0
    simple: bool = False


@dataclass(frozen=True)
class GroupSpec:
    name: str
    file: str
    rules: tuple[RuleSpec, ...]
    interval_s: float | None = None  # None: the agent's default evaluation interval
    query_offset_s: float = 0.0
    limit: int = 0
    labels: dict[str, str] = field(default_factory=dict)


def duplicate_rules(groups: Sequence[GroupSpec]) -> str | None:
    """promtool's duplicate-rules lint of one file's groups: its message, or None when no two rules clash.

    Two rules clash when they have the same name and the same labels, in any groups; each clash is
    listed once, in promtool's order (by name, then labels), whatever their expressions.
    """
    keys = sorted((rule.name, tuple(sorted(rule.labels.items()))) for group in groups for rule in group.rules)
    clashes: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for previous, current in zip(keys, keys[1:]):
        if previous == current and (not clashes or clashes[-1] != current):
            clashes.append(current)
    if not clashes:
        return None
    lines = [f"lint error {len(clashes)} duplicate rule(s) found."]
    for name, labels in clashes:
        lines += [f"Metric: {name}", "Label(s):", *(f"\t{label}: {value}" for label, value in labels)]
    lines.append("Might cause inconsistency while recording expressions")
    return "\n".join(lines)


def expand_rule_files(patterns: Sequence[str], base_dir: str | Path = ".") -> list[str]:
    """The files the globs name, sorted and de-duplicated; a pattern matching nothing is an error."""
    files: list[str] = []
    issues = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(Path(base_dir) / pattern)
        matched = sorted(glob.glob(full))
        if not matched and not glob.has_magic(pattern):
            issues.append(SourceIssue(full, 0, 0, "rule file does not exist"))
        files.extend(m for m in matched if m not in files)
    if issues:
        raise SourceError(issues)
    return files


def load_rule_files(files: Sequence[str], *, had_groups: Collection[str] = ()) -> list[GroupSpec]:
    """Every group of every file; raise SourceError listing every problem in all of them.

    A file of ``had_groups`` (those that held groups at the last load) that is now empty is a
    problem too: a truncated write must not drop its rules and resolve their alerts in silence.
    ``groups: []`` says "no rules" on purpose.
    """
    groups: list[GroupSpec] = []
    issues: list[SourceIssue] = []
    for file in files:
        try:
            groups.extend(load_rule_file(file, allow_empty=file not in had_groups))
        except SourceError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SourceError(issues)
    return groups


def load_rule_file(file: str, *, allow_empty: bool = True) -> list[GroupSpec]:
    return parse_rules(read_source(file, "rule file"), file, allow_empty=allow_empty)


def parse_rules(text: str, file: str, *, allow_empty: bool = True) -> list[GroupSpec]:
    """The groups of a rule file's text; an empty one (no YAML document) has none, or is refused."""
    data, positions = load_yaml(text, file)
    if data is None and not allow_empty:
        raise SourceError([SourceIssue(
            file, 0, 0, "the file is empty but held rule groups at the last load (a truncated write?); "
                        "its rules are kept: write 'groups: []' to remove them",
        )])
    return _Validator(positions).validate(data)


class _Validator:
    def __init__(self, positions: Positions) -> None:
        self.pos = positions
        self.file = positions.file
        self.issues: list[SourceIssue] = []

    def error(self, path: YamlPath, message: str, *, at_key: bool = False) -> None:
        self.issues.append(self.pos.issue(path, message, at_key=at_key))

    def validate(self, data: Any) -> list[GroupSpec]:
        groups: list[GroupSpec] = []
        if data is None:
            return groups
        if not isinstance(data, dict):
            self.error((), "expected a mapping with a 'groups' list")
        else:
            self.unknown_keys(data, (), ("groups",), "rule file")
            raw_groups = data.get("groups") or []
            if not isinstance(raw_groups, list):
                self.error(("groups",), "'groups' must be a list")
                raw_groups = []
            seen: set[str] = set()
            for index, raw in enumerate(raw_groups):
                group = self.group(raw, ("groups", index), seen)
                if group is not None:
                    groups.append(group)
        if self.issues:
            raise SourceError(sorted(self.issues, key=lambda i: (i.line, i.column)))
        return groups

    def group(self, raw: Any, path: YamlPath, seen: set[str]) -> GroupSpec | None:
        if not isinstance(raw, dict):
            self.error(path, "a group must be a mapping with 'name' and 'rules'")
            return None
        self.unknown_keys(raw, path, GROUP_KEYS, "rule group")
        name = self.string(raw, path, "name")
        if not name:
            self.error(path, "Groupname must not be empty")
            name = ""
        elif name in seen:
            self.error(path, f'groupname: "{name}" is repeated in the same file')
        seen.add(name)
        interval = self.duration(raw, path, "interval", positive=True)
        query_offset = self.duration(raw, path, "query_offset") or 0.0
        limit = raw.get("limit") or 0
        if isinstance(limit, float) and limit.is_integer():  # Go's YAML reads 1e1 into an int field
            limit = int(limit)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            shown = self.pos.text(path + ("limit",), limit)
            got = "a mapping or a list" if shown is None else repr(shown)
            self.error(path + ("limit",), f"limit must be a non-negative integer, got {got}")
            limit = 0
        labels = self.string_map(raw, path, "labels", names="label")
        raw_rules = raw.get("rules") or []
        if not isinstance(raw_rules, list):
            self.error(path + ("rules",), "'rules' must be a list")
            raw_rules = []
        rules = []
        for index, raw_rule in enumerate(raw_rules):
            rule = self.rule(raw_rule, path + ("rules", index), name, index + 1)
            if rule is not None:
                rules.append(rule)
        return GroupSpec(name, self.file, tuple(rules), interval, query_offset, limit, labels)

    def rule(self, raw: Any, path: YamlPath, group: str, number: int) -> RuleSpec | None:
        if not isinstance(raw, dict):
            self.error(path, f'group "{group}", rule {number}: a rule must be a mapping')
            return None
        record, alert = self.string(raw, path, "record"), self.string(raw, path, "alert")
        rule_name = alert or record
        where = f'group "{group}", rule {number}, "{rule_name}"'
        before = len(self.issues)

        def fail(at: YamlPath, message: str) -> None:
            self.error(path + at, f"{where}: {message}")

        for key in raw:
            if key not in RULE_KEYS + SIMPLE_KEYS:
                fail((key,), f"unknown field {key!r} in rule{_did_you_mean(key, RULE_KEYS + SIMPLE_KEYS, _RULE_FIELDS)}")
        if record and alert:
            fail(("record",), "only one of 'record' and 'alert' must be set")
        if not record and not alert:
            fail((), "one of 'record' or 'alert' must be set")

        simple = any(key in raw for key in SIMPLE_KEYS)
        expr_text = self.string(raw, path, "expr")
        expr: str | None = None
        if simple:
            if "expr" in raw:
                fail(("expr",), "a rule has either 'expr' or the simple form (metric, aggregate, window, op, threshold)")
            expr = self.compile_simple(raw, path, fail)
        elif not expr_text.strip():
            if not isinstance(raw.get("expr"), (dict, list)):  # those are reported as not a string already
                fail(("expr",), "field 'expr' must be set in rule")
        elif (error := self.check_expr(expr_text, path + ("expr",), where)) is not None:
            self.issues.append(error)
        else:
            expr = expr_text

        for_s = self.duration(raw, path, "for", where=where) or 0.0
        keep_firing_for_s = self.duration(raw, path, "keep_firing_for", where=where) or 0.0
        labels = self.string_map(raw, path, "labels", names="label", where=where)
        annotations = self.string_map(raw, path, "annotations", names="annotation", where=where)
        if record:
            for key, message in (
                ("annotations", "invalid field 'annotations' in recording rule"),
                ("for", "invalid field 'for' in recording rule"),
                ("keep_firing_for", "invalid field 'keep_firing_for' in recording rule"),
            ):
                if raw.get(key):
                    fail(("record",), message)
            if not METRIC_NAME_RE.match(record):
                fail(("record",), f"invalid recording rule name: {record}")
        if alert:
            for kind, values in (("label", labels), ("annotation", annotations)):
                for key, text in values.items():
                    try:
                        Template.parse(text, f"__alert_{alert}")
                    except TemplateError as exc:
                        fail((kind + "s", key), f'{kind} "{key}": {exc}')
        if len(self.issues) > before or expr is None:
            return None
        line = self.pos.values.get(path, (0, 0))[0]
        return RuleSpec(
            "alert" if alert else "record", rule_name, expr, for_s, keep_firing_for_s, labels, annotations,
            self.file, line, simple,
        )

    def check_expr(self, expr: str, path: YamlPath, where: str) -> SourceIssue | None:
        try:
            node = parse_expr(expr)
        except PromQLSyntaxError as exc:
            line, column = self.position_in_file(path, exc.line, exc.column)
            caret_line = expr.split("\n")[exc.line - 1]  # the error line counts "\n" as PromQL does
            message = (
                f"{where}: could not parse expression: {exc}\n"
                f"    {caret_line}\n    {' ' * (exc.column - 1)}^"
            )
            return SourceIssue(self.file, line, column, message)
        if node.type not in (VECTOR, SCALAR):
            line, column = self.pos.values.get(path, (0, 0))
            got = "range vector" if node.type == MATRIX else node.type
            return SourceIssue(
                self.file, line, column,
                f"{where}: expression must evaluate to an instant vector or scalar, got {got}: {expr}",
            )
        return None

    def position_in_file(self, path: YamlPath, expr_line: int, expr_column: int) -> tuple[int, int]:
        """Where a position inside an expression lies in the file (exact for plain, quoted and literal scalars)."""
        line, column = self.pos.values.get(path, (0, 0))
        style = self.pos.styles.get(path)
        if style in ("|", ">"):
            return line + expr_line, self.pos.block_columns.get(path, 1) + expr_column - 1
        if expr_line == 1:
            return line, column + expr_column - 1 + (1 if style in ("'", '"') else 0)
        return line + expr_line - 1, expr_column

    def compile_simple(self, raw: dict[str, Any], path: YamlPath, fail: Any) -> str | None:
        missing = [key for key in SIMPLE_KEYS if key not in raw]
        if missing:
            fail((), f"the simple form needs {', '.join(missing)}")
            return None
        metric, aggregate, op = (self.string(raw, path, key) for key in ("metric", "aggregate", "op"))
        threshold = raw["threshold"]
        ok = True
        if aggregate not in SIMPLE_AGGREGATES:
            fail(("aggregate",), f"unknown aggregate {aggregate!r}; expected one of: {', '.join(SIMPLE_AGGREGATES)}")
            ok = False
        if op not in SIMPLE_OPS:
            fail(("op",), f"unknown op {op!r}; expected one of: {' '.join(SIMPLE_OPS)}")
            ok = False
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            fail(("threshold",), f"threshold must be a number, got {threshold!r}")
            ok = False
        window = self.duration(raw, path, "window", positive=True)
        if window is None or not ok or not metric:
            if not metric:
                fail(("metric",), "metric must be a metric name or selector such as up{job=\"api\"}")
            return None
        expr = SIMPLE_AGGREGATES[aggregate].format(m=metric, w=format_duration(window))
        expr = f"{expr} {op} {threshold!r}"
        try:
            parse_expr(expr)
        except PromQLSyntaxError as exc:
            fail(("metric",), f"metric {metric!r} is not a valid selector: {exc}")
            return None
        return expr

    def duration(
        self, raw: dict[str, Any], path: YamlPath, key: str, *, positive: bool = False, where: str = ""
    ) -> float | None:
        if key not in raw or raw[key] is None:
            return None
        prefix = f"{where}: " if where else ""
        value = self.pos.text(path + (key,), raw[key])
        try:
            if value is None:
                raise ValueError("expected a duration such as 5m, got a mapping or a list")
            seconds = 0.0 if value == "0" else parse_duration(value)  # Prometheus' ParseDuration takes a bare 0
        except ValueError as exc:
            self.error(path + (key,), f"{prefix}{key}: {exc}")
            return None
        if positive and seconds <= 0:
            self.error(path + (key,), f"{prefix}{key}: must be greater than 0s")
            return None
        return seconds

    def string_map(
        self, raw: dict[str, Any], path: YamlPath, key: str, *, names: str, where: str = ""
    ) -> dict[str, str]:
        value = raw.get(key) or {}
        prefix = f"{where}: " if where else ""
        if not isinstance(value, dict):
            self.error(path + (key,), f"{prefix}{key} must be a mapping of names to strings")
            return {}
        result = {}
        for name, text in value.items():
            if not isinstance(name, str) or not LABEL_NAME_RE.match(name) or (names == "label" and name == NAME_LABEL):
                self.error(path + (key, name), f"{prefix}invalid {names} name: {name}", at_key=True)
                continue
            value_text = self.pos.text(path + (key, name), text)
            if value_text is None:
                self.error(path + (key, name), f"{prefix}{names} {name!r} must be a string")
                continue
            result[name] = value_text
        return result

    def string(self, raw: dict[str, Any], path: YamlPath, key: str) -> str:
        """A string field as Go reads it (the scalar's text; "" if absent or null); a mapping or list is an issue."""
        text = self.pos.text(path + (key,), raw.get(key))
        if text is None:
            self.error(path + (key,), f"{key!r} must be a string, not a mapping or a list")
            return ""
        return text

    def unknown_keys(self, raw: dict[str, Any], path: YamlPath, allowed: Sequence[str], what: str) -> None:
        for key in raw:
            if key not in allowed:
                self.error(path + (key,), f"unknown field {key!r} in {what}{_did_you_mean(key, allowed)}", at_key=True)


def _did_you_mean(key: str, allowed: Sequence[str], listed: str = "") -> str:
    """The hint the config file's unknown keys get too: the closest field, else every field (or ``listed``)."""
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {listed or ', '.join(allowed)})"
