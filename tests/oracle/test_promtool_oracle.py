"""``healwatch test rules`` against the real ``promtool test rules`` on the same files.

Every file under ``tests/data/ruletests`` whose name starts with ``pass_`` passes in
promtool 2.42 and every ``fail_`` file fails there (wrong expectations, broken rules or
test files). Together they cover the PromQL functions and operators of our subset,
alerting rules with ``for`` and templates. Both tools must give the same exit code and
fail the same checks (same ``alertname``/``expr``/``rule`` and time lines).

Prometheus 3 (our engine) excludes a sample on a range window's left edge, promtool 2.42
includes it; the files keep samples off window edges so both mean the same thing.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from rules.unittest import run_test_files
from harness.processes import require_binary

DATA = Path(__file__).parents[1] / "data" / "ruletests"
TEST_FILES = sorted(p.name for p in DATA.glob("*.yml") if p.name.startswith(("pass_", "fail_")))
# The line naming a failed check, up to its time: error texts differ between the engines.
_CHECK_RE = re.compile(r"^    (name: .*|(?:alertname|rule|expr): .*?, time: [^, ]+)", re.MULTILINE)


def promtool(files: list[str]) -> tuple[int, str]:
    run = subprocess.run(
        [require_binary("promtool"), "test", "rules", *files],
        cwd=DATA, capture_output=True, text=True, timeout=30, check=False,
    )
    return run.returncode, run.stdout + run.stderr


def healwatch(files: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(DATA)
    out = io.StringIO()
    return run_test_files(files, out), out.getvalue()


def failed_checks(report: str) -> list[str]:
    return [match.group(1) for match in _CHECK_RE.finditer(report)]


def test_the_corpus_has_both_verdicts() -> None:
    """There are files expected to pass and files expected to fail."""
    assert any(name.startswith("pass_") for name in TEST_FILES)
    assert any(name.startswith("fail_") for name in TEST_FILES)


@pytest.mark.parametrize("name", TEST_FILES)
def test_same_verdict_and_failed_checks_as_promtool(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file passes (pass_*) or fails (fail_*) in both tools, failing the same checks."""
    expected_code = 0 if name.startswith("pass_") else 1
    promtool_code, promtool_report = promtool([name])
    assert promtool_code == expected_code, promtool_report
    code, report = healwatch([name], monkeypatch)
    assert code == expected_code, report
    assert failed_checks(report) == failed_checks(promtool_report)


def test_many_files_at_once_fail_if_any_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run together, the passing files exit 0 and one failing file makes the run exit 1, in both tools."""
    passing = [name for name in TEST_FILES if name.startswith("pass_")]
    assert promtool(passing)[0] == healwatch(passing, monkeypatch)[0] == 0
    mixed = [*passing, "fail_expr_value.yml"]
    assert promtool(mixed)[0] == healwatch(mixed, monkeypatch)[0] == 1
