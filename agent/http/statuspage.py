"""The status page at ``/``: one self-contained HTML document (``statuspage.html``: inline CSS and
JavaScript, no external assets) that polls ``/api/v1/status`` and draws its charts from
``/api/v1/query_range``, so it is served together with the query API (``query.py``).

``/graph`` is where Prometheus' links point (an alert's generatorURL, Slack's "Source", the templates'
``graphLink`` and ``tableLink``): on the agent it leads to the status page charting that expression.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import urlencode

from agent.http import query, web
from agent.http.view import QueryView


def add_status_page(app: web.Application, agent: QueryView) -> None:
    """Register ``GET /`` (the status page) and the query API it draws from on the agent's app."""
    html = resources.files("agent.http").joinpath("statuspage.html").read_bytes()

    async def index(request: web.Request) -> web.Response:
        # The page polls the API itself; a cached copy would only be stale markup.
        return web.Response(body=html, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    async def graph(request: web.Request) -> web.Response:
        # Relative, so that behind a proxy's path prefix (external_url's path) it stays under the prefix.
        expr = request.query.get("g0.expr", "")
        raise web.HTTPFound("./?" + urlencode({"expr": expr}) if expr else "./")

    app.router.add_get("/", index)
    app.router.add_get("/graph", graph)
    query.add_query_routes(app, agent)


OPENAPI_PATHS: dict[str, Any] = {
    "/": {"get": {"summary": "The status page: services, checks, traffic, alerts, incidents and charts (HTML).",
                  "responses": {"200": {"description": "A self-contained HTML page.",
                                        "content": {"text/html": {}}}}}},
    "/graph": {"get": {"summary": "Where Prometheus-style links (generatorURL) point: redirects to the status page "
                                  "charting the expression g0.expr.",
                       "parameters": [{"name": "g0.expr", "in": "query", "schema": {"type": "string"}}],
                       "responses": {"302": {"description": "To /?expr=..., the status page with that chart."}}}},
    **query.OPENAPI_PATHS,
}
