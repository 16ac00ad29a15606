"""The /metrics exposition: the latest families of every source, rendered once into cached bytes.

Collectors hand over families with ``update``; the daemon calls ``render`` (in a
worker thread) after a collection cycle that left the exposition ``dirty``;
request handlers call ``response``, which only picks one of the cached bodies.
"""

from __future__ import annotations

import copy
import gzip
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    generate_latest,
    gzip_accepted,
)
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.samples import Sample

TEXT_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OPENMETRICS_CONTENT_TYPE = openmetrics.CONTENT_TYPE_LATEST

# Level 6 takes a fifth of level 9's time on 10,000 series (7 ms vs 38 ms here)
# for a body under a fifth larger; the render sits on every collection cycle.
GZIP_LEVEL = 6

# Sample names a family writes besides its own name, as prometheus_client's
# registry counts them; two families claiming one name make the output invalid.
_TYPE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}

_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Rendered:
    """One render of the exposition: every body a scrape can ask for, ready to send."""

    generation: int
    text: bytes
    text_gzip: bytes
    openmetrics: bytes
    openmetrics_gzip: bytes
    samples: int
    problems: tuple[str, ...]
    duration_s: float


class Exposition:
    """Latest metric families per source, merged by name and served from a cached render."""

    def __init__(self) -> None:
        self._families: dict[str, list[Metric]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        # Serialises renders so an older snapshot never replaces a newer one.
        self._render_lock = threading.Lock()
        self._rendered: Rendered | None = None

    def update(self, source: str, families: Iterable[Metric]) -> None:
        """Replace everything ``source`` exposes with ``families``."""
        snapshot = list(families)
        with self._lock:
            self._families[source] = snapshot
            self._generation += 1

    def remove(self, source: str) -> None:
        """Stop exposing ``source``; unknown sources are ignored."""
        with self._lock:
            if self._families.pop(source, None) is not None:
                self._generation += 1

    @property
    def generation(self) -> int:
        """Counts changes: increases on every ``update`` and every effective ``remove``."""
        return self._generation

    @property
    def dirty(self) -> bool:
        """True when the cached render is older than the latest change."""
        rendered = self._rendered
        return rendered is None or rendered.generation != self._generation

    @property
    def rendered(self) -> Rendered | None:
        """The render ``response`` serves, or None before the first one."""
        return self._rendered

    def render(self) -> Rendered:
        """Merge all sources and build every body once; blocking, meant for a worker thread."""
        with self._render_lock:
            started = time.perf_counter()
            with self._lock:
                generation = self._generation
                sources = sorted(self._families.items())
            families, problems = merge_families(sources)
            text, families = _encode(generate_latest, families, problems)
            om, families = _encode(openmetrics.generate_latest, families, problems)
            rendered = Rendered(
                generation=generation,
                text=text,
                text_gzip=gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0),
                openmetrics=om,
                openmetrics_gzip=gzip.compress(om, compresslevel=GZIP_LEVEL, mtime=0),
                samples=sum(len(family.samples) for family in families),
                problems=tuple(problems),
                duration_s=time.perf_counter() - started,
            )
            self._rendered = rendered
            return rendered

    def response(self, accept: str, accept_encoding: str) -> tuple[bytes, str, str | None]:
        """(body, Content-Type, Content-Encoding) for a scrape with these request headers.

        Negotiates like prometheus_client's ``choose_encoder``: OpenMetrics 1.0.0 when
        the client accepts it, text format 0.0.4 otherwise; gzip when accepted.
        """
        rendered = self._rendered or self.render()
        _, content_type = choose_encoder(accept)
        wants_gzip = gzip_accepted(accept_encoding)
        if content_type.startswith("application/openmetrics-text"):
            if wants_gzip:
                return rendered.openmetrics_gzip, OPENMETRICS_CONTENT_TYPE, "gzip"
            return rendered.openmetrics, OPENMETRICS_CONTENT_TYPE, None
        if wants_gzip:
            return rendered.text_gzip, TEXT_CONTENT_TYPE, "gzip"
        return rendered.text, TEXT_CONTENT_TYPE, None


def merge_families(
    sources: Iterable[tuple[str, Sequence[Metric]]],
) -> tuple[list[Metric], list[str]]:
    """One family per name across sources, and a note for everything that had to be dropped.

    The first source (in the given order) decides a family's type, unit and help;
    later families of another type or unit, families whose sample names collide
    with another family's, and series already exposed by an earlier source are
    dropped rather than producing output a scraper rejects. Input families are
    never modified.
    """
    merged: dict[str, Metric] = {}
    origin: dict[str, str] = {}
    claimed_by: dict[str, str] = {}
    seen_series: dict[str, set[_SeriesKey]] = {}
    problems: list[str] = []
    for source, families in sources:
        for family in families:
            name = family.name
            first = merged.get(name)
            if first is None:
                claims = _claimed_names(family)
                clash = next((claimed_by[n] for n in claims if n in claimed_by), None)
                if clash is not None:
                    problems.append(
                        f"source {source!r}: {family.type} {name!r} collides with "
                        f"{clash!r} from source {origin[clash]!r}; dropped"
                    )
                    continue
                merged[name] = family
                origin[name] = source
                claimed_by.update((n, name) for n in claims)
            elif (first.type, first.unit) != (family.type, family.unit):
                problems.append(
                    f"source {source!r}: {family.type} {name!r} conflicts with "
                    f"{first.type} {name!r} from source {origin[name]!r}; dropped"
                )
            else:
                seen = seen_series.get(name)
                if seen is None:
                    # Copy on the first merge so the collector's family stays untouched.
                    first = copy.copy(first)
                    first.samples = list(first.samples)
                    merged[name] = first
                    seen = seen_series[name] = {_series_key(s) for s in first.samples}
                duplicates = 0
                for sample in family.samples:
                    key = _series_key(sample)
                    if key in seen:
                        duplicates += 1
                        continue
                    seen.add(key)
                    first.samples.append(sample)
                if duplicates:
                    problems.append(
                        f"source {source!r}: {duplicates} series of {name!r} already "
                        f"exposed by another source; dropped"
                    )
    return list(merged.values()), problems


class _Families:
    """The registry-like object prometheus_client's encoders read families from."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _encode(
    encoder: Callable[[_Families], bytes], families: list[Metric], problems: list[str]
) -> tuple[bytes, list[Metric]]:
    """Encoded families, leaving out (and noting) any family the encoder cannot write."""
    while True:
        try:
            return encoder(_Families(families)), families
        except Exception as error:
            # prometheus_client appends the family it failed on to the error's args.
            culprit = error.args[-1] if error.args else None
            bad = next((family for family in families if family is culprit), None)
            if bad is None:
                raise
            problems.append(f"{bad.name!r} cannot be rendered ({error.args[0]}); dropped")
            families = [family for family in families if family is not bad]


def _claimed_names(family: Metric) -> tuple[str, ...]:
    return (family.name, *(family.name + s for s in _TYPE_SUFFIXES.get(family.type, ())))


def _series_key(sample: Sample) -> _SeriesKey:
    return sample.name, tuple(sorted(sample.labels.items()))
