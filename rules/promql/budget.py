"""Bounds on one query's work: a sample budget and a deadline, as Prometheus bounds its queries.

Prometheus stops a query that would hold more than ``--query.max-samples`` samples
(errorType ``execution``) or that runs past ``--query.timeout`` (errorType
``timeout``). Here every sample a query copies out of the store, every point a
subquery step computes and every point of a range query's result is charged
to the budget; the deadline is checked at each charge, so one check lands at
least once per subquery or range step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rules.promql.errors import PromQLEvalError


class QueryLimitError(PromQLEvalError):
    """The query needs more samples than its budget allows."""

    def __init__(self) -> None:
        super().__init__("query processing would load too many samples into memory in query execution")


class QueryTimeoutError(PromQLEvalError):
    """The query ran past its deadline, or its caller gave up on it."""

    def __init__(self, stage: str = "query execution") -> None:
        super().__init__(f"query timed out in {stage}")


class QueryBudget:
    """How many more samples a query may charge, and until when it may run; None means unbounded."""

    __slots__ = ("remaining", "deadline", "clock", "cancelled")

    def __init__(
        self, max_samples: int | None = None, timeout_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.remaining = max_samples
        self.clock = clock
        self.deadline = None if timeout_s is None else clock() + timeout_s
        # Set from another thread (the caller went away); read at the next charge.
        self.cancelled = False

    def charge(self, samples: int) -> None:
        """Account for ``samples`` more; raise QueryLimitError or QueryTimeoutError when past a bound."""
        if self.remaining is not None:
            self.remaining -= samples
            if self.remaining < 0:
                raise QueryLimitError()
        if self.cancelled or self.deadline is not None and self.clock() > self.deadline:
            raise QueryTimeoutError()

    def ensure(self, samples: int) -> None:
        """Raise QueryLimitError now if ``samples`` more could never fit, before any of the work is done."""
        if self.remaining is not None and samples > self.remaining:
            raise QueryLimitError()

    def time_left(self) -> float | None:
        """Seconds until the deadline (possibly negative), or None without one."""
        return None if self.deadline is None else self.deadline - self.clock()
