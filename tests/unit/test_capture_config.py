"""The capture step's config: sizes, defaults, and positioned errors."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from rules.errors import SourceError

SERVICE = "services:\n  web:\n    process: {pidfile: /run/web.pid}\n    restart: {signal: TERM}\n"


def playbook(step: str) -> str:
    return SERVICE + f"playbooks:\n  - name: diagnose\n    service: web\n    steps:\n      - {step}\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(SourceError) as info:
        parse_config(text, "agent.yaml")
    return [str(issue) for issue in info.value.issues]


def test_a_capture_step_keeps_64_kib_for_10s_and_continues_on_failure() -> None:
    """Defaults: 10 s, 64 KiB, a step bound 5 s longer so the killed command's output is kept, on_failure continue."""
    spec = parse_config(playbook("capture: {exec: [cat, /proc/$PID/status]}"), "agent.yaml").playbooks[0].spec(False)
    step = spec.steps[0]
    assert step.action == "capture" and step.on_failure == "continue" and step.timeout_s == 15.0
    assert dict(step.args) == {"command": ("cat", "/proc/$PID/status"), "env": {}, "timeout_s": 10.0,
                               "max_bytes": 65536}


@pytest.mark.parametrize(("size", "expected"), [("1MiB", 1 << 20), ("500KB", 500_000), ("4096", 4096), (128, 128)])
def test_max_bytes_reads_units(size: object, expected: int) -> None:
    """KiB and MiB are powers of two, KB and MB powers of ten, a bare number is bytes."""
    text = playbook(f"{{capture: {{exec: [py-spy, dump, --pid, $PID], max_bytes: {size}}}, on_failure: abort}}")
    step = parse_config(text, "agent.yaml").playbooks[0].spec(False).steps[0]
    assert step.args["max_bytes"] == expected and step.on_failure == "abort"


def test_bad_capture_settings_are_positioned_errors() -> None:
    """A size without a known unit, and a step-level timeout beside capture's own, name file, line and column."""
    assert errors_of(playbook("capture: {exec: [cat], max_bytes: 64 kilobytes}")) == [
        "agent.yaml:9:43: playbooks -> 0 -> steps -> 0 -> capture -> max_bytes: expected a size such as 64KiB, "
        "1MiB or 4096, got '64 kilobytes'"
    ]
    assert errors_of(playbook("{capture: {exec: [cat]}, timeout: 5s}")) == [
        "agent.yaml:9:9: playbooks -> 0 -> steps -> 0: a capture step has its own timeout: write it inside capture:"
    ]
