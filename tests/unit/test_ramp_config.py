"""The progressive restore's config: the step it makes, and positioned errors for ramps that cannot work."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from healers.ramp import Ramp
from rules.errors import SourceError

RAMP = "{traffic: {restore: {ramp: [10, 50, 100], hold: 2s, guard: 'http_errors_total > 0'}}}"


def config(traffic: str, step: str = RAMP) -> str:
    return ("services:\n  web:\n    process: {pidfile: /run/web.pid}\n    restart: {signal: TERM}\n"
            f"    traffic: {traffic}\n"
            f"playbooks:\n  - name: ramp\n    service: web\n    steps:\n      - traffic: cut\n      - {step}\n")


def errors_of(text: str) -> list[str]:
    with pytest.raises(SourceError) as info:
        parse_config(text, "agent.yaml")
    return [str(issue) for issue in info.value.issues]


@pytest.mark.parametrize("traffic", [
    "{haproxy: {socket: /run/haproxy.sock, backend: api, server: web}}",
    "{file: {path: /run/web.down, weight_path: /run/web.weight}}",
    "{exec: {cut: [lb, out], restore: [lb, in], weight: [lb, weight, $PERCENT]}}",
])
def test_a_ramp_on_a_backend_that_weighs_becomes_an_escalating_restore_step(traffic: str) -> None:
    """Stages, hold and guard reach the step; it escalates by default and its timeout covers the holds."""
    step = parse_config(config(traffic), "agent.yaml").playbooks[0].spec(False).steps[1]
    assert step.ramps() and step.args["ramp"] == Ramp((10, 50, 100), 2.0, "http_errors_total > 0")
    assert step.on_failure == "escalate" and step.timeout_s == 3 * (2 + 10) + 10
    assert step.describe() == "traffic ramp 10/50/100%"


@pytest.mark.parametrize(("traffic", "kind"), [
    ("{readiness: {}}", "readiness"),
    ("{file: {path: /run/web.down}}", "file"),
    ("{exec: {cut: [lb, out], restore: [lb, in]}}", "exec"),
])
def test_a_ramp_on_an_all_or_nothing_backend_is_an_error_at_the_step(traffic: str, kind: str) -> None:
    """The readiness gate (and file or exec without a weight) is in or out: check config says so at the step."""
    assert errors_of(config(traffic)) == [
        f"agent.yaml:11:19: playbooks -> 0 -> steps -> 1 -> traffic: service 'web' has {kind} traffic, which is all "
        "or nothing and cannot ramp (haproxy can; file needs weight_path, exec needs weight); use traffic: restore"
    ]


def test_bad_ramps_are_errors_at_their_keys() -> None:
    """Shares not ascending to 100, a guard that does not parse, and an unknown traffic word."""
    step = "{traffic: {restore: {ramp: [50, 10], hold: 1s, guard: 'rate(x[1m]) >'}}}"
    assert errors_of(config("{readiness: {}}", step)) == [
        "agent.yaml:11:36: playbooks -> 0 -> steps -> 1 -> traffic -> restore -> ramp: expected shares ascending "
        "to 100, such as [10, 50, 100], got [50, 10]",
        "agent.yaml:11:63: playbooks -> 0 -> steps -> 1 -> traffic -> restore -> guard: could not use the guard "
        "expression: 1:14: parse error: unexpected end of input",
    ]
    assert errors_of(config("{readiness: {}}", "traffic: ramp")) == [
        "agent.yaml:11:18: playbooks -> 0 -> steps -> 1 -> traffic: expected cut, restore or {restore: {ramp: [...], "
        "hold: ..., guard: ...}}, got 'ramp'"
    ]
