"""The /metrics exposition: the latest families of every source, rendered when scraped.

Collectors hand over families with ``update``. A scrape awaits ``response``, which renders
the one format it asked for (text 0.0.4 or OpenMetrics 1.0.0, gzipped if accepted) in a
worker thread, and only when the data changed since that format's last render: scrapes of
unchanged data, and concurrent scrapes of one format, share one render.
"""

from __future__ import annotations

import asyncio
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
# for a body under a fifth larger.
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
    """One render of the exposition in one format (the content type says which), ready to send."""

    generation: int
    content_type: str
    body: bytes
    samples: int
    problems: tuple[str, ...]
    duration_s: float


class Exposition:
    """Latest metric families per source, merged by name and rendered per format when scraped.

    ``on_render`` is called on the event loop with every render a scrape caused.
    """

    def __init__(self, on_render: Callable[[Rendered], None] | None = None) -> None:
        self._families: dict[str, list[Metric]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        # Serialises renders so an older snapshot never replaces a newer one.
        self._render_lock = threading.Lock()
        self._rendered: dict[str, Rendered] = {}
        self._gzipped: dict[str, tuple[Rendered, bytes]] = {}
        self._pending: dict[tuple[str, bool], asyncio.Task[tuple[Rendered, bytes]]] = {}
        self._on_render = on_render

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

    def rendered(self, content_type: str = TEXT_CONTENT_TYPE) -> Rendered | None:
        """The latest render in ``content_type``, or None before the first one."""
        return self._rendered.get(content_type)

    def dirty(self, content_type: str = TEXT_CONTENT_TYPE) -> bool:
        """True when the latest render in ``content_type`` is older than the latest change."""
        rendered = self._rendered.get(content_type)
        return rendered is None or rendered.generation != self._generation

    def render(self, content_type: str = TEXT_CONTENT_TYPE) -> Rendered:
        """Merge all sources and encode them in one format (unless done for this generation); blocking."""
        with self._render_lock:
            rendered = self._rendered.get(content_type)
            if rendered is not None and rendered.generation == self._generation:
                return rendered
            started = time.perf_counter()
            with self._lock:
                generation = self._generation
                sources = sorted(self._families.items())
            families, problems = merge_families(sources)
            encoder = openmetrics.generate_latest if content_type == OPENMETRICS_CONTENT_TYPE else generate_latest
            body, families = _encode(encoder, families, problems)
            rendered = Rendered(
                generation=generation,
                content_type=content_type,
                body=body,
                samples=sum(len(family.samples) for family in families),
                problems=tuple(problems),
                duration_s=time.perf_counter() - started,
            )
            self._rendered[content_type] = rendered
            return rendered

    def _render_body(self, content_type: str, gzipped: bool) -> tuple[Rendered, bytes]:
        """The latest render in ``content_type`` and its body, gzipped (once per render) if asked."""
        rendered = self.render(content_type)
        if not gzipped:
            return rendered, rendered.body
        with self._render_lock:
            cached = self._gzipped.get(content_type)
            if cached is None or cached[0] is not rendered:
                cached = rendered, gzip.compress(rendered.body, compresslevel=GZIP_LEVEL, mtime=0)
                self._gzipped[content_type] = cached
            return cached

    async def response(self, accept: str, accept_encoding: str) -> tuple[bytes, str, str | None]:
        """(body, Content-Type, Content-Encoding) for a scrape with these request headers.

        Negotiates like prometheus_client's ``choose_encoder``: OpenMetrics 1.0.0 when the
        client accepts it, text format 0.0.4 otherwise; gzip when accepted. The body is
        rendered in a worker thread when the data changed since the last render.
        """
        _, negotiated = choose_encoder(accept)
        content_type = (
            OPENMETRICS_CONTENT_TYPE if negotiated.startswith("application/openmetrics-text") else TEXT_CONTENT_TYPE
        )
        gzipped = gzip_accepted(accept_encoding)
        encoding = "gzip" if gzipped else None
        before = self._rendered.get(content_type)
        cached = self._cached_body(content_type, gzipped)
        if cached is not None:
            return cached, content_type, encoding
        key = content_type, gzipped
        task = self._pending.get(key)
        created = task is None
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._render_body, content_type, gzipped))
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        rendered, body = await asyncio.shield(task)
        if created and self._on_render is not None and rendered is not before:
            self._on_render(rendered)
        return body, content_type, encoding

    def _cached_body(self, content_type: str, gzipped: bool) -> bytes | None:
        """The body of the current generation if it was already rendered (and gzipped when asked)."""
        rendered = self._rendered.get(content_type)
        if rendered is None or rendered.generation != self._generation:
            return None
        if not gzipped:
            return rendered.body
        cached = self._gzipped.get(content_type)
        return cached[1] if cached is not None and cached[0] is rendered else None


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
