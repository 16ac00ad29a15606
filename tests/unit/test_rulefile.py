"""Rule files: Prometheus' format and checks, every error positioned, and the simple form."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.errors import SourceError
from rules.rulefile import (
    SIMPLE_AGGREGATES, duplicate_rules, expand_rule_files, load_rule_file, load_rule_files, parse_rules,
)

DATA = Path(__file__).parents[1] / "data"


def errors_of(text: str) -> list[str]:
    with pytest.raises(SourceError) as info:
        parse_rules(text, "r.yaml")
    return [str(issue) for issue in info.value.issues]


def test_a_prometheus_rule_file_loads() -> None:
    """Groups, intervals, alert and record rules with for/keep_firing_for/labels/annotations load as written."""
    (group,) = parse_rules(
        """
groups:
  - name: api
    interval: 30s
    labels: {team: core}
    rules:
      - record: job:errors:rate5m
        expr: sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))
      - alert: HighErrorRate
        expr: job:errors:rate5m > 1
        for: 2m
        keep_firing_for: 5m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} at {{ $value }}"}
""",
        "r.yaml",
    )
    assert (group.name, group.interval_s, group.labels) == ("api", 30.0, {"team": "core"})
    record, alert = group.rules
    assert (record.kind, record.name) == ("record", "job:errors:rate5m")
    assert (alert.kind, alert.for_s, alert.keep_firing_for_s, alert.line) == ("alert", 120.0, 300.0, 9)


def test_every_error_is_reported_with_its_position() -> None:
    """A file with many mistakes lists each one at its file:line:column, like promtool but all at once."""
    with pytest.raises(SourceError) as info:
        load_rule_file(str(DATA / "bad.rules.yaml"))
    issues = [(issue.line, issue.column, issue.message.splitlines()[0]) for issue in info.value.issues]
    file = "group \"g\""
    assert issues == [
        (5, 19, f'{file}, rule 1, "HighCPU": could not parse expression: 1:5: parse error: unclosed left parenthesis'),
        (6, 14, f'{file}, rule 1, "HighCPU": for: invalid duration \'5x\': expected a number with a unit '
                "(ms, s, m, h, d, w, y), e.g. 500ms, 15s, 1h30m"),
        (7, 18, f'{file}, rule 1, "HighCPU": invalid label name: __name__'),
        (7, 31, f'{file}, rule 1, "HighCPU": invalid label name: bad-label'),
        (9, 20, f'{file}, rule 1, "HighCPU": annotation "summary": template: __alert_HighCPU:1: function "nope" not defined'),
        (10, 17, f"{file}, rule 2, \"Both\": only one of 'record' and 'alert' must be set"),
        (14, 15, f'{file}, rule 3, "Range": expression must evaluate to an instant vector or scalar, got range vector: '
                 "node_cpu_seconds_total[5m]"),
        (19, 11, f'{file}, rule 4, "Multi": could not parse expression: 3:1: parse error: unexpected ")"'),
        (26, 16, f"{file}, rule 5, \"Simple\": unknown field 'bogus' in rule (expected one of: record, alert, expr, for, "
                 "keep_firing_for, labels, annotations, or the simple form's metric, aggregate, window, op, threshold)"),
        (28, 18, f'{file}, rule 6, "Re": could not parse expression: 1:4: parse error: invalid regular expression in '
                 'job=~"((": missing ), unterminated subpattern at position 1'),
        (29, 5, 'groupname: "g" is repeated in the same file'),
        (30, 15, "interval: must be greater than 0s"),
    ]


def test_a_parse_error_shows_the_expression_with_a_caret() -> None:
    """The offending expression is printed with a caret under the error position."""
    (issue,) = errors_of("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(rate(x[5m])) by job\n")
    lines = issue.splitlines()
    assert lines[0].startswith("r.yaml:5:")
    assert lines[0].endswith('unexpected identifier "job" in grouping opts, expected "("')  # promtool's words
    assert lines[1:] == ["    sum(rate(x[5m])) by job", " " * 24 + "^"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("- {record: 'a{b}', expr: up}", "invalid recording rule name: a{b}"),
        ("- {record: r, expr: up, for: 5m}", "invalid field 'for' in recording rule"),
        ("- {record: r, expr: up, annotations: {a: b}}", "invalid field 'annotations' in recording rule"),
        ("- {alert: A}", "field 'expr' must be set in rule"),
        ("- {expr: up}", "one of 'record' or 'alert' must be set"),
        ("- {alert: A, expr: up, annotations: {'1x': y}}", "invalid annotation name: 1x"),
        ("- {alert: A, expr: 'rate(up)'}", 'expected type range vector in call to function "rate", got instant vector'),
        ("- {alert: A, expr: 'rate(up[5m])[1m:]'}", "expression must evaluate to an instant vector or scalar"),
    ],
)
def test_promtool_checks(rule: str, message: str) -> None:
    """The checks promtool makes on single rules are made here with the same words."""
    (issue,) = errors_of(f"groups:\n- name: g\n  rules:\n  {rule}\n")
    assert message in issue


def test_unknown_group_fields_are_rejected() -> None:
    """A misspelt group field is an error at the key, naming the field it is closest to, as the config does."""
    (issue,) = errors_of("groups:\n- name: g\n  intervall: 1m\n  rules: []\n")
    assert issue == "r.yaml:3:3: unknown field 'intervall' in rule group (did you mean 'interval'?)"


def test_unknown_fields_far_from_any_name_every_allowed_field() -> None:
    """An unknown key like no field gets the list of allowed ones instead of a guess."""
    (issue,) = errors_of("groups:\n- name: g\n  zzz: 1m\n  rules: []\n")
    assert issue.endswith("unknown field 'zzz' in rule group (expected one of: name, interval, query_offset, limit, "
                          "labels, rules)")


def test_unknown_rule_fields_get_a_did_you_mean() -> None:
    """A misspelt rule field (exprr) is named with the field it is closest to."""
    (issue,) = errors_of("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    exprr: up\n")
    assert issue == "r.yaml:6:12: group \"g\", rule 1, \"A\": unknown field 'exprr' in rule (did you mean 'expr'?)"


@pytest.mark.parametrize(("aggregate", "compiled"), [
    ("avg", "avg_over_time(node_cpu_busy_ratio[5m]) > 0.8"),
    ("rate", "rate(node_cpu_busy_ratio[5m]) > 0.8"),
    ("p99", "quantile_over_time(0.99, node_cpu_busy_ratio[5m]) > 0.8"),
])
def test_the_simple_form_compiles_to_promql(aggregate: str, compiled: str) -> None:
    """metric/aggregate/window/op/threshold become the equivalent PromQL expression."""
    (group,) = parse_rules(
        "groups:\n- name: g\n  rules:\n  - alert: HighCPU\n    metric: node_cpu_busy_ratio\n"
        f"    aggregate: {aggregate}\n    window: 5m\n    op: '>'\n    threshold: 0.8\n    for: 2m\n",
        "r.yaml",
    )
    (rule,) = group.rules
    assert (rule.expr, rule.simple, rule.for_s) == (compiled, True, 120.0)


def test_every_simple_aggregate_compiles() -> None:
    """All twelve aggregates of the simple form yield parseable PromQL."""
    for aggregate in SIMPLE_AGGREGATES:
        parse_rules(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    metric: 'x{a=\"b\"}'\n"
            f"    aggregate: {aggregate}\n    window: 1m\n    op: '<='\n    threshold: 3\n",
            "r.yaml",
        )


def test_simple_form_mistakes_are_explained() -> None:
    """Unknown aggregates and ops list the allowed values; missing parts are named."""
    issues = errors_of(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    metric: x\n    aggregate: median\n    window: 1m\n"
        "    op: '=>'\n    threshold: 1\n  - alert: B\n    metric: x\n    window: 1m\n"
    )
    assert "unknown aggregate 'median'; expected one of: avg, min, max" in issues[0]
    assert "unknown op '=>'; expected one of: > >= < <= == !=" in issues[1]
    assert "the simple form needs aggregate, op, threshold" in issues[2]


def test_globs_expand_and_a_missing_plain_file_is_an_error(tmp_path: Path) -> None:
    """Globs match sorted files relative to the base directory; a named file that is missing is an error."""
    (tmp_path / "b.yaml").write_text("groups: []\n")
    (tmp_path / "a.yaml").write_text("groups: []\n")
    assert expand_rule_files(["*.yaml"], tmp_path) == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    assert expand_rule_files(["none-*.yaml"], tmp_path) == []
    with pytest.raises(SourceError, match="rule file does not exist"):
        expand_rule_files(["missing.yaml"], tmp_path)


def test_the_shipped_default_rules_are_valid() -> None:
    """The default host, service and agent rules load without errors."""
    for path in sorted(Path(__file__).parents[2].joinpath("rules").glob("*.rules.yaml")):
        assert load_rule_file(str(path))


VALID = (DATA / "bad.rules.yaml").read_text().replace("bogus: 1", "")


@settings(max_examples=300, deadline=None, database=None)
@given(st.text())
def test_arbitrary_text_gives_only_rule_errors(text: str) -> None:
    """Any text in, a list of groups or a SourceError out: never another exception."""
    try:
        parse_rules(text, "f.yaml")
    except SourceError:
        pass


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(0, len(VALID) - 1), st.integers(1, 40), st.text(max_size=5))
def test_mangled_rule_files_give_only_rule_errors(start: int, length: int, insert: str) -> None:
    """A real rule file with a slice replaced by junk still yields only SourceErrors."""
    try:
        parse_rules(VALID[:start] + insert + VALID[start + length:], "f.yaml")
    except SourceError:
        pass


def test_an_error_on_a_trailing_empty_line_is_reported() -> None:
    """An expression that ends early in a block scalar is an error at its last, empty line, not a crash."""
    (issue,) = errors_of("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: |\n      sum by (\n      )\n")
    assert "could not parse expression: 3:1: parse error: unexpected end of input" in issue


def test_a_file_emptied_after_holding_groups_is_refused_but_groups_empty_is_not(tmp_path: Path) -> None:
    """An empty rule file that held groups at the last load is an error; ``groups: []`` and a new empty file are not."""
    path = tmp_path / "r.yaml"
    path.write_text(" \n# truncated\n")
    assert load_rule_files([str(path)]) == []
    with pytest.raises(SourceError, match="write 'groups: \\[\\]' to remove them"):
        load_rule_files([str(path)], had_groups={str(path)})
    path.write_text("groups: []\n")
    assert load_rule_files([str(path)], had_groups={str(path)}) == []


def test_label_and_annotation_values_are_the_text_written_as_prometheus_reads_them() -> None:
    """yes, on, no, 0x1F, 1.10, True and null keep their text ("" for null), where YAML 1.1 made them true/31/1.1."""
    (group,) = parse_rules(
        "groups:\n- name: 1.10\n  rules:\n  - alert: true\n    expr: 1\n    for: 0\n"
        "    labels: {page: yes, team: on, code: 0x1F, ver: 1.10, t: True, e: 1e3, o: 017, n: null}\n"
        "    annotations: {x: no, y: off}\n",
        "r.yaml",
    )
    (rule,) = group.rules
    assert (group.name, rule.name, rule.expr, rule.for_s) == ("1.10", "true", "1", 0.0)
    assert rule.labels == {"page": "yes", "team": "on", "code": "0x1F", "ver": "1.10", "t": "True", "e": "1e3",
                           "o": "017", "n": ""}
    assert rule.annotations == {"x": "no", "y": "off"}


def test_numbers_resolve_as_go_reads_them_where_a_number_is_due() -> None:
    """limit: 0x1F is 31 and 1e1 is 10 (yaml.v3 reads both into an int); yes is text, not a number."""
    (group,) = parse_rules("groups:\n- name: g\n  limit: 0x1F\n  rules: []\n", "r.yaml")
    assert group.limit == 31
    (group,) = parse_rules("groups:\n- name: g\n  limit: 1e1\n  rules: []\n", "r.yaml")
    assert group.limit == 10
    assert errors_of("groups:\n- name: g\n  limit: yes\n  rules: []\n") == [
        "r.yaml:3:10: limit must be a non-negative integer, got 'yes'"]


def test_duplicate_rules_are_reported_as_promtool_lints_them() -> None:
    """Rules with one name and the same labels, across groups and whatever their expr, are listed once each."""
    groups = parse_rules(
        "groups:\n- name: g\n  rules:\n  - {alert: A, expr: up == 0, labels: {s: x}}\n"
        "  - {alert: A, expr: up == 1, labels: {s: x}}\n  - {record: r, expr: sum(up)}\n"
        "  - {record: r, expr: sum(up)}\n  - {alert: A, expr: up == 0, labels: {s: y}}\n"
        "- name: h\n  rules:\n  - {alert: A, expr: up == 0, labels: {s: x}}\n",
        "r.yaml",
    )
    assert duplicate_rules(groups) == (
        "lint error 2 duplicate rule(s) found.\nMetric: A\nLabel(s):\n\ts: x\nMetric: r\nLabel(s):\n"
        "Might cause inconsistency while recording expressions"
    )


def test_rules_differing_in_name_or_labels_are_no_duplicates() -> None:
    """The same expression under other names or labels is no lint error."""
    groups = parse_rules(
        "groups:\n- name: g\n  rules:\n  - {alert: A, expr: up, labels: {s: x}}\n  - {alert: A, expr: up}\n"
        "  - {alert: B, expr: up, labels: {s: x}}\n",
        "r.yaml",
    )
    assert duplicate_rules(groups) is None
