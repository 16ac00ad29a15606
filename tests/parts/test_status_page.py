"""The status page in headless Chromium against a running agent, and the Prometheus-shaped query API."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from agent.config import parse_config
from agent.daemon import Agent
from agent.http import web
from agent.http.server import HttpServer
from agent.http.query import MAX_POINTS_PER_SERIES, parse_step, parse_time
from agent.http.statuspage import OPENAPI_PATHS, add_status_page
from exporters.exposition import Exposition
from exporters.notification import generator_url
from exporters.silences import new_silence
from rules.matchers import Matcher, MatchOp
from rules.model import Labels
from harness.processes import free_port, require_binary

REPO = Path(__file__).resolve().parents[2]
NOW_S = 1_700_000_000.0

RULES = """groups:
  - name: always
    rules:
      - alert: AlwaysOn
        expr: vector(1) > 0
        labels: {severity: info}
        annotations: {summary: "always firing, for the status page"}
      - alert: AlwaysMuted
        expr: vector(2) > 0
        annotations: {summary: "always firing, silenced"}
"""


# -- time and step parameters -------------------------------------------------


@pytest.mark.parametrize(("text", "expected_ms"), [
    ("1700000000", 1_700_000_000_000),
    ("1700000000.123", 1_700_000_000_123),
    ("-1.5", -1500),
    ("2023-11-14T22:13:20Z", 1_700_000_000_000),
    ("2023-11-14T22:13:20.5Z", 1_700_000_000_500),
    ("2023-11-14T23:13:20.250000001+01:00", 1_700_000_000_250),
])
def test_times_are_unix_seconds_or_rfc3339(text: str, expected_ms: int) -> None:
    """Times parse as Prometheus' API parses them: float unix seconds or RFC 3339 with any fraction and offset."""
    assert parse_time(text) == expected_ms


@pytest.mark.parametrize("text", ["", "now", "2023-13-01T00:00:00Z", "2023-11-14 22:13:20", "NaN", "1e400", "1_0"])
def test_bad_times_are_refused_with_the_text(text: str) -> None:
    """A time that is neither a number nor a valid RFC 3339 timestamp is a ValueError quoting it."""
    with pytest.raises(ValueError, match=f'cannot parse "{text}" to a valid timestamp'):
        parse_time(text)


@pytest.mark.parametrize(("text", "expected_ms"), [("15", 15_000), ("0.5", 500), ("15s", 15_000), ("1m30s", 90_000)])
def test_steps_are_seconds_or_durations(text: str, expected_ms: int) -> None:
    """A step is float seconds or a Prometheus duration."""
    assert parse_step(text) == expected_ms


@pytest.mark.parametrize("text", ["", "fast", "1.5m", "1e30"])
def test_bad_steps_are_refused_with_the_text(text: str) -> None:
    """A step that is neither seconds nor a duration is a ValueError quoting it."""
    with pytest.raises(ValueError, match=f'cannot parse "{text}" to a valid duration'):
        parse_step(text)


# -- /api/v1/query and /api/v1/query_range -----------------------------------


QueryBody = Callable[[httpx.AsyncClient], Awaitable[None]]


@asynccontextmanager
async def status_page_server(agent: Agent, status: web.Handler | None = None) -> AsyncIterator[HttpServer]:
    """The agent's HTTP server on an ephemeral port with the status page routes (and ``status`` as /api/v1/status)."""
    server = HttpServer(Exposition(), lambda service: True, "127.0.0.1", 0)
    add_status_page(server.app, agent)
    if status is not None:
        server.app.router.add_get("/api/v1/status", status)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def run_queries(tmp_path: Path, body: QueryBody) -> None:
    """Serve the status page routes of an unstarted agent whose store holds ``up`` at 10 s steps until NOW_S."""
    config = parse_config("state_path: ':memory:'\nhost: {enabled: false}\ndefault_rules: false\n", "agent.yaml")
    agent = Agent(config, clock=lambda: NOW_S)
    for i in range(60):
        t_ms = round((NOW_S - 590 + i * 10) * 1000)
        agent.store.ingest("scrape", [(Labels({"__name__": "up", "job": "a"}), float(i % 2))], t_ms)

    async def main() -> None:
        async with status_page_server(agent) as server:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
                await body(client)

    asyncio.run(main())


def test_instant_queries_answer_in_prometheus_shapes(tmp_path: Path) -> None:
    """Vectors, scalars, strings and range selectors come back as Prometheus' API encodes them, at the agent's time."""

    async def body(client: httpx.AsyncClient) -> None:
        vector = (await client.get("/api/v1/query", params={"query": "up"})).json()
        assert vector == {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "value": [1_700_000_000, "1"]}]}}
        scalar = (await client.get("/api/v1/query", params={"query": "1/3", "time": "1.5"})).json()
        assert scalar["data"] == {"resultType": "scalar", "result": [1.5, "0.3333333333333333"]}
        string = (await client.get("/api/v1/query", params={"query": '"hi"', "time": "10"})).json()
        assert string["data"] == {"resultType": "string", "result": [10, "hi"]}
        matrix = (await client.get("/api/v1/query", params={"query": "up[25s]"})).json()
        assert matrix["data"]["resultType"] == "matrix"
        assert matrix["data"]["result"][0]["values"] == [[1_699_999_980, "1"], [1_699_999_990, "0"],
                                                         [1_700_000_000, "1"]]

    run_queries(tmp_path, body)


def test_range_queries_step_through_the_window(tmp_path: Path) -> None:
    """query_range returns one point per step from start to end inclusive, with RFC 3339 or unix times."""

    async def body(client: httpx.AsyncClient) -> None:
        params = {"query": "up * 2", "start": "2023-11-14T22:12:20Z", "end": str(NOW_S), "step": "30s"}
        data = ((await client.get("/api/v1/query_range", params=params)).json())["data"]
        assert data["resultType"] == "matrix"
        (series,) = data["result"]
        assert series["metric"] == {"job": "a"}
        assert [t for t, _ in series["values"]] == [1_699_999_940, 1_699_999_970, 1_700_000_000]
        assert [v for _, v in series["values"]] == ["2", "0", "2"]

    run_queries(tmp_path, body)


@pytest.mark.parametrize(("path", "params", "status", "kind", "message"), [
    ("/api/v1/query", {"query": "sum(up"}, 400, "bad_data",
     'invalid parameter "query": 1:4: parse error: unclosed left parenthesis'),
    ("/api/v1/query", {}, 400, "bad_data", 'invalid parameter "query": 1:1: parse error: no expression found'),
    ("/api/v1/query", {"query": "(" * 3000 + "1" + ")" * 3000}, 400, "bad_data", "nested more than 100 levels deep"),
    ("/api/v1/query", {"query": "up", "time": "yesterday"}, 400, "bad_data",
     'invalid parameter "time": cannot parse "yesterday" to a valid timestamp'),
    ("/api/v1/query", {"query": 'label_replace(up, "x", "", "y", "(")'}, 422, "execution", "invalid regular"),
    ("/api/v1/query_range", {"query": "up", "end": "10", "step": "1"}, 400, "bad_data",
     'invalid parameter "start": cannot parse "" to a valid timestamp'),
    ("/api/v1/query_range", {"query": "up", "start": "10", "end": "5", "step": "1"}, 400, "bad_data",
     "end timestamp must not be before start time"),
    ("/api/v1/query_range", {"query": "up", "start": "0", "end": "5", "step": "0"}, 400, "bad_data",
     "zero or negative query resolution step widths are not accepted"),
    ("/api/v1/query_range", {"query": "up", "start": "0", "end": "11001", "step": "1"}, 400, "bad_data",
     "exceeded maximum resolution of 11,000 points per timeseries"),
    ("/api/v1/query_range", {"query": "up[1m]", "start": "0", "end": "5", "step": "1"}, 400, "bad_data",
     'invalid expression type "range vector" for range query'),
])
def test_bad_queries_are_json_errors(
    tmp_path: Path, path: str, params: dict[str, str], status: int, kind: str, message: str
) -> None:
    """Bad parameters and syntax errors (with line:column) are 400 bad_data, evaluation errors 422 execution."""

    async def body(client: httpx.AsyncClient) -> None:
        response = await client.get(path, params=params)
        answer = response.json()
        assert (response.status_code, answer["status"], answer["errorType"]) == (status, "error", kind)
        assert message in answer["error"]

    run_queries(tmp_path, body)


def test_the_point_cap_is_prometheus_11000(tmp_path: Path) -> None:
    """Exactly 11,000 steps are answered; the cap refuses only ranges with more."""

    async def body(client: httpx.AsyncClient) -> None:
        params = {"query": "1", "start": "0", "end": str(MAX_POINTS_PER_SERIES), "step": "1"}
        data = ((await client.get("/api/v1/query_range", params=params)).json())["data"]
        assert len(data["result"][0]["values"]) == MAX_POINTS_PER_SERIES + 1

    run_queries(tmp_path, body)


def test_the_openapi_paths_describe_the_registered_routes() -> None:
    """OPENAPI_PATHS names exactly the routes add_status_page registers, each with its GET operation."""
    app = web.Application()
    config = parse_config("state_path: ':memory:'\nhost: {enabled: false}\ndefault_rules: false\n", "agent.yaml")
    add_status_page(app, Agent(config))
    assert set(app.router.paths) == set(OPENAPI_PATHS)
    assert all(set(operations) == {"get"} for operations in OPENAPI_PATHS.values())


def test_graph_links_lead_to_the_status_page_charting_their_expression(tmp_path: Path) -> None:
    """An alert's generatorURL (/graph?g0.expr=...&g0.tab=1, as Prometheus builds it) redirects to the status page
    with the expression, instead of a 404."""
    expr = 'up{job="a"} == 0'

    async def body(client: httpx.AsyncClient) -> None:
        link = generator_url("", expr)
        response = await client.get(link)
        assert (response.status_code, response.headers["Location"]) == (302, "./?expr=up%7Bjob%3D%22a%22%7D+%3D%3D+0")
        page = await client.get(link, follow_redirects=True)
        assert page.status_code == 200 and page.url.path == "/" and page.url.params["expr"] == expr
        assert 'id="expression-section"' in page.text
        bare = await client.get("/graph")
        assert bare.headers["Location"] == "./"

    run_queries(tmp_path, body)


# -- the page in a real browser ---------------------------------------------------


# What the page's CPU chart plots: its line needs two host collections in the store.
CPU_BUSY = '1 - avg(rate(node_cpu_seconds_total{mode="idle"}[1m]))'


@asynccontextmanager
async def running_agent(tmp_path: Path) -> AsyncIterator[Agent]:
    """An agent watching the host, one failing service (restarted by a playbook) and one healthy and scraped
    service, two always-firing rules (one silenced) and a webhook receiver that refuses connections."""
    (tmp_path / "always.yaml").write_text(RULES)
    port = free_port()
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nstate_path: ':memory:'\ninterval: 200ms\nhost: {{enabled: true, interval: 200ms}}\n"
        "default_rules: false\nrule_files: [always.yaml]\nevaluation: {interval: 100ms}\n"
        "notify:\n  receivers: [{name: hook, webhook: {url: 'http://127.0.0.1:1/hook', timeout: 1s}}]\n"
        "  route: {receiver: hook, group_wait: 0s}\n"
        "services:\n"
        "  db:\n    checks:\n      - {name: port, tcp: {address: '127.0.0.1:1'}, interval: 100ms, timeout: 100ms}\n"
        "    restart: {exec: ['true']}\n"
        f"  web:\n    checks:\n      - {{name: listener, tcp: {{address: '127.0.0.1:{port}'}}, interval: 100ms}}\n"
        f"    scrape: {{url: 'http://127.0.0.1:{port}/metrics', interval: 200ms}}\n"
        "playbooks:\n  - name: restart-db\n    when: [{check_failed: {service: db, check: port}}]\n"
        "    steps: [{capture: {exec: [echo, 'db stack: waiting on lock <1>']}}, {restart: {}}]\n"
    )
    agent = Agent(parse_config(config.read_text(), str(config)), config_path=str(config))
    await agent.start()
    try:
        silences = agent.silences()
        assert silences is not None
        now = agent.clock()
        silences.add(new_silence([Matcher("alertname", MatchOp.EQ, "AlwaysMuted")], now, now + 3600, "tester",
                                 "muted for the status page"), now)

        async def query(expr: str) -> list[object]:
            answer: list[object] = (await client.get("/api/v1/query", params={"query": expr})).json()["data"]["result"]
            return answer

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client, asyncio.timeout(10):
            while len((await client.get("/api/v1/alerts")).json()["data"]["alerts"]) < 2 or \
                    agent.ready("db") is not False or agent.ready("web") is not True or \
                    not (await client.get("/api/v1/status")).json()["data"]["incidents"] or \
                    agent.last_scrape("web") is None or \
                    not await query(CPU_BUSY) or not await query("healwatch_notifications_total"):
                await asyncio.sleep(0.05)
        yield agent
    finally:
        await agent.stop()


async def chromium(url: str, profile: Path, *args: str) -> bytes:
    """Run headless Chromium on ``url``; its output (the DOM with --dump-dom)."""
    process = await asyncio.create_subprocess_exec(
        require_binary("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", *args, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(20):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    return out


def test_the_page_shows_services_alerts_and_charts_in_chromium(tmp_path: Path) -> None:
    """Rendered by Chromium, the page names each service with its check states, the firing alert and draws charts."""
    require_binary("chromium")
    screenshot = tmp_path / "status.png"

    async def main() -> str:
        async with running_agent(tmp_path) as agent:
            assert agent.server is not None
            url = f"http://127.0.0.1:{agent.server.port}/"
            dom = await chromium(url, tmp_path / "profile", "--dump-dom")
            await chromium(url, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,900",
                           "--hide-scrollbars")
            return dom.decode()

    dom = asyncio.run(main())
    services = dom.split('id="services"')[1].split("</section>")[0]
    assert '<th scope="row">db</th>' in services and '<th scope="row">web</th>' in services
    assert "failing" in services and "connection refused" in services.lower()
    assert ">healthy<" in services and ">serving<" in services and ">not ready<" in services
    scrape_cells = re.findall(r'<td class="scrape">(.*?)</td>', services)
    assert len(scrape_cells) == 2 and "not scraped" in scrape_cells[0]  # db, then web: scraped, its own /metrics
    assert ">up<" in scrape_cells[1] and re.search(r"[1-9]\d* samples · [\d.]+ (ms|µs|s) · <time", scrape_cells[1])
    alerts = dom.split('id="alerts"')[1].split("</section>")[0]
    assert "AlwaysOn" in alerts and ">firing<" in alerts and "always firing, for the status page" in alerts
    silences = dom.split('id="silences"')[1].split("</section>")[0]
    (silence_id,) = re.findall(r"silence ([0-9a-f-]+)</div>", silences)
    assert '<code>alertname="AlwaysMuted"</code>' in silences and ">active<" in silences
    assert "tester" in silences and "muted for the status page" in silences
    muted_row = alerts.split("AlwaysMuted")[1].split("</tr>")[0]
    assert ">muted<" in muted_row and f"by silence {silence_id}" in muted_row
    assert ">muted<" not in alerts.split("AlwaysOn")[1].split("</tr>")[0]
    notifications = dom.split('id="notifications"')[1].split("</section>")[0]
    assert re.search(r'<p id="outbox">Outbox: <span class="state warn">[1-9]\d* pending</span>', notifications)
    hook_row = notifications.split('<th scope="row">hook</th>')[1].split("</tr>")[0]
    assert re.search(r'<td>0</td><td><span class="state warn">[1-9]\d*</span></td><td>0</td>', hook_row)
    incidents = dom.split('id="incidents-section"')[1].split("</section>")[0]
    assert "restart-db" in incidents and "<strong>restart</strong>" in incidents and ">succeeded<" in incidents
    assert re.search(r"took [\d.]+ (ms|µs|s)", incidents)
    assert re.search(r'<span class="muted step-duration"> · [\d.]+ (ms|µs|s)</span>', incidents)
    assert ('<details class="capture"><summary>captured output</summary><pre>db stack: waiting on lock &lt;1&gt;\n</pre>'
            in incidents)  # the capture's output, as text
    history = dom.split('id="check-history"')[1].split("</section>")[0]
    strips = dict(re.findall(r'<div class="strip" data-check="([^"]+)">(.*?)</svg>', history))
    assert set(strips) == {"db/port", "web/listener"}
    assert "down now" in strips["db/port"] and 'fill="var(--bad)"' in strips["db/port"]
    assert "up now" in strips["web/listener"] and 'fill="var(--ok)"' in strips["web/listener"]
    assert 'fill="var(--bad)"' not in strips["web/listener"]
    charts = dom.split('id="charts"')[1].split("</section>")[0]
    for title in ("CPU busy", "Memory used", "Probe latency: db", "Probe latency: web"):
        assert title in charts
    assert charts.count("<svg") == 4 and '<path d="M' in charts
    assert '<section id="problem" hidden=""' in dom  # no fetch or chart error was shown
    assert re.search(r'<p id="updated"[^>]*>updated \d\d:\d\d:\d\d UTC</p>', dom)  # UTC, as the CLI and API
    assert screenshot.stat().st_size > 20_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("HEALWATCH_KEEP_ARTIFACTS"):
        shutil.copyfile(screenshot, REPO / "bench" / "results" / "status.png")


def test_the_page_charts_the_expression_of_a_graph_link_in_chromium(tmp_path: Path) -> None:
    """Opened through /graph?g0.expr=..., the page shows the expression and charts its series with their labels."""
    require_binary("chromium")

    async def main() -> str:
        async with running_agent(tmp_path) as agent:
            assert agent.server is not None
            # Not the copies from web's scrape of the agent's own /metrics, which carry exported_service.
            url = f"http://127.0.0.1:{agent.server.port}" + generator_url("", 'probe_success{exported_service=""}')
            return (await chromium(url, tmp_path / "profile", "--dump-dom")).decode()

    dom = asyncio.run(main())
    section = dom.split('id="expression-section"')[1].split("</section>")[0]
    assert not section.startswith(" hidden")
    assert '<code id="expression">probe_success{exported_service=""}</code>' in section
    assert "2 series" in section and section.count("<svg") == 1 and '<path d="M' in section
    assert 'probe_success{check="port", service="db"}' in section and 'service="web"' in section


def test_the_page_shows_incidents_with_steps_and_healing_state(tmp_path: Path) -> None:
    """Incidents with their steps, a cut-off service and a suspended auto-heal in the status data are rendered.

    The status data is served as written here, since the agent reports incidents only once a playbook ran.
    """
    status = {
        "build": {"version": "0.1.0"}, "startedAt": "2026-01-01T00:00:00Z",
        "config": {"file": "agent.yaml", "lastReloadSuccessful": True, "errors": []},
        "rules": {"files": [], "groups": 0, "lastReloadSuccessful": True, "errors": []},
        "services": {"api": {
            "ready": False, "process": {"pid": None, "up": False, "reason": "no process matches", "pidChanges": 0},
            "checks": [], "scrape": None,
            "healing": {"maintenance": False, "suspendedReason": "restart budget spent", "trafficCutBy": "abc123"},
        }},
        "alerts": [],
        "incidents": [{
            "id": "abc123", "service": "api", "playbook": "restart-api", "trigger": "check:health",
            "startedAt": "2026-01-01T00:00:05Z", "endedAt": None, "outcome": "escalated", "dryRun": False,
            "detail": "still unhealthy after 2 restarts",
            "steps": [
                {"index": 0, "action": "cut_traffic", "backend": "readiness", "result": "ok", "error": ""},
                {"index": 1, "action": "restart", "backend": "exec", "result": "failed", "error": "exit status 1"},
            ],
        }],
    }

    async def status_handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": status})

    config = parse_config("state_path: ':memory:'\nhost: {enabled: false}\ndefault_rules: false\n", "agent.yaml")

    async def main() -> str:
        async with status_page_server(Agent(config), status_handler) as server:
            url = f"http://127.0.0.1:{server.port}/"
            return (await chromium(url, tmp_path / "profile", "--dump-dom")).decode()

    dom = asyncio.run(main())
    incidents = dom.split('id="incidents-section"')[1].split("</section>")[0]
    assert "hidden" not in incidents.split(">")[0]
    assert ">escalated<" in incidents and "restart-api" in incidents and "still unhealthy after 2 restarts" in incidents
    assert "<strong>cut_traffic</strong>" in incidents and "<strong>restart</strong>" in incidents
    assert ">failed<" in incidents and "exit status 1" in incidents
    services = dom.split('id="services"')[1].split("</section>")[0]
    assert ">traffic cut<" in services and "by incident abc123" in services
    assert ">auto-heal suspended<" in services and "restart budget spent" in services
    assert ">down<" in services and "no process matches" in services
