"""Which values of the running config are secrets, gathered into the redactor for children's output.

Exec checks and healing commands print what they like; before their output is stored or
served it passes a ``Redactor`` that knows the API token, every secret field of the config
(webhook URLs, bearer tokens, HMAC keys) and the values of the environment variables the
config file referenced as ``${NAME}``, where secrets are meant to come from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from pydantic import BaseModel, SecretStr

from agent.config import AgentConfig
from exporters.redact import Redactor


def config_redactor(config: AgentConfig, environ: Mapping[str, str] | None = None) -> Redactor:
    """A redactor for everything ``config`` holds secret, reading variables from ``environ`` (the agent's)."""
    return Redactor(secret_values(config, os.environ if environ is None else environ))


def secret_values(config: AgentConfig, environ: Mapping[str, str]) -> list[str]:
    """The API token, the config's secret fields and the values of its ``${NAME}`` references."""
    values = [environ.get(config.api.token_env, "").strip(), _token_file(config.api.token_file)]
    values += (secret.get_secret_value() for secret in _secret_fields(config))
    values += (environ[name] for name in sorted(config.env_references) if name in environ)
    return [value for value in values if value]


def _token_file(path: str | None) -> str:
    if path is None:
        return ""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""  # the API reports an unreadable token file; here it just has nothing to redact


def _secret_fields(value: object) -> Iterator[SecretStr]:
    """Every ``SecretStr`` in a config tree of models, dicts and lists."""
    if isinstance(value, SecretStr):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_fields(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_fields(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secret_fields(item)
