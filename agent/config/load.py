"""Loading the config from YAML: every problem positioned (file, line, column), secrets never quoted."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, SecretStr, ValidationError

from agent.config.agent import AgentConfig
from rules.errors import SourceError, SourceIssue
from rules.yamlfile import Path as YamlPath
from rules.yamlfile import Positions, load_yaml, read_source

# ``${NAME}`` as load_yaml substitutes it; ``$$`` is a literal dollar and names nothing.
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    for secret in _secret_values(AgentConfig, data):
        positions.hide(secret, "<secret>")
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise SourceError(_issues(exc, positions)) from None
    config._env_references = frozenset(filter(None, (m.group(1) for m in _ENV_REFERENCE.finditer(text))))
    return config


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
    return sorted(set(issues), key=lambda i: (i.line, i.column, i.message))


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
