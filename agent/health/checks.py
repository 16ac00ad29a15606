"""Health checks: a probe run repeatedly and thresholded into healthy or unhealthy, as Kubernetes does.

Semantics are those of a Kubernetes *liveness* probe:

- A check starts healthy and stays healthy until ``failure_threshold`` consecutive probes
  fail; it turns healthy again after ``success_threshold`` consecutive successes.
- No probe runs before ``started_at + initial_delay``. While starting, the check reports
  ``healwatch_check_healthy 1`` (presumed alive, so nothing alerts or heals during a slow
  start) and no ``probe_*`` samples at all: ``absent(probe_success{...})`` means "not probed yet".
- With ``failures_within: {count, window}`` (Monit's "N failures within M cycles") the check also
  turns unhealthy when ``count`` of the latest ``window`` runs failed, consecutive or not, and
  turns healthy again only after ``window - count + 1`` successes in a row (at least
  ``success_threshold``), so a 1-0-1-0 service stays unhealthy instead of flapping.
- Every crossing of a threshold emits one ``CheckStateChanged`` through ``on_change``.
- A run the agent itself could not make (out of descriptors, memory or processes) is neither a
  success nor a failure: the state and the last result stay as they were, so the agent's own
  exhaustion never heals a healthy service; ``healwatch_check_errors_total`` counts such runs.

Roles are those of Kubernetes' probes (``role``): a liveness check's failure heals, a readiness check
decides readiness, ``both`` (the default) does both. A ``startup`` check and the service's other
checks share a ``StartupGate``: after every start of the process (a new one seen) the counts start
over and only the startup check runs, until it first succeeds; failing ``failure_threshold`` times in
a row meanwhile (the startupProbe's ``failureThreshold x periodSeconds`` budget) turns it unhealthy,
which heals as a liveness failure does.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.health.probes import Probe, ProbeResult
from agent.config import CheckConfig
from healers.backends.children import agent_side_errno
from healers.events import CheckStateChanged

log = structlog.get_logger(__name__)

_LABELS = ["service", "check"]


class StartupGate:
    """A service's startup check holds its other checks back after every start of its process."""

    def __init__(self, start_of: Callable[[], Awaitable[object | None]]) -> None:
        """``start_of`` names the process running now (any value that changes with each start), None when none runs.

        ``checks`` are all the service's checks, the startup check among them; the builder sets both.
        """
        self.checks: list[Check] = []
        self.start_of = start_of
        self._start: object | None = None

    @property
    def passed(self) -> bool:
        """The startup check has succeeded since the process last started."""
        return all(check.recovered() for check in self.checks if check.config.role == "startup")

    async def admits(self, check: Check) -> bool:
        """Whether ``check`` probes now: the startup check until it passes, the others after."""
        start = await self.start_of()
        if start is not None and start != self._start:
            if self._start is not None:
                log.info("service_restarted", service=check.service, checks=[c.name for c in self.checks])
            self._start = start
            for each in self.checks:
                each.restarted()
        return (check.config.role == "startup") != self.passed


class Check:
    """One service's check: runs its probe when asked and keeps the thresholded state."""

    def __init__(
        self,
        service: str,
        config: CheckConfig,
        probe: Probe,
        on_change: Callable[[CheckStateChanged], None],
        *,
        started_at: float | None = None,
        redact: Callable[[str], str] = str,
        gate: StartupGate | None = None,
    ) -> None:
        """``started_at`` anchors ``initial_delay``; when None, the first ``run(now)`` is the start.

        ``redact`` scrubs each probe's error (an exec check quotes its output) before it is kept or reported;
        ``gate`` is the service's startup gate when it has a startup check.
        """
        self.service = service
        self.config = config
        self.started_at = started_at
        self.healthy = True
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.last_result: ProbeResult | None = None
        self.runs_total = {"success": 0, "failure": 0}
        self.agent_errors_total: dict[str, int] = {}  # by errno name
        self.agent_error = ""  # why the latest run could not probe; "" once a probe ran again
        self.probed = False  # a probe ran since the agent or, with a startup gate, the process started
        self._probe = probe
        self._on_change = on_change
        self._redact = redact
        self._gate = gate
        window = config.failures_within.window if config.failures_within is not None else 0
        self._recent: deque[bool] = deque(maxlen=window)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def interval_s(self) -> float:
        return self.config.interval

    @property
    def liveness(self) -> bool:
        """Its failure heals (``healers.health.HealthCheck``)."""
        return self.config.liveness

    def recovered(self) -> bool:
        """The last probe succeeded and ``success_threshold`` probes in a row did (what ``wait_healthy`` waits for)."""
        result = self.last_result
        return result is not None and result.success and self.consecutive_successes >= self.config.success_threshold

    def failure(self) -> str:
        """Why the check is not passing: the last probe's error, or that it has not probed yet."""
        return self.last_result.error if self.last_result is not None else "not probed yet"

    def restarted(self) -> None:
        """The process started again: the consecutive counts and readiness start over, the state stays."""
        self.consecutive_failures = self.consecutive_successes = 0
        self._recent.clear()
        self.probed = False

    def starting(self, now: float) -> bool:
        """True while ``now`` is before the end of the initial delay."""
        return self.started_at is None or now < self.started_at + self.config.initial_delay

    async def run(self, now: float) -> ProbeResult | None:
        """Probe once and update the state; None (no probe) during the initial delay or while the gate is shut."""
        if self.started_at is None:
            self.started_at = now
        if self.starting(now) or (self._gate is not None and not await self._gate.admits(self)):
            return None
        began = time.monotonic()
        try:
            result = await self._probe()
        except Exception as exc:
            # A probe bug must not stop the check: it counts as a failed probe, unless the agent ran out of something.
            log.exception("probe_crashed", service=self.service, check=self.name)
            reason = f"probe crashed: {type(exc).__name__}"
            result = ProbeResult(False, time.monotonic() - began, None, reason, agent_side_errno(exc))
        if result.error:
            result = replace(result, error=self._redact(result.error), output=self._redact(result.output))
        if result.agent_error:
            self._agent_failed(result)
            return result
        self.agent_error = ""
        self.probed = True
        self.last_result = result
        self.runs_total["success" if result.success else "failure"] += 1
        self._advance(result, now)
        return result

    def _agent_failed(self, result: ProbeResult) -> None:
        """Count and log a run the agent could not make; thresholds and the last result are left alone."""
        reason = result.agent_error
        self.agent_errors_total[reason] = self.agent_errors_total.get(reason, 0) + 1
        self.agent_error = f"{reason}: {result.error}"
        log.warning("check_not_run", service=self.service, check=self.name, reason=reason, error=result.error)

    def _advance(self, result: ProbeResult, now: float) -> None:
        self._recent.append(result.success)
        if result.success:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if not self.healthy and self.consecutive_successes >= self._successes_to_recover():
                self._turn(True, now, "")
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.healthy and (self.consecutive_failures >= self.config.failure_threshold or self._flapping()):
                self._turn(False, now, result.error)

    def _successes_to_recover(self) -> int:
        """success_threshold in a row; with failures_within, also enough to push the window below its count."""
        within = self.config.failures_within
        if within is None:
            return self.config.success_threshold
        return max(self.config.success_threshold, within.window - within.count + 1)

    def _flapping(self) -> bool:
        """``failures_within``: too many failures among the latest runs, consecutive or not."""
        within = self.config.failures_within
        return within is not None and self._recent.count(False) >= within.count

    def _turn(self, healthy: bool, now: float, reason: str) -> None:
        self.healthy = healthy
        event = CheckStateChanged(self.service, self.name, healthy=healthy, at=now, reason=reason,
                                  liveness=self.config.liveness)
        # The one line per transition: a failure is worth a warning, a recovery is news.
        (log.info if healthy else log.warning)(
            "check_state_changed", service=self.service, check=self.name, healthy=healthy, reason=reason
        )
        try:
            self._on_change(event)
        except Exception:
            # A listener's bug must not corrupt the state machine or stop other checks.
            log.exception("check_listener_failed", service=self.service, check=self.name)

    def families(self) -> list[Metric]:
        """The check's metrics: blackbox_exporter-style ``probe_*`` plus thresholded state and run counts."""
        key = [self.service, self.name]
        healthy = GaugeMetricFamily(
            "healwatch_check_healthy", "1 while the thresholded check is healthy, else 0.", labels=_LABELS
        )
        healthy.add_metric(key, 1.0 if self.healthy else 0.0)
        runs = CounterMetricFamily(
            "healwatch_check_runs", "Probe runs by result.", labels=[*_LABELS, "result"]
        )
        for outcome, count in self.runs_total.items():
            runs.add_metric([*key, outcome], count)
        errors = CounterMetricFamily(
            "healwatch_check_errors",
            "Runs the agent could not make for want of its own resources (descriptors, memory, processes).",
            labels=[*_LABELS, "reason"],
        )
        for reason, count in sorted(self.agent_errors_total.items()):
            errors.add_metric([*key, reason], count)
        families: list[Metric] = [healthy, runs, errors]
        result = self.last_result
        if result is None:
            return families
        success = GaugeMetricFamily("probe_success", "1 if the last probe succeeded, else 0.", labels=_LABELS)
        success.add_metric(key, 1.0 if result.success else 0.0)
        duration = GaugeMetricFamily(
            "probe_duration_seconds", "How long the last probe took.", labels=_LABELS
        )
        duration.add_metric(key, result.duration_s)
        families += [success, duration]
        if self.config.http is not None:
            status = GaugeMetricFamily(
                "probe_http_status_code", "HTTP status of the last probe; 0 when no response.", labels=_LABELS
            )
            status.add_metric(key, float(result.status_code or 0))
            families.append(status)
        extra: dict[str, GaugeMetricFamily] = {}
        for metric in result.metrics:
            family = extra.get(metric.name)
            if family is None:
                names = [*_LABELS, *(name for name, _ in metric.labels)]
                family = extra[metric.name] = GaugeMetricFamily(metric.name, metric.documentation, labels=names)
            family.add_metric([*key, *(value for _, value in metric.labels)], metric.value)
        return [*families, *extra.values()]
