"""The config reference in Markdown, generated from the config's JSON Schema (``healwatch schema --markdown``).

Every section gets a heading named by its path (``services.<name>.checks[].http``) and a table of its keys
with type, default and description; durations are shown as duration strings (``15s``), as they are written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

from agent.config.types import Duration
from rules.durations import format_duration

# The pattern the Duration type puts in the schema marks a value as a duration, wherever it is nested.
DURATION_PATTERN: str = next(
    meta.json_schema["pattern"] for meta in get_args(Duration)[1:] if hasattr(meta, "json_schema")
)
HEADER = """# healwatch config reference

Generated from the config schema by `healwatch schema --markdown`; do not edit by hand
(`tests/unit/test_configref.py` fails when this file and the schema differ). Durations are
Prometheus-style strings (`500ms`, `15s`, `5m`, `1h30m`); `${NAME}` in any string takes the
environment variable `NAME`. A key without a default is required; "unset" means the feature
is off or inherited until the key is given.
"""


@dataclass(frozen=True)
class _Section:
    path: str  # where it sits in the file, e.g. ``services.<name>.checks[]``
    ref: str  # its name under ``$defs``
    depth: int  # 0 for a top-level section
    defaults: dict[str, Any]  # the parent's default for it: holds values built by default factories


def markdown_reference(schema: dict[str, Any]) -> str:
    """The whole reference: the top-level keys, then every nested section depth-first in schema order."""
    defs: dict[str, Any] = schema.get("$defs", {})
    parts = [HEADER, "## Top level\n", _table(schema)]
    documented: dict[str, str] = {}
    pending = list(_children(schema, None))
    while pending:
        section = pending.pop(0)
        model = defs[section.ref]
        parts.append(f"{'#' * min(2 + section.depth, 6)} `{section.path}`\n")
        if section.ref in documented:
            parts.append(f"The same keys as `{documented[section.ref]}`.\n")
            continue
        documented[section.ref] = section.path
        if model.get("description"):
            parts.append(_one_line(model["description"]) + "\n")
        parts.append(_table(model, section.defaults) if model.get("properties") else "No keys: write `{}`.\n")
        # Depth-first: a section's own subsections come right after it.
        pending[:0] = list(_children(model, section))
    return "\n".join(parts)


def _children(model: dict[str, Any], parent: _Section | None) -> Iterator[_Section]:
    for key, prop in model.get("properties", {}).items():
        found = _section_ref(prop)
        if found is None:
            continue
        ref, suffix = found
        path = f"{key}{suffix}" if parent is None else f"{parent.path}.{key}{suffix}"
        default = prop.get("default", parent.defaults.get(key) if parent is not None else None)
        yield _Section(path, ref, 0 if parent is None else parent.depth + 1, default if isinstance(default, dict) else {})


def _section_ref(prop: dict[str, Any]) -> tuple[str, str] | None:
    """The section a key holds (directly, optionally, as list items or map values) and its path suffix."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1], ""
    for member in prop.get("anyOf", []):
        found = _section_ref(member)
        if found is not None:
            return found
    if "items" in prop:
        found = _section_ref(prop["items"])
        return None if found is None else (found[0], "[]" + found[1])
    for value in [*prop.get("patternProperties", {}).values(), prop.get("additionalProperties")]:
        if isinstance(value, dict):
            found = _section_ref(value)
            if found is not None:
                return found[0], ".<name>" + found[1]
    return None


def _table(model: dict[str, Any], inherited: dict[str, Any] | None = None) -> str:
    """One row per key; a key without a default of its own takes the one its section's default holds."""
    required = set(model.get("required", []))
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, prop in model.get("properties", {}).items():
        if "default" not in prop and inherited and key in inherited:
            prop = {**prop, "default": inherited[key]}
        default = "required" if key in required else _default(prop)
        described = [prop, *prop.get("anyOf", [])]  # an optional key's description may sit in its anyOf member
        description = next((d["description"] for d in described if d.get("description")), "")
        cells = [f"`{key}`", _type(prop), default, _one_line(description)]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return "section"
    if _is_duration(prop):
        return "duration" + _bounds(prop)
    if "anyOf" in prop:
        return " or ".join(_type(member) for member in prop["anyOf"] if member.get("type") != "null")
    if "enum" in prop:
        return "one of " + ", ".join(f"`{value}`" for value in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type")
    if kind == "array":
        least = {0: "", 1: "non-empty "}.get(prop.get("minItems", 0), f"at least {prop.get('minItems')} items: ")
        return f"{least}list of {_plural(_type(prop.get('items', {})))}"
    if kind == "object":
        values = [*prop.get("patternProperties", {}).values(), prop.get("additionalProperties")]
        value = next((v for v in values if isinstance(v, dict)), None)
        key = "name" if prop.get("patternProperties") else "string"
        return "mapping" if value is None else f"map of {key} → {_type(value)}"
    if kind == "string" and prop.get("format") == "password":
        return "secret string"
    if kind == "string" and "pattern" in prop:
        return f"string matching `{prop['pattern']}`"
    non_empty = "non-empty " if prop.get("minLength") == 1 else ""
    return non_empty + {"integer": "integer", "number": "number", "boolean": "boolean", "string": "string"}.get(
        str(kind), "any"
    ) + _bounds(prop)


def _plural(text: str) -> str:
    """``non-empty string`` -> ``non-empty strings``: the first type noun of a simple type takes the plural."""
    if "list of" in text or "map of" in text or text.startswith(("one of", "`")):
        return text
    for noun in _NOUNS:
        if noun in text:
            return text.replace(noun, noun + "s", 1)
    return text


_NOUNS = ("string", "integer", "number", "boolean", "duration", "section")


def _bounds(prop: dict[str, Any]) -> str:
    words = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in prop:
            words.append(f"{sign} {prop[key]}")
    if prop.get("minLength", 0) > 1:
        words.append(f"of at least {prop['minLength']} characters")
    return (" " + ", ".join(words)) if words else ""


def _is_duration(prop: dict[str, Any]) -> bool:
    return prop.get("pattern") == DURATION_PATTERN or any(_is_duration(m) for m in prop.get("anyOf", []))


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return "required"
    value = prop["default"]
    if value is None:
        return "unset"
    if _section_ref(prop) is not None and isinstance(value, dict):
        return "see below"
    if _is_duration(prop) and isinstance(value, (int, float)):
        return f"`{format_duration(float(value))}`"
    if value == [] or value == {}:
        return "empty"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _one_line(text: str) -> str:
    return " ".join(text.split())
