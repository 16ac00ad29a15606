"""Values flowing through evaluation, and the typed results the engine returns."""

from __future__ import annotations

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
