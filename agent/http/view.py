"""What the HTTP handlers may read of the agent and do to it: narrow protocols the daemon's Agent satisfies.

The handlers see these, never the Agent itself, so ``agent.http`` does not import the daemon
and does not know how the daemon keeps its jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from agent.collectors.process import ProcessTracker
from agent.collectors.scrape import ScrapeResult
from agent.config import AgentConfig
from agent.health.checks import Check
from agent.notifying import ReceiverAnswers
from exporters.silences import Silences
from healers.backends.base import ActionResult
from healers.journal import Journal
from healers.runner import RunResult
from rules.group import RuleGroup
from rules.promql import Engine
from rules.store import SeriesStore


class QueryView(Protocol):
    """What PromQL queries read: the store, the engine, the clock and the API's query bounds."""

    @property
    def config(self) -> AgentConfig: ...
    @property
    def store(self) -> SeriesStore: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def clock(self) -> Callable[[], float]: ...


class AgentView(QueryView, Protocol):
    """The reads: config and rule load state, services with their checks, process and scrape, rules and alerts,
    the healing journal."""

    @property
    def config_path(self) -> str | None: ...
    @property
    def config_errors(self) -> list[str]: ...
    @property
    def rule_files(self) -> list[str]: ...
    @property
    def rule_errors(self) -> list[str]: ...
    @property
    def started_at(self) -> float: ...

    def ready(self, service: str | None) -> bool | None: ...
    def in_maintenance(self, service: str) -> bool: ...
    def rule_groups(self) -> list[RuleGroup]: ...
    def service_checks(self, service: str) -> list[Check]: ...
    def service_process(self, service: str) -> ProcessTracker | None:
        """The tracker of the service's process; None when the service names no process."""
    def last_scrape(self, service: str) -> ScrapeResult | None:
        """The service's latest scrape; None before the first one, or when it is not scraped."""
    def journal(self) -> Journal | None:
        """The healing journal; None until healing has started."""


class HealingControl(Protocol):
    """The operator's healing actions on one service."""

    @property
    def journal(self) -> Journal: ...

    async def heal_now(self, service: str, *, dry_run: bool = False, playbook: str | None = None) -> RunResult: ...
    def reset(self, service: str) -> None: ...
    async def set_traffic(self, service: str, cut: bool) -> ActionResult: ...


class ReceiverTester(Protocol):
    """Test notifications through the real delivery path (the outbox included)."""

    async def test_receiver(self, name: str, labels: Mapping[str, str]) -> list[ReceiverAnswers]: ...


class AgentActions(Protocol):
    """The mutations: reload, maintenance, healing actions and silences."""

    def reload(self) -> list[str]:
        """Re-read the config and rule files; the errors, if any, with the running config kept."""
    def set_maintenance(self, service: str, on: bool) -> None: ...
    def healing_control(self) -> HealingControl | None:
        """Heal now, reset, traffic; None until healing has started."""
    def silences(self) -> Silences | None:
        """The silences, to list, add and expire; None until notifications have started."""
    def receiver_tester(self) -> ReceiverTester | None:
        """Test sends to receivers; None until notifications have started."""


class AgentApi(AgentView, AgentActions, Protocol):
    """Everything the JSON API needs."""
