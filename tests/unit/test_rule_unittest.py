"""Rule unit tests in promtool's format: notation, evaluation, verdicts and the report."""

from __future__ import annotations

import io
import math
import textwrap
import time
from pathlib import Path

import pytest

from rules.model import Labels, is_stale_nan
from rules.unittest import MAX_SERIES_VALUES, expand_values, go_duration, parse_series, run_test_files

RULES = """\
groups:
- name: availability
  rules:
  - alert: InstanceDown
    expr: up == 0
    for: 2m
    labels:
      severity: page
    annotations:
      summary: '{{ $labels.instance }} down ({{ $value }})'
      load: '{{ humanize $value }}'
- name: recording
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
"""


def run(tmp_path: Path, test: str, rules: str = RULES, name: str = "test.yml") -> tuple[int, str]:
    (tmp_path / "rules.yml").write_text(rules)
    path = tmp_path / name
    path.write_text(textwrap.dedent(test))
    out = io.StringIO()
    code = run_test_files([str(path)], out)
    return code, out.getvalue()


def test_expand_values_follows_promtools_notation() -> None:
    """Every form of the expanding notation gives the documented samples."""
    assert expand_values("-2+4x3") == [-2, 2, 6, 10]
    assert expand_values(" 1-2x4") == [1, -1, -3, -5, -7]
    assert expand_values("1x4") == [1, 1, 1, 1, 1]
    assert expand_values("1 _x3 _ 2") == [1, None, None, None, None, 2]
    assert expand_values("1e3 +Inf -inf") == [1000, math.inf, -math.inf]


def test_expand_values_marks_stale_and_nan_apart() -> None:
    """``stale`` is the staleness marker and ``NaN`` an ordinary NaN."""
    stale, nan = expand_values("stale NaN")
    assert stale is not None and is_stale_nan(stale)
    assert nan is not None and math.isnan(nan) and not is_stale_nan(nan)


def test_expand_values_reads_0x6_as_a_repeat_not_hex() -> None:
    """``0x6`` is zero seven times, as Prometheus' loader reads it."""
    assert expand_values("0x6") == [0] * 7


@pytest.mark.parametrize("text", ["1 2 three", "1+x3", "stalex2", "1+2x"])
def test_expand_values_rejects_other_items(text: str) -> None:
    """Anything outside the notation is a ValueError naming the expected forms."""
    with pytest.raises(ValueError, match="expected a number"):
        expand_values(text)


def test_parse_series_reads_name_and_labels() -> None:
    """A series description becomes its label set, metric name included."""
    assert parse_series('up{job="api", instance="a:80"}') == Labels({"__name__": "up", "job": "api", "instance": "a:80"})
    assert parse_series("x") == Labels({"__name__": "x"})
    with pytest.raises(ValueError, match="must be set with '='"):
        parse_series('up{job=~"a"}')


def test_alert_fires_only_after_for_and_pending_alerts_are_ignored(tmp_path: Path) -> None:
    """An alert pending at 3m is not listed; at 4m it fires with rule labels and templated annotations."""
    code, out = run(tmp_path, """\
        rule_files: [rules.yml]
        tests:
          - interval: 1m
            input_series:
              - series: 'up{job="api", instance="a:80"}'
                values: '1 1 0 0 0 0 1'
              - series: 'up{job="api", instance="b:80"}'
                values: '1x6'
            alert_rule_test:
              - eval_time: 3m
                alertname: InstanceDown
                exp_alerts: []
              - eval_time: 4m
                alertname: InstanceDown
                exp_alerts:
                  - exp_labels: {severity: page, job: api, instance: a:80}
                    exp_annotations: {summary: 'a:80 down (0)', load: '0'}
              - eval_time: 6m
                alertname: InstanceDown
                exp_alerts: []
        """)
    assert (code, out) == (0, f"Unit Testing:  {tmp_path / 'test.yml'}\n  SUCCESS\n\n")


def test_alert_failure_prints_promtools_diff(tmp_path: Path) -> None:
    """A wrong annotation fails with the exp/got layout promtool prints, test name first."""
    code, out = run(tmp_path, """\
        rule_files: [rules.yml]
        tests:
          - name: wrong summary
            interval: 1m
            input_series:
              - series: 'up{job="api", instance="a:80"}'
                values: '0x5'
            alert_rule_test:
              - eval_time: 5m
                alertname: InstanceDown
                exp_alerts:
                  - exp_labels: {severity: page, job: api, instance: a:80}
                    exp_annotations: {summary: 'wrong', load: '0'}
        """)
    assert code == 1
    # Text as promtool 2.42 prints it for the same files (stderr and stdout interleaved).
    assert out == (
        f"Unit Testing:  {tmp_path / 'test.yml'}\n"
        "  FAILED:\n"
        "    name: wrong summary,\n"
        "    alertname: InstanceDown, time: 5m, \n"
        "        exp:[\n"
        "            0:\n"
        '              Labels:{alertname="InstanceDown", instance="a:80", job="api", severity="page"}\n'
        '              Annotations:{load="0", summary="wrong"}\n'
        "            ], \n"
        "        got:[\n"
        "            0:\n"
        '              Labels:{alertname="InstanceDown", instance="a:80", job="api", severity="page"}\n'
        '              Annotations:{load="0", summary="a:80 down (0)"}\n'
        "            ]\n"
        "\n"
        "\n"
    )


def test_expr_tests_compare_samples_in_any_order(tmp_path: Path) -> None:
    """Expected samples may be listed in any order; recorded series are queryable."""
    code, out = run(tmp_path, """\
        rule_files: [rules.yml]
        tests:
          - interval: 1m
            input_series:
              - series: 'up{job="api", instance="a"}'
                values: '1x3'
              - series: 'up{job="api", instance="b"}'
                values: '1x3'
              - series: 'up{job="web", instance="c"}'
                values: '0x3'
            promql_expr_test:
              - expr: job:up:sum
                eval_time: 2m
                exp_samples:
                  - labels: 'job:up:sum{job="web"}'
                    value: 0
                  - labels: 'job:up:sum{job="api"}'
                    value: 2
              - expr: scalar(job:up:sum{job="api"}) * 2
                eval_time: 2m
                exp_samples:
                  - value: 4
        """)
    assert "SUCCESS" in out and code == 0


def test_expr_failure_prints_both_sample_lists(tmp_path: Path) -> None:
    """A wrong value shows expected and actual samples in Go's %E float format."""
    code, out = run(tmp_path, """\
        rule_files: []
        tests:
          - interval: 1m
            input_series:
              - series: 'x{a="1"}'
                values: '0+0.5x4'
            promql_expr_test:
              - expr: x
                eval_time: 3m
                exp_samples:
                  - labels: 'x{a="1"}'
                    value: 1
              - expr: x > 100
                eval_time: 3m
                exp_samples: []
        """)
    assert code == 1
    assert (
        '    expr: "x", time: 3m,\n'
        '        exp: {__name__="x", a="1"} 1E+00\n'
        '        got: {__name__="x", a="1"} 1.5E+00\n\n'
    ) in out
    assert '"x > 100"' not in out


def test_values_compare_exactly_unless_fuzzy(tmp_path: Path) -> None:
    """0.1+0.2 is not 0.3 to promtool; fuzzy_compare forgives the last bit of the mantissa."""
    test = """\
        rule_files: []
        {fuzzy}
        tests:
          - interval: 1m
            promql_expr_test:
              - expr: 0.1 + 0.2
                eval_time: 0s
                exp_samples: [{{labels: '{{}}', value: 0.3}}]
        """
    assert run(tmp_path, test.format(fuzzy=""))[0] == 1
    assert run(tmp_path, test.format(fuzzy="fuzzy_compare: true"))[0] == 0


def test_eval_time_between_steps_uses_the_step_before(tmp_path: Path) -> None:
    """Samples after the last evaluation step are not loaded, and alerts are checked at that step."""
    code, out = run(tmp_path, """\
        rule_files: [rules.yml]
        evaluation_interval: 2m
        tests:
          - interval: 1m
            input_series:
              - series: 'up{job="api", instance="a"}'
                values: '1 1 0 5'
            alert_rule_test:
              - eval_time: 3m59s  # checked against the evaluation at 2m, where it turned pending
                alertname: InstanceDown
                exp_alerts: []
            promql_expr_test:
              - expr: up
                eval_time: 3m  # the sample at 3m is past the last step (2m): promtool never loads it
                exp_samples:
                  - labels: 'up{job="api", instance="a"}'
                    value: 0
        """)
    assert (code, "SUCCESS" in out) == (0, True)


def test_group_eval_order_lets_an_alert_read_this_steps_recording(tmp_path: Path) -> None:
    """With the recording group first, an alert on its output fires at the same step."""
    rules = """\
groups:
- name: alert
  rules:
  - alert: NoneUp
    expr: job:up:sum == 0
- name: record
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
"""
    test = """\
        rule_files: [rules.yml]
        {order}
        tests:
          - interval: 1m
            input_series:
              - series: 'up{{job="api"}}'
                values: '0'
            alert_rule_test:
              - eval_time: 0s
                alertname: NoneUp
                exp_alerts:
                  - exp_labels: {{job: api}}
        """
    assert run(tmp_path, test.format(order="group_eval_order: [record, alert]"), rules)[0] == 0
    assert run(tmp_path, test.format(order=""), rules)[0] == 1


def test_rule_evaluation_error_stops_the_group(tmp_path: Path) -> None:
    """A failing rule is reported with its name and time, and the expression tests do not run."""
    rules = "groups:\n- name: g\n  rules:\n  - record: merged\n    expr: label_replace(x, \"i\", \"\", \"i\", \".*\")\n"
    code, out = run(tmp_path, """\
        rule_files: [rules.yml]
        tests:
          - interval: 1m
            input_series:
              - {series: 'x{i="1"}', values: '1x3'}
              - {series: 'x{i="2"}', values: '1x3'}
            promql_expr_test:
              - {expr: nothing, eval_time: 1m, exp_samples: [{labels: 'y', value: 1}]}
        """, rules)
    assert code == 1
    assert "    rule: merged, time: 0s, err: vector cannot contain metrics with the same labelset\n" in out
    assert "nothing" not in out


@pytest.mark.parametrize(
    ("test", "message"),
    [
        ("rule_files: []\ntests:\n- intervals: 1m\n", "test.yml:3:3: unknown field 'intervals' in a test group"),
        ("rule_files: []\ntests:\n- interval: soon\n", "test.yml:3:13: interval: invalid duration 'soon'"),
        ("rule_files: []\ntests: [\n", "test.yml:3:1: YAML syntax error"),
        ("rule_files: []\ntests:\n- input_series:\n  - {series: 'x', values: '1 x'}\n",
         "test.yml:4:27: invalid value 'x'"),
        ("tests:\n- promql_expr_test:\n  - {expr: x, exp_samples: [{value: high}]}\n",
         "test.yml:3:37: value must be a number"),
        ("rule_files: [rules.yml, broken.yml]\ntests:\n- interval: 1m\n",
         'broken.yml:2:1: YAML syntax error'),
    ],
)
def test_bad_test_files_fail_with_a_positioned_message(tmp_path: Path, test: str, message: str) -> None:
    """A test file that cannot be used fails with file, line and column, never a traceback."""
    (tmp_path / "broken.yml").write_text("groups: [\n")
    code, out = run(tmp_path, test)
    assert code == 1
    assert message in out.replace(str(tmp_path) + "/", "")


def test_unreadable_test_file_is_a_failure(tmp_path: Path) -> None:
    """A missing test file fails its entry and the others still run."""
    good = tmp_path / "good.yml"
    good.write_text("rule_files: []\ntests: []\n")
    out = io.StringIO()
    assert run_test_files([str(tmp_path / "nope.yml"), str(good)], out) == 1
    assert f"{tmp_path / 'nope.yml'}: cannot read test file: No such file or directory" in out.getvalue()
    assert out.getvalue().endswith(f"Unit Testing:  {good}\n  SUCCESS\n\n")


def test_unmatched_rule_glob_is_a_warning(tmp_path: Path) -> None:
    """A rule_files pattern matching nothing warns, as promtool does, and the tests still run."""
    code, out = run(tmp_path, "rule_files: ['none-*.yml']\ntests:\n- promql_expr_test: []\n")
    assert code == 0
    assert f"  WARNING: no file match pattern {tmp_path / 'none-*.yml'}\n" in out


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0s"), (500, "500ms"), (1500, "1.5s"), (240_000, "4m0s"), (3_600_000, "1h0m0s"), (3_690_000, "1h1m30s")],
)
def test_go_duration_prints_like_go(ms: int, text: str) -> None:
    """Rule error times read as Go's time.Duration prints them."""
    assert go_duration(ms) == text


def test_series_values_stop_at_the_limit_without_expanding() -> None:
    """A series may hold 100,000 values; an item that would pass the limit is refused before it is expanded."""
    assert len(expand_values("0+1x99999")) == MAX_SERIES_VALUES
    with pytest.raises(ValueError, match=r"'_x1' takes the series past the limit of 100000 values"):
        expand_values("0+1x99999 _x1")
    with pytest.raises(ValueError, match="past the limit"):
        expand_values("1x" + "9" * 5000)


def test_expression_tests_are_bounded_like_promtools_engine(tmp_path: Path) -> None:
    """A subquery too large for 50M samples is refused at once, one too slow stops at the 2 s query timeout."""
    test = """
        rule_files: [rules.yml]
        tests:
          - interval: 1m
            input_series: [{series: 'up{job="a"}', values: '1 1'}]
            promql_expr_test:
              - {expr: 'max_over_time(up[10000d:1ms])', eval_time: 1m, exp_samples: []}
              - {expr: 'sum_over_time(vector(1)[1h:1ms])', eval_time: 1m, exp_samples: []}
    """
    started = time.monotonic()
    code, out = run(tmp_path, test)
    assert code == 1
    assert "query processing would load too many samples into memory" in out
    assert "query timed out in query execution" in out
    assert time.monotonic() - started < 8


@pytest.mark.parametrize(("written", "value"), [("6E-01", 0.6), ("1e3", 1000.0), ("0x1F", 31.0), ("017", 15.0),
                                                ("1_000", 1000.0), ("~", 0.0)])
def test_expected_values_are_numbers_as_go_reads_them(tmp_path: Path, written: str, value: float) -> None:
    """An exp_samples value needs no dot (6E-01, 1e3) and may be hex, octal or null (0), as promtool reads it."""
    test = f"""
        rule_files: [rules.yml]
        tests:
          - promql_expr_test:
              - expr: vector({value!r})
                eval_time: 0
                exp_samples:
                  - labels: '{{}}'
                    value: {written}
        """
    code, out = run(tmp_path, test, rules="groups: []\n")
    assert (code, out.splitlines()[1:]) == (0, ["  SUCCESS", ""])


def test_expected_labels_keep_the_text_written(tmp_path: Path) -> None:
    """exp_labels page: yes and ver: 1.10 are "yes" and "1.10", as the rule file's labels are."""
    rules = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n    labels: {page: yes, ver: 1.10}\n"
    test = """
        rule_files: [rules.yml]
        tests:
          - alert_rule_test:
              - eval_time: 0
                alertname: A
                exp_alerts:
                  - exp_labels: {page: yes, ver: 1.10}
        """
    code, out = run(tmp_path, test, rules=rules)
    assert (code, out.splitlines()[1:]) == (0, ["  SUCCESS", ""])
