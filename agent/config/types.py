"""Value types and the base class shared by every config section."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from agent.config.defaults import DEFAULT_PORT
from rules.durations import parse_duration


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration string such as 15s or 500ms, got {value!r}")
    return parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {"type": "string", "pattern": r"^(\d+(ms|s|m|h|d|w|y))+$", "examples": ["500ms", "15s", "5m"]}
    ),
]


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than 0s")
    return seconds


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


Regex = Annotated[str, AfterValidator(_regex)]


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:{DEFAULT_PORT}, got {value!r}")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
