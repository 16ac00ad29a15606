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
    def of(
        cls, labels: list[Labels], times: list[np.ndarray], values: list[np.ndarray], drop_name: list[bool]
    ) -> RangeBatch:
        """The batch of series ``i`` with ``labels[i]``, ``times[i]`` and ``values[i]`` (each non-empty)."""
        bounds = np.zeros(len(labels) + 1, dtype=np.int64)
        np.cumsum([len(v) for v in values], out=bounds[1:])
        concatenated: list[np.ndarray] = []

        def all_times() -> np.ndarray:
            if not concatenated:
                concatenated.append(np.concatenate(times) if times else np.empty(0, dtype=np.int64))
            return concatenated[0]

        return cls(
            labels, drop_name, np.concatenate(values) if values else np.empty(0, dtype=np.float64), bounds,
            np.fromiter(map(itemgetter(0), times), np.int64, len(times)),
            np.fromiter(map(itemgetter(-1), times), np.int64, len(times)),
            all_times,
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
