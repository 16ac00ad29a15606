"""The exposition cache: merging sources, rendering once, negotiating what a scrape gets."""

from __future__ import annotations

import asyncio
import gzip
import subprocess

import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporters.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Exposition,
    Rendered,
    merge_families,
)

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def probe_success(check: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "probe_success", "Whether the probe succeeded.", labels=["service", "check"]
    )
    family.add_metric(["api", check], value)
    return family


def host_families() -> list[Metric]:
    """One family of every type the agent may expose, all with help text."""
    cpu = CounterMetricFamily(
        "node_cpu_seconds", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
    )
    cpu.add_metric(["0", "idle"], 1234.5)
    cpu.add_metric(["0", "user"], 56.25)
    load = GaugeMetricFamily("node_load1", "1m load average.", value=0.42)
    latency = HistogramMetricFamily(
        "healwatch_rule_group_duration_seconds",
        "Time to evaluate a rule group.",
        labels=["group"],
    )
    latency.add_metric(["host"], buckets=[("0.01", 3), ("0.1", 5), ("+Inf", 6)], sum_value=0.21)
    scrape = SummaryMetricFamily(
        "healwatch_scrape_duration_seconds",
        "Time to scrape a service.",
        count_value=4,
        sum_value=0.5,
    )
    build = InfoMetricFamily("healwatch_build", "Build information.", value={"version": "0.1.0"})
    return [cpu, load, latency, scrape, build]


def family_text(body: bytes, name: str) -> list[str]:
    """The sample lines of family ``name`` in a text-format body."""
    return [
        line
        for line in body.decode().splitlines()
        if line.startswith(f"{name}{{") or line.startswith(f"{name} ")
    ]


def test_render_writes_text_and_openmetrics_of_all_sources() -> None:
    """A render in each format holds every source's families, OpenMetrics ending in # EOF."""
    exposition = Exposition()
    exposition.update("host", host_families())
    exposition.update("probe:api/http", [probe_success("http", 1.0)])

    text = exposition.render(TEXT_CONTENT_TYPE).body
    om = exposition.render(OPENMETRICS_CONTENT_TYPE).body

    text_names = {family.name for family in text_string_to_metric_families(text.decode())}
    # prometheus_client's OpenMetrics parser is unannotated.
    om_names = {family.name for family in openmetrics_families(om.decode())}  # type: ignore[no-untyped-call]
    common = {
        "node_cpu_seconds",
        "node_load1",
        "healwatch_rule_group_duration_seconds",
        "healwatch_scrape_duration_seconds",
        "probe_success",
    }
    assert text_names == common | {"healwatch_build_info"}
    assert om_names == common | {"healwatch_build"}
    assert om.endswith(b"# EOF\n")
    assert b"# EOF" not in text
    assert exposition.render().problems == ()


def test_promtool_finds_no_problem_in_rendered_text() -> None:
    """promtool's parser and linter accept the text output, merged families included."""
    exposition = Exposition()
    exposition.update("host", host_families())
    exposition.update("probe:api/http", [probe_success("http", 1.0)])
    exposition.update("probe:api/tcp", [probe_success("tcp", 0.0)])

    result = subprocess.run(
        ["/usr/bin/promtool", "check", "metrics"],
        input=exposition.render().body,
        capture_output=True,
        timeout=20,
        check=False,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_same_name_from_several_sources_becomes_one_family() -> None:
    """probe_success from two checks is written under a single TYPE line with both series."""
    exposition = Exposition()
    first, second = probe_success("http", 1.0), probe_success("tcp", 0.0)
    exposition.update("probe:api/http", [first])
    exposition.update("probe:api/tcp", [second])

    text = exposition.render().body

    assert text.count(b"# TYPE probe_success gauge") == 1
    assert family_text(text, "probe_success") == [
        'probe_success{check="http",service="api"} 1.0',
        'probe_success{check="tcp",service="api"} 0.0',
    ]
    assert len(first.samples) == len(second.samples) == 1


def test_conflicting_type_is_dropped_and_reported() -> None:
    """A family reusing a name with another type is left out, with a note naming both sources."""
    counter = CounterMetricFamily("probe_success", "Misnamed counter.", value=3)

    families, problems = merge_families(
        [("a", [probe_success("http", 1.0)]), ("b", [counter])]
    )

    assert [(family.name, family.type) for family in families] == [("probe_success", "gauge")]
    assert problems == [
        "source 'b': counter 'probe_success' conflicts with gauge 'probe_success' "
        "from source 'a'; dropped"
    ]


def test_colliding_sample_names_are_dropped_and_reported() -> None:
    """A gauge named like a counter's _total sample would duplicate a series, so it is left out."""
    counter = CounterMetricFamily("requests", "Requests served.", value=3)
    gauge = GaugeMetricFamily("requests_total", "Shadowing gauge.", value=1)

    families, problems = merge_families([("a", [counter]), ("b", [gauge])])

    assert [family.name for family in families] == ["requests"]
    assert problems == [
        "source 'b': gauge 'requests_total' collides with 'requests' from source 'a'; dropped"
    ]


def test_series_exposed_twice_keeps_the_first() -> None:
    """The same series from two sources appears once, with the first source's value."""
    families, problems = merge_families(
        [("a", [probe_success("http", 1.0)]), ("b", [probe_success("http", 0.0)])]
    )

    assert [(s.labels["check"], s.value) for s in families[0].samples] == [("http", 1.0)]
    assert problems == [
        "source 'b': 1 series of 'probe_success' already exposed by another source; dropped"
    ]


def test_unrenderable_family_is_dropped_and_the_rest_rendered() -> None:
    """A family the encoder rejects is left out and noted instead of failing the whole render."""
    broken = GaugeMetricFamily("broken", "Value is not a number.")
    broken.add_metric([], "not a number")  # type: ignore[arg-type]
    exposition = Exposition()
    exposition.update("host", [broken, GaugeMetricFamily("up_ok", "Fine.", value=1)])

    rendered = exposition.render()
    om = exposition.render(OPENMETRICS_CONTENT_TYPE).body

    assert b"up_ok 1.0" in rendered.body and b"broken" not in rendered.body
    assert b"up_ok 1.0" in om and b"broken" not in om
    assert len(rendered.problems) == 1 and rendered.problems[0].startswith("'broken' cannot")


def test_generation_and_dirty_track_changes() -> None:
    """update and remove make the exposition dirty; a render makes its format clean at that generation."""
    exposition = Exposition()
    exposition.update("probe:api/http", [probe_success("http", 1.0)])
    assert exposition.dirty()

    rendered = exposition.render()
    assert not exposition.dirty() and rendered.generation == exposition.generation
    assert exposition.dirty(OPENMETRICS_CONTENT_TYPE)

    exposition.remove("unknown")
    assert not exposition.dirty()
    exposition.remove("probe:api/http")
    assert exposition.dirty()
    assert b"probe_success" not in exposition.render().body


@pytest.mark.parametrize(
    ("accept", "accept_encoding", "content_type", "content_encoding"),
    [
        ("", "", TEXT_CONTENT_TYPE, None),
        ("text/plain;version=0.0.4", "identity", TEXT_CONTENT_TYPE, None),
        (PROMETHEUS_ACCEPT, "", OPENMETRICS_CONTENT_TYPE, None),
        ("application/openmetrics-text", "gzip", OPENMETRICS_CONTENT_TYPE, "gzip"),
        ("application/openmetrics-text;version=0.0.1", "", TEXT_CONTENT_TYPE, None),
        ("*/*", "deflate, gzip;q=0.9", TEXT_CONTENT_TYPE, "gzip"),
    ],
)
def test_response_negotiates_format_and_encoding(
    accept: str, accept_encoding: str, content_type: str, content_encoding: str | None
) -> None:
    """The body is a render in the format the Accept header asks for, gzipped when Accept-Encoding allows."""
    exposition = Exposition()
    exposition.update("host", host_families())

    body, got_type, got_encoding = asyncio.run(exposition.response(accept, accept_encoding))

    assert (got_type, got_encoding) == (content_type, content_encoding)
    plain = exposition.render(content_type).body
    assert (gzip.decompress(body) if content_encoding else body) == plain
    other = OPENMETRICS_CONTENT_TYPE if content_type == TEXT_CONTENT_TYPE else TEXT_CONTENT_TYPE
    assert exposition.rendered(other) is None  # one format at a time


def test_scrapes_render_only_when_the_data_changed() -> None:
    """Scrapes of unchanged data share one render (gzipped once); a change makes the next scrape render anew."""
    rendered: list[Rendered] = []
    exposition = Exposition(on_render=rendered.append)
    exposition.update("probe:api/http", [probe_success("http", 1.0)])

    async def scrape() -> bytes:
        body, _, _ = await exposition.response("", "gzip")
        return gzip.decompress(body)

    async def scenario() -> list[bytes]:
        first = await asyncio.gather(*(scrape() for _ in range(3)))
        again = await scrape()
        exposition.update("probe:api/http", [probe_success("http", 0.0)])
        return [*first, again, await scrape()]

    bodies = asyncio.run(scenario())

    assert len(rendered) == 2
    assert len(set(bodies[:4])) == 1
    assert family_text(bodies[0], "probe_success") == ['probe_success{check="http",service="api"} 1.0']
    assert family_text(bodies[4], "probe_success") == ['probe_success{check="http",service="api"} 0.0']
