"""Loading the config from YAML: every problem positioned (file, line, column), secrets never quoted.

The YAML is read as Prometheus reads its files (``rules.yamlfile``, Go's yaml.v3), and each value is
then decoded as Go decodes into a typed field: a string field takes the scalar's text (``name: 1.10``
is "1.10", ``label: yes`` is "yes"); an integer field takes Go's integers (``0x1F`` is 31); a boolean
field takes only true or false (also True, TRUE...; from ``${VAR}`` too), so ``yes``, ``on`` or ``1``
there is an error rather than a guess.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, SecretStr, ValidationError

from agent.config.agent import AgentConfig
from agent.config.timeintervals import NAMES_CONTEXT_KEY
from rules.errors import SourceError, SourceIssue
from rules.yamlfile import Path as YamlPath
from rules.yamlfile import Positions, load_yaml, read_source

# ``${NAME}`` as load_yaml substitutes it; ``$$`` is a literal dollar and names nothing.
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The words yaml.v3 reads as booleans; a string from ${VAR} may be one of them too.
_GO_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a config file; raise SourceError listing every problem."""
    return parse_config(read_source(path, "config"), str(path))


def parse_config(text: str, file: str) -> AgentConfig:
    """Validate config text; ``file`` names it in errors."""
    data, positions = load_yaml(text, file, substitute_env=True)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourceError([positions.issue((), "expected a mapping of settings at the top level")])
    decode_issues: list[SourceIssue] = []
    data = _go_decode(AgentConfig, data, (), positions, decode_issues)
    for secret in _secret_values(AgentConfig, data):
        positions.hide(secret, "<secret>")
    try:
        config = AgentConfig.model_validate(data, context={
            "config_dir": Path(file).parent, NAMES_CONTEXT_KEY: _interval_names(data.get("time_intervals"))})
    except ValidationError as exc:
        raise SourceError(_sorted(decode_issues + _issues(exc, positions))) from None
    if decode_issues:
        raise SourceError(_sorted(decode_issues))
    config._env_references = frozenset(filter(None, (m.group(1) for m in _ENV_REFERENCE.finditer(text))))
    return config


def _interval_names(entries: Any) -> frozenset[str]:
    """The names the file's time_intervals define, so a route or playbook naming another is an error at its line."""
    if not isinstance(entries, list):
        return frozenset()
    return frozenset(e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str))


def _go_decode(annotation: Any, value: Any, path: YamlPath, positions: Positions, issues: list[SourceIssue]) -> Any:
    """``value`` as Go's YAML decodes it into a field typed ``annotation`` (see the module's docstring)."""
    target, metadata = _target(annotation)
    if value is None or target is None:
        return value
    if target is bool:
        if isinstance(value, str) and value in _GO_BOOLS:
            return _GO_BOOLS[value]
        if not isinstance(value, bool):
            where = " -> ".join(str(part) for part in path)
            got = positions.redact(repr(positions.text(path, value) or value))
            issues.append(positions.issue(path, f"{where}: expected true or false, got {got}"))
        return value
    if isinstance(value, (bool, int, float)) and _takes_text(target, metadata):
        return positions.text(path, value)
    if isinstance(target, type) and issubclass(target, BaseModel) and isinstance(value, dict):
        fields = {field.alias or name: field for name, field in target.model_fields.items()}
        return {key: _go_decode(fields[key].annotation, item, path + (key,), positions, issues)
                if key in fields else item for key, item in value.items()}
    origin, args = typing.get_origin(target), typing.get_args(target)
    if origin is dict and isinstance(value, dict):
        return {key: _go_decode(args[1], item, path + (key,), positions, issues) for key, item in value.items()}
    if origin is list and isinstance(value, list):
        return [_go_decode(args[0], item, path + (index,), positions, issues) for index, item in enumerate(value)]
    return value


def _target(annotation: Any) -> tuple[Any, list[Any]]:
    """The type a field holds, without Annotated and Optional, with the Annotated metadata; None for a union."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            metadata.extend(annotation.__metadata__)
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return None, metadata  # int | str and the like: the value's own type chooses
            annotation = members[0]
        else:
            return annotation, metadata


def _takes_text(target: Any, metadata: list[Any]) -> bool:
    """Whether a field reads a string: str, secrets, string Literals, or a type parsed from text (durations)."""
    if target in (str, SecretStr) or any(isinstance(item, BeforeValidator) for item in metadata):
        return True
    return typing.get_origin(target) is Literal and all(isinstance(arg, str) for arg in typing.get_args(target))


def _sorted(issues: list[SourceIssue]) -> list[SourceIssue]:
    return sorted(set(issues), key=lambda i: (i.line, i.column, i.message))


def _secret_values(annotation: Any, value: Any) -> Iterator[str]:
    """The strings in ``value`` that the schema ``annotation`` reads into SecretStr fields."""
    annotation = _unwrap(annotation)
    if annotation is SecretStr:
        if isinstance(value, str):
            yield value
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        for key, item in value.items():
            field = annotation.model_fields.get(str(key))
            if field is not None:
                yield from _secret_values(field.annotation, item)
    elif typing.get_origin(annotation) is dict and isinstance(value, dict):
        for item in value.values():
            yield from _secret_values(typing.get_args(annotation)[-1], item)
    elif typing.get_origin(annotation) is list and isinstance(value, list):
        for item in value:
            yield from _secret_values(typing.get_args(annotation)[0], item)


def _issues(exc: ValidationError, positions: Positions) -> list[SourceIssue]:
    """Positioned issues; values from the environment and secret fields are named, never quoted."""
    issues = []
    for error in exc.errors(include_url=False):
        loc: YamlPath = tuple(error["loc"])
        where = " -> ".join(str(part) for part in loc) or "top level"
        if error["type"] == "extra_forbidden":
            message = f"{where}: unknown key {loc[-1]!r}{_did_you_mean(loc)}"
            issues.append(positions.issue(loc, message, at_key=True))
            continue
        message = positions.redact(error["msg"].removeprefix("Value error, "))
        if error["type"] == "missing":
            message = f"missing required key {loc[-1]!r}"
        issues.append(positions.issue(loc, f"{where}: {message}"))
    return issues


def _did_you_mean(loc: YamlPath) -> str:
    model = _model_at(AgentConfig, loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(model.model_fields)})"


def _model_at(annotation: Any, loc: YamlPath) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc``, following dicts, lists and Optionals."""
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = members[0]
        else:
            return annotation
