"""The routing tree: which receivers an alert goes to, grouped how, on which timers.

Semantics and defaults are Alertmanager's (``dispatch/route.go``): a child route
inherits its parent's options unless it sets them, matching is depth-first and
left to right, the first matching child stops the search unless it has
``continue``, and a route none of whose children match is itself the match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from exporters.matchers import format_matchers, matches_all, sort_matchers
from rules.matchers import Matcher

GROUP_BY_ALL = "..."
DEFAULT_GROUP_WAIT_S = 30.0
DEFAULT_GROUP_INTERVAL_S = 300.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0


@dataclass(frozen=True)
class RouteOptions:
    """The settings a route applies to its alert groups (Alertmanager's ``RouteOpts``)."""

    receiver: str
    group_by: frozenset[str] = frozenset()
    group_by_all: bool = False
    group_wait_s: float = DEFAULT_GROUP_WAIT_S
    group_interval_s: float = DEFAULT_GROUP_INTERVAL_S
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S
    resolve_wait_s: float | None = None
    # Names of time intervals; unlike the rest, set per route and not inherited (as in Alertmanager).
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()

    @property
    def effective_repeat_s(self) -> float:
        """The repeat interval rounded up to a multiple of the group interval: groups flush only on that beat."""
        return math.ceil(self.repeat_interval_s / self.group_interval_s) * self.group_interval_s


@dataclass(frozen=True)
class RouteSpec:
    """One route as configured; ``None`` means "inherit from the parent" (or the default at the root)."""

    receiver: str | None = None
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] | None = None
    group_wait_s: float | None = None
    group_interval_s: float | None = None
    repeat_interval_s: float | None = None
    resolve_wait_s: float | None = None
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    continue_: bool = False
    routes: tuple[RouteSpec, ...] = ()


@dataclass(eq=False)
class Route:
    """A node of the routing tree with its resolved (inherited) options."""

    options: RouteOptions
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    parent: Route | None = field(default=None, repr=False)
    routes: list[Route] = field(default_factory=list)

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` is sent through; empty if this route does not match."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def key(self) -> str:
        """Alertmanager's route key: the parent's key, ``/``, then this route's sorted matchers."""
        own = format_matchers(self.matchers)
        return own if self.parent is None else f"{self.parent.key()}/{own}"

    def id(self) -> str:
        """The key plus the position among its siblings, which tells apart siblings with equal matchers."""
        if self.parent is None:
            return self.key()
        position = next(i for i, sibling in enumerate(self.parent.routes) if sibling is self)
        return f"{self.key()}/{position}"

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels an alert's group is keyed by: those in ``group_by``, or all with ``...``."""
        if self.options.group_by_all:
            return dict(labels)
        return {k: v for k, v in labels.items() if k in self.options.group_by}

    def walk(self) -> list[Route]:
        """This route and all below it, depth first."""
        return [self, *(r for child in self.routes for r in child.walk())]


def build_route(spec: RouteSpec, parent: Route | None = None) -> Route:
    """The routing tree of ``spec``: options inherited from ``parent``, matchers sorted as Alertmanager does."""
    if parent is None:
        if not spec.receiver:
            raise ValueError("the root route needs a receiver")
        if spec.matchers:
            raise ValueError("the root route must not have matchers")
        if spec.continue_:
            raise ValueError("the root route cannot have continue")
        if spec.mute_time_intervals or spec.active_time_intervals:
            raise ValueError("the root route must not have mute or active time intervals")
        options = RouteOptions(receiver=spec.receiver)
    else:
        options = parent.options
    options = _apply(options, spec)
    route = Route(options, tuple(sort_matchers(spec.matchers)), spec.continue_, parent)
    route.routes = [build_route(child, route) for child in spec.routes]
    return route


def _apply(options: RouteOptions, spec: RouteSpec) -> RouteOptions:
    changes: dict[str, object] = {
        "mute_time_intervals": spec.mute_time_intervals, "active_time_intervals": spec.active_time_intervals,
    }
    if spec.receiver:
        changes["receiver"] = spec.receiver
    if spec.group_by is not None:
        if GROUP_BY_ALL in spec.group_by:
            if len(spec.group_by) > 1:
                raise ValueError("group_by cannot have '...' and other labels at the same time")
            changes.update(group_by=frozenset(), group_by_all=True)
        else:
            changes.update(group_by=frozenset(spec.group_by), group_by_all=False)
    for name in ("group_wait_s", "group_interval_s", "repeat_interval_s", "resolve_wait_s"):
        value = getattr(spec, name)
        if value is not None:
            if name in ("group_interval_s", "repeat_interval_s") and value <= 0:
                raise ValueError(f"{name.removesuffix('_s')} must be greater than 0s")
            if value < 0:
                raise ValueError(f"{name.removesuffix('_s')} must not be negative")
            changes[name] = value
    return replace(options, **changes)  # type: ignore[arg-type]
