"""Issue #17 end to end: a bad deploy of the example app (real supervisord, healwatch, scraped series) rolled back.

examples/rollback runs once: the journal must show cut, smoke, a failed verify, the rollback, the
verify passing after it and the restore, with the verify's timeout and ``for`` in its timings; the
client must see no failure after the restore; the CLI runs a second playbook by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.rollback.scenario import GOOD, Report, run
from harness.processes import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PATH = [
    ("traffic cut", "ok"), ("exec", "ok"), ("verify", "failed"),
    ("rollback: exec", "ok"), ("rollback: restart", "ok"), ("rollback: wait_healthy", "ok"), ("rollback: exec", "ok"),
    ("verify after rollback", "ok"), ("traffic restore", "ok"),
]


def test_a_bad_deploy_is_rolled_back_verified_and_put_back_in_rotation(tmp_path: Path) -> None:
    require_binary("supervisord")
    report: Report = run(tmp_path)
    timings = "\n".join(report.lines())
    incident, steps = report.incident, report.steps
    assert incident["outcome"] == "succeeded" and 'alertname="WebErrorRatioHigh"' in incident["trigger"], timings
    assert [(step["action"], step["result"]) for step in steps] == PATH, timings
    # The first verify waits out its 6 s timeout: the bad version's ratio is never under 5 % for 2 s. (A single
    # evaluation may see it under: a 5 s rate window between two smoke requests can hold no 500 at all.)
    first = steps[2]
    assert 6.0 <= first["durationSeconds"] < 8.0 and first["error"].startswith("not verified within 6s"), timings
    assert first["attachment"].splitlines()[0].endswith(": empty"), timings
    # After the rollback the verify passes once the ratio has been under 5 % for its 2 s.
    again = steps[7]
    assert 2.0 <= again["durationSeconds"] < 6.0, timings
    assert again["attachment"].splitlines()[-1].split(": ", 1)[1].startswith("1 series"), timings
    assert report.at(incident["startedAt"]) < 15.0 and incident["durationSeconds"] < 30.0, timings
    assert report.version_after == GOOD, timings
    assert report.client_failures_after_restore == 0 and report.client_requests_after_restore >= 40, timings
    assert "rollback: restart" in report.journal_output and "verify after rollback" in report.journal_output, timings
    assert report.manual_exit == 0, timings
    assert "healing web with check-web..." in report.manual_output and "evaluations:" in report.manual_output, timings
