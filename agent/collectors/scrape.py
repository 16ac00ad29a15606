"""Scraping a service's own /metrics, as Prometheus would, into labelled samples."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.collectors.probes import FetchError, fetch
from agent.config import ScrapeConfig
from rules.model import Labels

# What Prometheus 2.x sends: OpenMetrics preferred, the classic text format accepted.
ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
OPENMETRICS_TYPE = "application/openmetrics-text"
TARGET_LABEL = "service"
_REASON_MAX_CHARS = 200

Sample = tuple[Labels, float]


class ScrapeError(Exception):
    """A scrape that yielded no samples; the message is the short reason."""


@dataclass(frozen=True)
class ScrapeResult:
    """One scrape at ``at``: samples when ``up``, else a short ``error``."""

    at: float
    samples: list[Sample]
    up: bool
    duration_s: float
    error: str = ""


class ScrapeTarget:
    """A service's metrics endpoint; remembers the last scrape for its own metrics."""

    def __init__(self, service: str, config: ScrapeConfig, client: httpx.AsyncClient) -> None:
        self.service = service
        self.config = config
        self.last: ScrapeResult | None = None
        self._client = client

    async def scrape(self, now: float) -> ScrapeResult:
        """Fetch and parse the endpoint once; every failure gives ``up=False`` with a reason, never raises."""
        start = time.monotonic()
        try:
            samples = await self._fetch_samples()
        except ScrapeError as exc:
            result = ScrapeResult(now, [], False, time.monotonic() - start, str(exc))
        else:
            result = ScrapeResult(now, samples, True, time.monotonic() - start)
        self.last = result
        return result

    async def _fetch_samples(self) -> list[Sample]:
        try:
            response = await fetch(
                self._client,
                self.config.url,
                headers={"Accept": ACCEPT},
                timeout_s=self.config.timeout,
                read_limit=self.config.max_bytes,
            )
        except FetchError as exc:
            raise ScrapeError(str(exc)) from None
        if response.status_code != 200:
            raise ScrapeError(f"server returned HTTP status {response.status_code}")
        if response.truncated:
            raise ScrapeError(f"response exceeds max_bytes ({self.config.max_bytes} bytes)")
        try:
            text = response.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScrapeError(f"response is not UTF-8 text (bad byte at offset {exc.start})") from None
        openmetrics = response.content_type.split(";")[0].strip().lower() == OPENMETRICS_TYPE
        # The parsers are pure Python: a large exposition would hold the event loop for too long.
        return await asyncio.to_thread(parse_exposition, text, self.service, openmetrics=openmetrics)

    def families(self) -> list[Metric]:
        """``healwatch_scrape_{up,duration_seconds,samples}{service}``; nothing before the first scrape."""
        last = self.last
        if last is None:
            return []
        key = [self.service]
        up = GaugeMetricFamily(
            "healwatch_scrape_up", "1 if the last scrape succeeded, else 0.", labels=["service"]
        )
        up.add_metric(key, 1.0 if last.up else 0.0)
        duration = GaugeMetricFamily(
            "healwatch_scrape_duration_seconds", "How long the last scrape took.", labels=["service"]
        )
        duration.add_metric(key, last.duration_s)
        samples = GaugeMetricFamily(
            "healwatch_scrape_samples", "Samples in the last scrape; 0 when it failed.", labels=["service"]
        )
        samples.add_metric(key, float(len(last.samples)))
        return [up, duration, samples]


def parse_exposition(text: str, service: str, *, openmetrics: bool = False) -> list[Sample]:
    """Samples of an exposition, each labelled ``service``; raise ScrapeError naming the bad line."""
    parse = parse_openmetrics if openmetrics else parse_text
    try:
        return [
            (_target_labels(sample.name, sample.labels, service), float(sample.value))
            for family in parse(text)
            for sample in family.samples
        ]
    except Exception as exc:
        where = "" if openmetrics else _first_bad_line(text)
        raise ScrapeError(_shorten(f"cannot parse metrics{where}: {exc}")) from None


def _target_labels(name: str, exposed: dict[str, str], service: str) -> Labels:
    """Attach the target label; an exposed one of the same name moves aside, as with honor_labels: false."""
    labels = dict(exposed)
    if TARGET_LABEL in labels:
        moved = f"exported_{TARGET_LABEL}"
        while moved in labels:
            moved = f"exported_{moved}"
        labels[moved] = labels.pop(TARGET_LABEL)
    labels[TARGET_LABEL] = service
    return Labels.of(name, labels)


def _first_bad_line(text: str) -> str:
    """`` at line N`` for the first line the text parser rejects alone, or "" if none does.

    prometheus_client's errors carry no position; each sample line of the text format parses
    on its own, so re-parsing line by line (only after a failure) finds the culprit.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            list(parse_text(line + "\n"))
        except Exception:
            return f" at line {number}"
    return ""


def _shorten(reason: str) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= _REASON_MAX_CHARS else reason[: _REASON_MAX_CHARS - 3] + "..."
