"""Generated bad configs, rule files and rule tests: the CLI answers each with an error, never a traceback or a hang.

A fixed sample here; ``python -m tests.fuzzing --count 10000`` is the long run (see tests/fuzzing.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.fuzzing import KINDS, fuzz

SAMPLE = 150


def test_generated_inputs_never_crash_or_hang_the_cli(tmp_path: Path) -> None:
    """150 mutated inputs of each kind (seed 12) end with exit status 0 or 1 within the time limit."""
    summary = fuzz(SAMPLE, seed=12, workdir=tmp_path / "findings")
    assert summary.inputs == dict.fromkeys(KINDS, SAMPLE)
    assert not summary.findings, "\n".join(summary.lines())
    assert not (tmp_path / "findings").exists()  # nothing found, no folder left behind
