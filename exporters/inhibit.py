"""Inhibition: a firing source alert mutes target alerts that share its ``equal`` labels.

Semantics are Alertmanager's (``inhibit/inhibit.go``): only firing source alerts
inhibit; a label missing on both sides counts as equal (both are empty); and when
an alert matches both the source and the target side of a rule, alerts that also
match both sides are disregarded, so an alert never inhibits itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporters.matchers import matches_all
from exporters.notification import AlertPayload
from rules.matchers import Matcher


@dataclass(frozen=True)
class InhibitRule:
    """Source alerts matching ``source_matchers`` mute targets matching ``target_matchers`` with equal ``equal`` labels."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def equal_values(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(name, "") for name in self.equal)


# A firing source alert: its fingerprint, and whether it also matches the rule's target side.
_Source = tuple[str, bool]


class Inhibition:
    """Which alerts the firing alerts of one moment inhibit; built by ``Inhibitor.at``."""

    def __init__(self, rules: Sequence[InhibitRule], sources: list[dict[tuple[str, ...], list[_Source]]]) -> None:
        self._rules = rules
        self._sources = sources

    def inhibited_by(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """Fingerprints of the alerts inhibiting an alert with ``labels``; empty if it is not inhibited."""
        found: list[str] = []
        for rule, index in zip(self._rules, self._sources):
            if not index or not matches_all(rule.target_matchers, labels):
                continue
            two_sided = matches_all(rule.source_matchers, labels)
            found.extend(fp for fp, also_target in index.get(rule.equal_values(labels), ()) if not (two_sided and also_target))
        return tuple(dict.fromkeys(found))


class Inhibitor:
    """The inhibition rules; ``at`` indexes the firing source alerts of one moment."""

    def __init__(self, rules: Iterable[InhibitRule] = ()) -> None:
        self.rules = tuple(rules)

    def at(self, alerts: Iterable[AlertPayload], now: float) -> Inhibition:
        """The inhibition that the alerts firing at ``now`` cause."""
        indexes: list[dict[tuple[str, ...], list[_Source]]] = [{} for _ in self.rules]
        if self.rules:
            for alert in alerts:
                if alert.status(now) != "firing":
                    continue
                for rule, index in zip(self.rules, indexes):
                    if matches_all(rule.source_matchers, alert.labels):
                        also_target = matches_all(rule.target_matchers, alert.labels)
                        index.setdefault(rule.equal_values(alert.labels), []).append((alert.fingerprint, also_target))
        return Inhibition(self.rules, indexes)
