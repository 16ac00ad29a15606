"""What one probe run reports: its verdict, reason and timing, and the probe kind's own gauges."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeMetric:
    """One more gauge of a probe run, named as blackbox_exporter names it (``probe_dns_answer_rrs``)."""

    name: str
    documentation: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ProbeResult:
    """One probe run: ``error`` is a short human reason when ``success`` is false.

    ``agent_error`` (an errno name such as "EMFILE") says the agent itself could not probe, for
    want of descriptors, memory or processes: the run tells nothing about the service.
    ``metrics`` are the probe kind's own gauges, reported with the check's labels; ``output`` is the
    last lines a failed exec probe printed (at most 10 lines and 1 KiB).
    """

    success: bool
    duration_s: float
    status_code: int | None = None
    error: str = ""
    agent_error: str = ""
    metrics: tuple[ProbeMetric, ...] = ()
    output: str = ""
