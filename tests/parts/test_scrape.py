"""Scraping real HTTP endpoints on 127.0.0.1: good expositions, garbage, hangs, huge bodies, refusals."""

from __future__ import annotations

import asyncio
import gzip
import socket
from contextlib import AbstractAsyncContextManager

import pytest
from aiohttp import web

from agent.collectors.base import samples_of
from agent.httpclient import new_http_client
from agent.collectors.scrape import ScrapeResult, ScrapeTarget, parse_exposition
from agent.config import ScrapeConfig
from rules.model import Labels
from harness.endpoints import BIG_BODY_BYTES, Served, misbehaving_routes
from harness.endpoints import serve as serve_app

pytestmark = pytest.mark.timeout(10)

TEXT_EXPOSITION = """\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200",service="frontend"} 1027
http_requests_total{code="500"} 3
# TYPE queue_depth gauge
queue_depth 7
"""

OPENMETRICS_EXPOSITION = """\
# TYPE jobs counter
jobs_total{queue="mail"} 5.0
# TYPE temperature gauge
temperature 21.5
# EOF
"""

def _app(served: Served) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        served.accept = request.headers.get("Accept", "")
        return web.Response(text=TEXT_EXPOSITION, content_type="text/plain", charset="utf-8")

    async def openmetrics(request: web.Request) -> web.Response:
        body = OPENMETRICS_EXPOSITION if request.query.get("eof") != "no" else OPENMETRICS_EXPOSITION[:-6]
        return web.Response(
            text=body, headers={"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
        )

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(TEXT_EXPOSITION.encode()),
            headers={"Content-Type": "text/plain; version=0.0.4", "Content-Encoding": "gzip"},
        )

    async def fixed(request: web.Request) -> web.Response:
        return web.Response(body=FIXED_BODIES[request.match_info["kind"]], content_type="text/html")

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500, text=TEXT_EXPOSITION)

    async def many(request: web.Request) -> web.Response:
        return web.Response(text=MANY_EXPOSITION, content_type="text/plain")

    app = web.Application()
    app.add_routes(
        [
            web.get("/metrics", metrics),
            web.get("/openmetrics", openmetrics),
            web.get("/gzip", gzipped),
            web.get("/fixed/{kind}", fixed),
            web.get("/500", failing),
            web.get("/many", many),
            *misbehaving_routes(served, trickle=b"up 1\n", big_head=b"", big_chunk=b"filler_metric 1\n" * 4096),
        ]
    )
    return app


# 30 samples; the last one carries the longest label name and value.
MANY_EXPOSITION = "# TYPE many_total counter\n" + "".join(f'many_total{{i="{i}"}} {i}\n' for i in range(29)) + (
    'many_total{a_rather_long_label_name="a rather long label value"} 29\n'
)

FIXED_BODIES = {
    "html": b"<!DOCTYPE html>\n<html><body>Welcome to nginx!</body></html>\n",
    "garbage": b"up 1\nqueue_depth 7\nthis is not a metric\n",
    "binary": b"\x1f\x8b\x08\x00\xff\xfe\x00\x01binary",
    "empty": b"",
}


def serve(served: Served) -> AbstractAsyncContextManager[str]:
    return serve_app(_app(served))


def scrape_once(path: str, served: Served | None = None, **config: object) -> tuple[ScrapeResult, ScrapeTarget]:
    """Scrape ``path`` of a fresh test server once at now=1000."""

    async def main() -> tuple[ScrapeResult, ScrapeTarget]:
        async with serve(served or Served()) as base, new_http_client() as client:
            target = ScrapeTarget("api", ScrapeConfig.model_validate({"url": f"{base}{path}", **config}), client)
            return await target.scrape(1000.0), target

    return asyncio.run(main())


def series(result: ScrapeResult) -> dict[str, float]:
    return {str(labels): value for labels, value in result.samples}


def test_text_exposition_is_labelled_with_the_service() -> None:
    """Every sample gets service="api"; an exposed service label moves to exported_service."""
    served = Served()
    result, _ = scrape_once("/metrics", served)
    assert result.up and result.error == "" and result.at == 1000.0
    assert series(result) == {
        'http_requests_total{code="200", exported_service="frontend", service="api"}': 1027.0,
        'http_requests_total{code="500", service="api"}': 3.0,
        'queue_depth{service="api"}': 7.0,
    }
    assert served.accept.startswith("application/openmetrics-text;version=1.0.0,")
    assert "text/plain;version=0.0.4" in served.accept


def test_openmetrics_response_uses_the_openmetrics_parser() -> None:
    """An OpenMetrics content type is parsed as OpenMetrics, which requires its # EOF terminator."""
    result, _ = scrape_once("/openmetrics")
    assert result.up
    assert series(result) == {'jobs_total{queue="mail", service="api"}': 5.0, 'temperature{service="api"}': 21.5}
    truncated, _ = scrape_once("/openmetrics?eof=no")
    assert not truncated.up
    assert truncated.error == "cannot parse metrics: Missing # EOF at end"


def test_gzip_response_is_decoded() -> None:
    """A gzip-encoded exposition is decompressed before parsing."""
    result, _ = scrape_once("/gzip")
    assert result.up and len(result.samples) == 3


def test_html_is_a_failed_scrape_with_the_line() -> None:
    """An HTML page fails the scrape with a short reason naming line 1, not a traceback."""
    result, _ = scrape_once("/fixed/html")
    assert not result.up and result.samples == []
    assert result.error.startswith("cannot parse metrics at line 1: invalid metric name")
    assert "Traceback" not in result.error and len(result.error) <= 200


def test_garbage_line_is_reported_by_number() -> None:
    """Non-Prometheus text fails the scrape naming the first bad line."""
    result, _ = scrape_once("/fixed/garbage")
    assert not result.up
    assert result.error.startswith("cannot parse metrics at line 3:")


def test_binary_body_is_not_utf8() -> None:
    """Binary bytes fail the scrape as non-UTF-8 text."""
    result, _ = scrape_once("/fixed/binary")
    assert not result.up
    assert result.error == "response is not UTF-8 text (bad byte at offset 1)"


def test_empty_body_is_up_with_no_samples() -> None:
    """An empty 200 response is a successful scrape of zero samples, as in Prometheus."""
    result, _ = scrape_once("/fixed/empty")
    assert result.up and result.samples == []


def test_http_error_status_fails() -> None:
    """A non-200 status fails the scrape even if the body is a valid exposition."""
    result, _ = scrape_once("/500")
    assert not result.up and result.samples == []
    assert result.error == "server returned HTTP status 500"


@pytest.mark.parametrize("path", ["/hang", "/trickle"])
def test_hung_or_trickling_endpoint_fails_at_timeout(path: str) -> None:
    """An endpoint that never finishes fails at the scrape timeout, measured over the whole exchange."""
    result, _ = scrape_once(path, timeout="300ms", interval="1s")
    assert not result.up
    assert result.error == "timed out after 300ms"
    assert 0.3 <= result.duration_s < 1.5


def test_body_over_max_bytes_fails_without_reading_it_all() -> None:
    """A 50 MB exposition fails a 1 MiB max_bytes scrape long before the server has sent it all."""
    served = Served()
    result, _ = scrape_once("/big", served, max_bytes=1 << 20)
    assert not result.up
    assert result.error == "response exceeds max_bytes (1048576 bytes)"
    assert served.big_bytes_sent < BIG_BODY_BYTES


def test_connection_refused() -> None:
    """A closed port fails the scrape with the OS reason."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> ScrapeResult:
        async with new_http_client() as client:
            config = ScrapeConfig(url=f"http://127.0.0.1:{port}/metrics")
            return await ScrapeTarget("api", config, client).scrape(0.0)

    result = asyncio.run(main())
    assert not result.up and result.error == "connect failed: Connection refused"


def _own_metrics(target: ScrapeTarget) -> dict[Labels, float]:
    return dict(samples_of(target.families()))


def test_families_report_up_duration_and_sample_count() -> None:
    """Own metrics: nothing before a scrape, then up/duration/samples; samples is 0 after a failure."""

    async def main() -> list[dict[Labels, float]]:
        async with serve(Served()) as base, new_http_client() as client:
            target = ScrapeTarget("api", ScrapeConfig(url=f"{base}/metrics"), client)
            before = _own_metrics(target)
            await target.scrape(0.0)
            good = _own_metrics(target)
            target.config = ScrapeConfig(url=f"{base}/fixed/html")
            await target.scrape(15.0)
            return [before, good, _own_metrics(target)]

    before, good, bad = asyncio.run(main())
    key = {"service": "api"}
    assert before == {}
    assert good[Labels.of("healwatch_scrape_up", key)] == 1.0
    assert good[Labels.of("healwatch_scrape_samples", key)] == 3.0
    assert 0 < good[Labels.of("healwatch_scrape_duration_seconds", key)] < 1
    assert bad[Labels.of("healwatch_scrape_up", key)] == 0.0
    assert bad[Labels.of("healwatch_scrape_samples", key)] == 0.0


def test_exported_label_clash_keeps_prefixing() -> None:
    """If exported_service is taken too, the exposed service label becomes exported_exported_service."""
    text = 'm{service="a",exported_service="b"} 1\n'
    [(labels, _)] = parse_exposition(text, "api")
    assert labels.as_dict() == {
        "__name__": "m",
        "service": "api",
        "exported_service": "b",
        "exported_exported_service": "a",
    }


def test_a_scrape_over_sample_limit_fails_and_keeps_nothing() -> None:
    """30 samples against sample_limit 29 fail the scrape (up 0, no samples) with Prometheus' reason; 30 pass."""
    result, _ = scrape_once("/many", sample_limit=29)
    assert (result.up, result.samples) == (False, [])
    assert result.error == "sample_limit exceeded (samples: 30, limit: 29)"
    assert len(scrape_once("/many", sample_limit=30)[0].samples) == 30


def test_sample_limit_defaults_to_ten_thousand_and_zero_means_none() -> None:
    """A target may expose 10,000 samples by default; 0 lifts the limit, as in Prometheus."""
    assert ScrapeConfig(url="http://127.0.0.1:1/metrics").sample_limit == 10_000
    assert scrape_once("/many", sample_limit=0)[0].up


@pytest.mark.parametrize(
    ("limit", "error"),
    [
        ({"label_limit": 2}, "label_limit exceeded (metric: many_total, number of labels: 3, limit: 2)"),
        ({"label_name_length_limit": 20},
         "label_name_length_limit exceeded (metric: many_total, label name: a_rather_long_label_name, "
         "length: 24, limit: 20)"),
        ({"label_value_length_limit": 20},
         "label_value_length_limit exceeded (metric: many_total, label name: a_rather_long_label_name, "
         'value: "a rather long label value", length: 25, limit: 20)'),
    ],
)
def test_label_limits_fail_the_scrape_naming_the_metric(limit: dict[str, int], error: str) -> None:
    """Each label limit fails the whole scrape with Prometheus' message; counts include __name__ and service."""
    result, _ = scrape_once("/many", None, **limit)
    assert (result.up, result.samples, result.error) == (False, [], error)
    assert scrape_once("/many", None, **{key: value + 10 for key, value in limit.items()})[0].up
