"""Prometheus' own promqltest scripts, one test per file, against our engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.promqltest import SKIPPED_CASES, SKIPPED_FILES, run_file, script_paths

FILES = script_paths()


def test_testdata_is_present() -> None:
    """The copied upstream scripts are where the runner looks for them."""
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_script(path: Path) -> None:
    """Every case of the script passes, except the explicitly skip-listed ones (which must still fail)."""
    if path.name in SKIPPED_FILES:
        pytest.skip(SKIPPED_FILES[path.name])
    report = run_file(path)
    failures = "\n".join(f"line {line}: {problem}" for line, problem in report.failed)
    assert not report.failed, f"{len(report.failed)} failing cases:\n{failures}"
    assert not report.unexpected_passes, f"skip-listed cases now pass, remove them: {report.unexpected_passes}"
    assert report.skipped == len(SKIPPED_CASES.get(path.name, {}))
