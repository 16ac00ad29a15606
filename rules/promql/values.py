"""Values flowing through evaluation, and the typed results the engine returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rules.model import Labels


class Sample:
    """One element of an instant vector; ``drop_name`` delays removing ``__name__`` (Prometheus 3)."""

    __slots__ = ("labels", "value", "drop_name")

    def __init__(self, labels: Labels, value: float, drop_name: bool = False) -> None:
        self.labels = labels
        self.value = value
        self.drop_name = drop_name

    def __repr__(self) -> str:
        return f"Sample({self.labels!s}, {self.value})"


class RangeSeries:
    """One series of a range vector: int64 ms timestamps and float64 values (may be views)."""

    __slots__ = ("labels", "t", "v", "drop_name")

    def __init__(self, labels: Labels, t: np.ndarray, v: np.ndarray, drop_name: bool = False) -> None:
        self.labels = labels
        self.t = t
        self.v = v
        self.drop_name = drop_name


class RangeBatch:
    """A range vector in one piece: series ``i`` has ``labels[i]`` and samples ``bounds[i]:bounds[i + 1]``.

    Every series holds at least one sample; ``first_t`` and ``last_t`` are each series'
    first and last timestamps, ``times()`` all of them (concatenated when first asked for).
    """

    __slots__ = ("labels", "drop_name", "values", "bounds", "first_t", "last_t", "_times")

    def __init__(
        self, labels: list[Labels], drop_name: list[bool], values: np.ndarray, bounds: np.ndarray,
        first_t: np.ndarray, last_t: np.ndarray, times: Callable[[], np.ndarray],
    ) -> None:
        self.labels = labels
        self.drop_name = drop_name
        self.values = values
        self.bounds = bounds
        self.first_t = first_t
        self.last_t = last_t
        self._times = times

    @classmethod
    def of(cls, series: list[RangeSeries]) -> RangeBatch:
        """The batch holding ``series`` (each with at least one sample), in order."""
        bounds = np.zeros(len(series) + 1, dtype=np.int64)
        np.cumsum([len(s.v) for s in series], out=bounds[1:])
        times = np.concatenate([s.t for s in series]) if series else np.empty(0, dtype=np.int64)
        values = np.concatenate([s.v for s in series]) if series else np.empty(0, dtype=np.float64)
        return cls(
            [s.labels for s in series], [s.drop_name for s in series], values, bounds,
            times[bounds[:-1]], times[bounds[1:] - 1], lambda: times,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def times(self) -> np.ndarray:
        """All timestamps (int64 ms), aligned with ``values``."""
        return self._times()


@dataclass(frozen=True)
class ScalarResult:
    value: float


@dataclass(frozen=True)
class StringResult:
    value: str


@dataclass(frozen=True)
class VectorResult:
    """An instant vector, in the order Prometheus would return it."""

    samples: list[tuple[Labels, float]]


@dataclass(frozen=True)
class MatrixResult:
    """Series of (timestamp ms, value) points, sorted by labels."""

    series: list[tuple[Labels, list[tuple[int, float]]]]


Result = ScalarResult | StringResult | VectorResult | MatrixResult
