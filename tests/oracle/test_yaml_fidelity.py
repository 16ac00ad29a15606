"""YAML means to healwatch what it means to Prometheus: rule and test files through promtool 2.42 and healwatch.

Each case is written to catch one way YAML 1.1 (PyYAML's default) reads a scalar differently from
Go's yaml.v3 (``page: yes`` is "yes", not true; ``value: 6E-01`` is a number). A case passes in
promtool when the expectation is the Go reading, and its negative control (the YAML 1.1 reading)
fails there; healwatch must give both verdicts too. ``check rules`` lints duplicate rules as
promtool does, word for word.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from agent.cli.main import main
from harness.processes import require_binary
from rules.unittest import run_test_files

# rule labels: (as written, exp_labels Go's reading passes, exp_labels YAML 1.1's reading fails).
_LABEL_CASES = {
    "yes": ("page: yes", "page: yes", "page: 'true'"),
    "on": ("team: on", "team: on", "team: 'true'"),
    "hex": ("code: 0x1F", "code: 0x1F", "code: '31'"),
    "float_text": ("ver: 1.10", "ver: 1.10", "ver: '1.1'"),
    "octal": ("mode: 017", "mode: 017", "mode: '15'"),
    "exponent": ("big: 1e3", "big: 1e3", "big: '1000.0'"),
    "True": ("flag: True", "flag: True", "flag: 'true'"),
    "null": ("gone: null", "", "gone: 'null'"),  # Go's "" drops the label from the alert
}
# exp_samples values: (written, the value Go reads, a value it does not).
_VALUE_CASES = {
    "6E-01": ("6E-01", "0.6", "6"),
    "1e3": ("1e3", "1000", "1"),
    "0x1F": ("0x1F", "31", "0"),
    "null": ("~", "0", "1"),
}


def verdicts(tmp_path: Path, rules: str, test: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """The exit codes of promtool and of healwatch on the same rule and test file."""
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "test.yml").write_text(test)
    promtool = subprocess.run(
        [require_binary("promtool"), "test", "rules", "test.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )
    monkeypatch.chdir(tmp_path)
    return promtool.returncode, run_test_files(["test.yml"], io.StringIO())


def alert_test(rule_labels: str, exp_labels: str, annotation: str = "x: no") -> tuple[str, str]:
    rules = ("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n"
             f"    labels: {{{rule_labels}}}\n    annotations: {{x: no}}\n")
    test = ("rule_files: [rules.yml]\ntests:\n- alert_rule_test:\n  - eval_time: 0\n    alertname: A\n"
            f"    exp_alerts:\n    - exp_labels: {{{exp_labels}}}\n      exp_annotations: {{{annotation}}}\n")
    return rules, test


@pytest.mark.parametrize("case", _LABEL_CASES)
def test_label_values_keep_their_text_as_in_promtool(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A label is matched by the text written, as promtool matches it, and not by YAML 1.1's reading of it."""
    written, go_reading, yaml11_reading = _LABEL_CASES[case]
    assert verdicts(tmp_path, *alert_test(written, go_reading), monkeypatch) == (0, 0)
    assert verdicts(tmp_path, *alert_test(written, yaml11_reading), monkeypatch) == (1, 1)


def test_annotations_keep_their_text_as_in_promtool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An annotation x: no is "no" in both tools; expecting "false" (YAML 1.1) fails in both."""
    assert verdicts(tmp_path, *alert_test("page: x", "page: x"), monkeypatch) == (0, 0)
    assert verdicts(tmp_path, *alert_test("page: x", "page: x", "x: 'false'"), monkeypatch) == (1, 1)


def value_test(written: str, actual: str) -> str:
    return ("rule_files: [rules.yml]\ntests:\n- promql_expr_test:\n  - expr: vector(" + actual + ")\n"
            f"    eval_time: 0\n    exp_samples:\n    - labels: '{{}}'\n      value: {written}\n")


@pytest.mark.parametrize("case", _VALUE_CASES)
def test_expected_values_are_numbers_as_in_promtool(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """value: 6E-01, 1e3, 0x1F and ~ are the numbers Go reads: the query giving it passes, another fails."""
    written, meant, other = _VALUE_CASES[case]
    assert verdicts(tmp_path, "groups: []\n", value_test(written, meant), monkeypatch) == (0, 0)
    assert verdicts(tmp_path, "groups: []\n", value_test(written, other), monkeypatch) == (1, 1)


@pytest.mark.parametrize("written", ["yes", "1:20", "true"])
def test_values_go_does_not_read_as_numbers_are_refused_by_both(
    written: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """yes, true and 1:20 (80 in YAML 1.1) are no float64 to Go: the test file is refused by both tools."""
    assert verdicts(tmp_path, "groups: []\n", value_test(written, "1"), monkeypatch) == (1, 1)


_DUPLICATES = ("groups:\n- name: g\n  rules:\n  - {alert: A, expr: up == 0, labels: {s: x}}\n"
               "  - {alert: A, expr: up == 1, labels: {s: x}}\n  - {record: r, expr: sum(up)}\n"
               "- name: h\n  rules:\n  - {record: r, expr: sum(up)}\n  - {alert: A, expr: up, labels: {s: y}}\n")


@pytest.mark.parametrize(("name", "text"), [
    ("duplicates", _DUPLICATES),
    ("distinct", _DUPLICATES.replace("record: r, expr: sum(up)}\n-", "record: r2, expr: sum(up)}\n-")
                            .replace("up == 1, labels: {s: x}", "up == 1, labels: {s: z}")),
])
def test_check_rules_lints_duplicates_as_promtool(
    name: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Duplicate rules print promtool's lint error and exit 0 (3 with --lint-fatal); distinct ones succeed in both."""
    (tmp_path / "rules.yml").write_text(text)
    monkeypatch.chdir(tmp_path)
    for flags in ([], ["--lint-fatal"]):
        promtool = subprocess.run(
            [require_binary("promtool"), "check", "rules", *flags, "rules.yml"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30, check=False,
        )
        code = main(["check", "rules", *flags, "rules.yml"])
        assert (code, capsys.readouterr().out) == (promtool.returncode, promtool.stdout)
        assert ("lint error" in promtool.stdout) is (name == "duplicates")
