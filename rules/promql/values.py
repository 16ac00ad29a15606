"""Values flowing through evaluation, and the typed results the engine returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

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
    first and last timestamps, ``times()`` all of them (gathered when first asked for:
    most range functions need none).
    """

    __slots__ = ("labels", "drop_name", "values", "bounds", "first_t", "last_t", "_gather_times", "_times")

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
        self._gather_times = times
        self._times: np.ndarray | None = None

    @classmethod
    def of(
        cls, labels: list[Labels], times: list[np.ndarray], values: list[np.ndarray], drop_name: list[bool]
    ) -> RangeBatch:
        """The batch of series ``i`` with ``labels[i]``, ``times[i]`` and ``values[i]`` (each non-empty)."""
        return cls.read(
            labels, [(v, int(t[0]), int(t[-1])) for t, v in zip(times, values)], drop_name,
            lambda: np.concatenate(times) if times else np.empty(0, dtype=np.int64),
        )

    @classmethod
    def read(
        cls, labels: list[Labels], parts: list[tuple[np.ndarray, int, int]], drop_name: list[bool],
        times: Callable[[], np.ndarray],
    ) -> RangeBatch:
        """The batch of series ``i`` with ``labels[i]`` and ``parts[i]``: (values, first and last timestamps)."""
        bounds = np.zeros(len(labels) + 1, dtype=np.int64)
        np.cumsum([len(part[0]) for part in parts], out=bounds[1:])
        values = np.concatenate([part[0] for part in parts]) if parts else np.empty(0, dtype=np.float64)
        return cls(
            labels, drop_name, values, bounds, np.fromiter(map(itemgetter(1), parts), np.int64, len(parts)),
            np.fromiter(map(itemgetter(2), parts), np.int64, len(parts)), times,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def times(self) -> np.ndarray:
        """All timestamps (int64 ms), aligned with ``values``."""
        if self._times is None:
            self._times = self._gather_times()
        return self._times


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
