"""The committed config reference is what `healwatch schema --markdown` prints, and covers every key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    assert f"| `interval` | duration | `10s` | {CheckConfig.model_fields['interval'].description} |" in text
    name = CheckConfig.model_fields["name"].description
    assert f"| `name` | string matching `^[A-Za-z0-9_.-]+$` | required | {name} |" in text
    assert not re.search(r"\| duration[^|]*\| `\d+\.\d+`", text)


def test_every_key_of_the_schema_has_a_description() -> None:
    """Every property of `healwatch schema`, however deeply nested, says what it does (issue #16)."""
    schema = AgentConfig.model_json_schema()
    undocumented = [path for path, prop in _properties(schema, schema, "", set()) if not _described(prop)]
    assert not undocumented, f"{len(undocumented)} config keys have no description: {', '.join(undocumented)}"


def _described(prop: dict[str, Any]) -> bool:
    """A description of its own or, for an optional key, on the non-null member (where the reference reads it)."""
    return any(str(p.get("description", "")).strip() for p in [prop, *prop.get("anyOf", [])])


def _properties(
    node: dict[str, Any], schema: dict[str, Any], path: str, seen: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, property) for every property reachable from ``node``, through $refs (each model walked once),
    anyOf/oneOf/allOf members, list items and map values."""
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return
        seen.add(ref)
        target: Any = schema
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        yield from _properties(target, schema, path, seen)
    for key, prop in node.get("properties", {}).items():
        where = f"{path}.{key}" if path else key
        yield where, prop
        yield from _properties(prop, schema, where, seen)
    for combinator in ("anyOf", "oneOf", "allOf"):
        for member in node.get(combinator, []):
            yield from _properties(member, schema, path, seen)
    if isinstance(node.get("items"), dict):
        yield from _properties(node["items"], schema, f"{path}[]", seen)
    for value in [*node.get("patternProperties", {}).values(), node.get("additionalProperties")]:
        if isinstance(value, dict):
            yield from _properties(value, schema, f"{path}.<name>", seen)
