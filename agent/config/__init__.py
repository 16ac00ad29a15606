"""The agent's config file: one schema module per section, loading, and the reference generator.

This package is the public face: import the config and the section models from here
(``from agent.config import AgentConfig, parse_config``); the modules behind it are
named for the section they hold (``services``, ``host``, ``store``, ``evaluation``,
``api``, ``notify``, ``healing``), ``agent`` for the whole file, ``load`` for reading it
and ``defaults`` for the default address.

Each name is imported on first use (PEP 562), so ``DEFAULT_LISTEN`` costs the remote
commands nothing while the schema (pydantic) is loaded only by what validates a config.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.agent import AgentConfig
    from agent.config.api import ApiConfig, TlsConfig
    from agent.config.defaults import DEFAULT_LISTEN
    from agent.config.evaluation import EvaluationConfig
    from agent.config.host import HostConfig
    from agent.config.load import load_config, parse_config
    from agent.config.notify import NotifyConfig, ReceiverConfig
    from agent.config.services import (
        CheckConfig,
        ExecProbe,
        HttpProbe,
        ProcessMatch,
        ScrapeConfig,
        ServiceConfig,
    )
    from agent.config.store import StoreConfig

_HOMES = {
    "DEFAULT_LISTEN": "defaults",
    "AgentConfig": "agent",
    "ApiConfig": "api",
    "TlsConfig": "api",
    "EvaluationConfig": "evaluation",
    "HostConfig": "host",
    "load_config": "load",
    "parse_config": "load",
    "NotifyConfig": "notify",
    "ReceiverConfig": "notify",
    "CheckConfig": "services",
    "ExecProbe": "services",
    "HttpProbe": "services",
    "ProcessMatch": "services",
    "ScrapeConfig": "services",
    "ServiceConfig": "services",
    "StoreConfig": "store",
}

__all__ = [
    "DEFAULT_LISTEN",
    "AgentConfig",
    "ApiConfig",
    "CheckConfig",
    "EvaluationConfig",
    "ExecProbe",
    "HostConfig",
    "HttpProbe",
    "NotifyConfig",
    "ProcessMatch",
    "ReceiverConfig",
    "ScrapeConfig",
    "ServiceConfig",
    "StoreConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    """Import the module that holds ``name`` the first time it is asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
