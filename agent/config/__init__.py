"""The agent's config file: one schema module per section, loading, and the reference generator.

This package is the public face: import the config and the section models from here
(``from agent.config import AgentConfig, parse_config``); the modules behind it are
named for the section they hold (``services``, ``host``, ``store``, ``evaluation``,
``api``, ``notify``, ``healing``), ``agent`` for the whole file and ``load`` for reading it.
"""

from agent.config.agent import DEFAULT_LISTEN, AgentConfig
from agent.config.api import ApiConfig, TlsConfig
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
