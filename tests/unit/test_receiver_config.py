"""The pagerduty and msteams receiver sections: positioned errors, one kind per receiver, secrets kept out of errors."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from rules.errors import SourceError

KEY = "R0UT1NGK3Y0123456789abcdefABCDEF"


def errors_of(text: str) -> list[str]:
    with pytest.raises(SourceError) as info:
        parse_config(text, "agent.yaml")
    return [str(issue) for issue in info.value.issues]


def test_bad_pagerduty_and_teams_sections_are_positioned_and_name_no_secret() -> None:
    """Both routing_key and its file, a severity outside PagerDuty's enum, and Teams without a URL: one error each."""
    errors = errors_of(
        "notify:\n  receivers:\n"
        f"    - name: a\n      pagerduty: {{routing_key: {KEY}, routing_key_file: /run/pd}}\n"
        f"    - name: b\n      pagerduty: {{routing_key: {KEY}, severity: fatal}}\n"
        "    - name: c\n      msteams: {title: hi}\n"
        f"    - name: d\n      msteams: {{webhook_url: 'https://x.example/w?sig=abc'}}\n      pagerduty: {{routing_key: {KEY}}}\n"
        "  route: {receiver: a}\n")
    assert errors == [
        "agent.yaml:4:18: notify -> receivers -> 0 -> pagerduty: expected exactly one of routing_key or routing_key_file",
        "agent.yaml:6:76: notify -> receivers -> 1 -> pagerduty -> severity: Input should be 'critical', 'error', "
        "'warning' or 'info'",
        "agent.yaml:8:16: notify -> receivers -> 2 -> msteams: expected exactly one of webhook_url or webhook_url_file",
        "agent.yaml:9:7: notify -> receivers -> 3: expected one of slack, webhook, alertmanager, pagerduty, msteams, email "
        "per receiver, got pagerduty, msteams",
    ]
    assert not any(KEY in error or "sig=abc" in error for error in errors)


def test_send_resolved_follows_each_kind() -> None:
    """PagerDuty and Teams resolve by default, as Alertmanager's pagerduty and msteamsv2 do; Slack does not."""
    config = parse_config(
        "notify:\n  receivers:\n"
        f"    - {{name: pd, pagerduty: {{routing_key: {KEY}, send_resolved: false}}}}\n"
        "    - {name: teams, msteams: {webhook_url_file: /run/teams}}\n"
        "    - {name: chat, slack: {webhook_url: 'https://hooks.slack.com/services/T/B/X'}}\n"
        "  route: {receiver: pd}\n", "agent.yaml")
    assert [r.send_resolved for r in config.notify.receivers] == [False, True, False]
