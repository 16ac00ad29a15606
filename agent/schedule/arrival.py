"""Evaluate on arrival: which jobs feed a rule group, and where on its interval the group runs.

A sidecar scrapes and evaluates in one process, so a group need not run at an unrelated phase
and read samples up to an interval old: its grid is placed just after the jobs whose series its
selectors read (``feeders``, ``placed_offset``), and at each tick it waits, within a bound, for
those still in flight to land. Evaluations stay on a fixed grid one interval apart, at timestamps
of that grid, as Prometheus evaluates; only the grid's place within the interval changes.

Which job writes which series follows from the job kinds and their metric names: the host job
writes ``node_*``, a process job ``healwatch_process_*``, a check job ``probe_*`` and
``healwatch_check_*`` (each labelled with its ``service``), a scrape job everything else its
service exposes, plus ``up`` and ``scrape_*``. The agent's own ``healwatch_*`` series and
``ALERTS`` come from no job.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import gcd

from rules.matchers import MatchOp
from rules.model import NAME_LABEL
from rules.promql.ast import Expr, VectorSelector, children

# How long after its feeders' grid point a group's tick comes: they are in flight by then.
ARRIVAL_LEAD_S = 0.005
# The longest a group waits for feeders in flight; never more than half its interval.
ARRIVAL_WAIT_MAX_S = 5.0

_JOB_PREFIXES = {"host": ("node_",), "process": ("healwatch_process_",), "check": ("probe_", "healwatch_check_")}
_NO_JOB_PREFIXES = ("healwatch_", "ALERTS")


def selectors(expr: Expr) -> Iterable[VectorSelector]:
    """Every vector selector inside ``expr`` (those of range selectors and subqueries included)."""
    if isinstance(expr, VectorSelector):
        yield expr
    for child in children(expr):
        yield from selectors(child)


def feeders(exprs: Iterable[Expr], job_names: Iterable[str], recorded: Iterable[str] = ()) -> frozenset[str]:
    """The jobs among ``job_names`` that write series the expressions select.

    A selector without a metric name may read any job's series; ``recorded`` names (written by
    the group's own recording rules) are fed by the group itself.
    """
    jobs = list(job_names)
    skip = frozenset(recorded)
    fed: set[str] = set()
    for expr in exprs:
        for selector in selectors(expr):
            if selector.name in skip:
                continue
            service = next((m.value for m in selector.matchers if m.name == "service" and m.op is MatchOp.EQ), None)
            name = selector.name if _names_one_metric(selector) else None
            fed.update(job for job in jobs if _writes(job, name, service))
    return frozenset(fed)


def _names_one_metric(selector: VectorSelector) -> bool:
    return selector.name is not None and sum(1 for m in selector.matchers if m.name == NAME_LABEL) == 1


def _writes(job: str, name: str | None, service: str | None) -> bool:
    """Whether ``job`` may write a series named ``name`` (None: any) with ``service`` (None: any)."""
    kind, _, subject = job.partition(":")
    if kind == "rules":
        return False
    if service and subject.split("/")[0] != service:  # host series carry no service label
        return False
    if name is None:
        return True
    if kind in _JOB_PREFIXES:
        return name.startswith(_JOB_PREFIXES[kind])
    if kind == "scrape":
        owned = (prefix for prefixes in _JOB_PREFIXES.values() for prefix in prefixes)
        return not name.startswith((*owned, *_NO_JOB_PREFIXES))
    return False


def placed_offset(interval_s: float, feeder_phases: Iterable[tuple[float, float]]) -> float | None:
    """The offset within ``interval_s`` just after the feeders' grid points, each ``(offset_s, interval_s)``.

    Of the places just after one feeder's grid point, the one where the stalest feeder is freshest
    wins; None without feeders. Exact when each feeder's interval and the group's divide one another.
    """
    phases = list(feeder_phases)
    if not phases:
        return None

    def period(feeder_interval_s: float) -> float:
        # The feeder's points seen from the group's grid repeat every gcd of the two intervals.
        return gcd(round(interval_s * 1000), round(feeder_interval_s * 1000)) / 1000 or interval_s

    def staleness(place: float) -> float:
        return max((place - offset) % period(every) for offset, every in phases)

    places = sorted({round(offset % period(every), 6) for offset, every in phases})
    best = min(places, key=staleness)
    return (best + ARRIVAL_LEAD_S) % interval_s


def wait_bound_s(interval_s: float) -> float:
    """How long a group's tick may wait for feeders in flight."""
    return min(interval_s / 2, ARRIVAL_WAIT_MAX_S)

