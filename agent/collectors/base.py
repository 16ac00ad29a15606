"""The collector contract: a named source of metric families, collected at a given time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client.core import Metric

from rules.model import Labels


class Collector(Protocol):
    """Something that reports metric families; ``collect`` must not block for long."""

    name: str

    def collect(self, now: float) -> list[Metric]:
        """Families observed at ``now`` (seconds since the epoch)."""
        ...


def samples_of(families: Iterable[Metric]) -> Iterator[tuple[Labels, float]]:
    """Every sample of ``families`` as (series labels, value), ready for the store."""
    for family in families:
        for sample in family.samples:
            yield Labels.of(sample.name, sample.labels), float(sample.value)
