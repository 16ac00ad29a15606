"""The committed config reference is what `healwatch schema --markdown` prints, and covers every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.config import AgentConfig, CheckConfig, StoreConfig
from agent.config.reference import markdown_reference

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"


def test_committed_reference_matches_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/config-reference.md equals the command's output; regenerate it with `healwatch schema --markdown`."""
    assert main(["schema", "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert REFERENCE.read_text(encoding="utf-8") == printed, (
        "docs/config-reference.md is stale: run `healwatch schema --markdown > docs/config-reference.md`"
    )


def test_every_top_level_key_and_section_is_documented() -> None:
    """Each AgentConfig field has a row in the top-level table and each section field a heading of its own."""
    text = markdown_reference(AgentConfig.model_json_schema())
    top = text.split("## Top level", 1)[1].split("\n## ", 1)[0]
    for name in AgentConfig.model_fields:
        assert f"| `{name}` |" in top, name
    for section in ("evaluation", "host", "api", "store", "services.<name>", "playbooks[]", "healing", "notify"):
        assert f"\n## `{section}`\n" in text, section
    for nested in ("services.<name>.checks[]", "services.<name>.checks[].http", "notify.route.routes[]"):
        assert re.search(rf"\n#+ `{re.escape(nested)}`\n", text), nested


def test_durations_are_duration_strings_and_requirements_are_marked() -> None:
    """Duration defaults read `15s`/`10m`, never seconds as floats; keys without defaults read `required`."""
    text = markdown_reference(AgentConfig.model_json_schema())
    assert "| `interval` | duration | `15s` | Collection interval for process metrics. |" in text
    assert f"| `retention` | duration | `10m` | {StoreConfig.model_fields['retention'].description} |" in text
    assert CheckConfig.model_fields["interval"].default == 10.0  # seconds in the model, `10s` in the reference
    assert "| `interval` | duration | `10s` |  |" in text
    assert "| `name` | string matching `^[A-Za-z0-9_.-]+$` | required |  |" in text
    assert not re.search(r"\| duration[^|]*\| `\d+\.\d+`", text)
