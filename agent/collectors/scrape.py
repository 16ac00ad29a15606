"""Scraping a service's own /metrics, as Prometheus would, into labelled samples."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from agent.httpclient import FetchError, HttpClient, fetch
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
class ScrapeLimits:
    """Prometheus' per-target limits; any one exceeded fails the whole scrape. 0 means no limit."""

    sample_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0

    @classmethod
    def of(cls, config: ScrapeConfig) -> ScrapeLimits:
        return cls(config.sample_limit, config.label_limit, config.label_name_length_limit,
                   config.label_value_length_limit)


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

    def __init__(self, service: str, config: ScrapeConfig, client: HttpClient) -> None:
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
                timeout_s=self.config.timeout_s,
                read_limit=self.config.max_bytes,
            )
        except FetchError as exc:
            raise ScrapeError(str(exc)) from None
        if response.status_code != 200:
            raise ScrapeError(f"server returned HTTP status {response.status_code}")
        if response.truncated:
            raise ScrapeError(f"response exceeds max_bytes ({self.config.max_bytes} bytes)")
        openmetrics = response.content_type.split(";")[0].strip().lower() == OPENMETRICS_TYPE
        # Decoding, counting and parsing are pure Python over up to max_bytes: off the event loop.
        return await asyncio.to_thread(
            _decode_and_parse, response.body, self.service, openmetrics, ScrapeLimits.of(self.config)
        )

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


def _decode_and_parse(body: bytes, service: str, openmetrics: bool, limits: ScrapeLimits) -> list[Sample]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScrapeError(f"response is not UTF-8 text (bad byte at offset {exc.start})") from None
    return parse_exposition(text, service, openmetrics=openmetrics, limits=limits)


def parse_exposition(
    text: str, service: str, *, openmetrics: bool = False, limits: ScrapeLimits = ScrapeLimits()
) -> list[Sample]:
    """Samples of an exposition, each labelled ``service``; raise ScrapeError naming the bad line or the limit."""
    if limits.sample_limit:
        # Counted before parsing, so an oversized exposition costs a line count, not a parse.
        count = _sample_lines(text)
        if count > limits.sample_limit:
            raise ScrapeError(f"sample_limit exceeded (samples: {count}, limit: {limits.sample_limit})")
    parse = parse_openmetrics if openmetrics else parse_text
    try:
        samples = [
            (_target_labels(sample.name, sample.labels, service), float(sample.value))
            for family in parse(text)
            for sample in family.samples
        ]
    except Exception as exc:
        where = "" if openmetrics else _first_bad_line(text)
        raise ScrapeError(_shorten(f"cannot parse metrics{where}: {exc}")) from None
    if limits.label_limit or limits.label_name_length_limit or limits.label_value_length_limit:
        for labels, _ in samples:
            _check_labels(labels, limits)
    return samples


def _sample_lines(text: str) -> int:
    """Samples in a text or OpenMetrics exposition: one per line that is neither blank nor a comment."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _check_labels(labels: Labels, limits: ScrapeLimits) -> None:
    """Raise ScrapeError as Prometheus' verifyLabelLimits words it; the count includes __name__ and service."""
    metric = labels.name[:50]
    if limits.label_limit and len(labels) > limits.label_limit:
        raise ScrapeError(
            f"label_limit exceeded (metric: {metric}, number of labels: {len(labels)}, limit: {limits.label_limit})"
        )
    for name, value in labels:
        if limits.label_name_length_limit and len(name) > limits.label_name_length_limit:
            raise ScrapeError(
                f"label_name_length_limit exceeded (metric: {metric}, label name: {name[:50]}, "
                f"length: {len(name)}, limit: {limits.label_name_length_limit})"
            )
        if limits.label_value_length_limit and len(value) > limits.label_value_length_limit:
            raise ScrapeError(_shorten(
                f"label_value_length_limit exceeded (metric: {metric}, label name: {name[:50]}, "
                f"value: {json.dumps(value[:50], ensure_ascii=False)}, length: {len(value)}, "
                f"limit: {limits.label_value_length_limit})"
            ))


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
