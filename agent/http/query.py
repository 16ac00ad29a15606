"""PromQL queries in the shape of Prometheus' HTTP API: ``/api/v1/query`` and ``/api/v1/query_range``.

A query never runs on the event loop, where it would stall checks, rules and healing:
the samples it needs are copied from the store on the loop in slices of a fraction of
a millisecond (the store is not thread-safe), then it is evaluated and encoded in a
worker thread. ``api.query_max_samples``, ``api.query_timeout`` and
``api.query_max_concurrency`` bound the work, as Prometheus' ``--query.*`` flags do.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from agent.http import web
from agent.http.responses import error
from agent.http.view import QueryView
from rules.durations import parse_duration
from rules.golang.fmt import format_float
from rules.promql import (
    MatrixResult,
    PromQLEvalError,
    PromQLSyntaxError,
    Result,
    ScalarResult,
    StringResult,
    VectorResult,
    parse,
)
from rules.promql.ast import SCALAR, VECTOR, Expr
from rules.promql.budget import QueryBudget, QueryTimeoutError
from rules.promql.snapshot import Snapshot

# Prometheus refuses range queries that would return more points per series than this.
MAX_POINTS_PER_SERIES = 11_000

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from unix seconds (``1700000000.5``) or RFC 3339; ValueError otherwise."""
    if _NUMBER_RE.fullmatch(text):
        seconds = float(text)
        # Beyond this a millisecond timestamp no longer fits the store's int64 (and no sample is there).
        if math.isfinite(seconds) and abs(seconds) < 9e15:
            return round(seconds * 1000)
    match = _RFC3339_RE.fullmatch(text)
    if match is not None:
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        try:
            tz = UTC if zone in "Zz" else timezone(
                (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            )
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
        except ValueError:
            pass  # a well-formed but impossible date (month 13, Feb 30, offset 25:00)
        else:
            millis = round(Decimal(fraction or "0") * 1000)
            return round(moment.timestamp()) * 1000 + millis
    raise ValueError(f'cannot parse "{text}" to a valid timestamp')


def parse_step(text: str) -> int:
    """Milliseconds from float seconds (``15``, ``0.5``) or a Prometheus duration (``15s``, ``1m30s``)."""
    if _NUMBER_RE.fullmatch(text):
        seconds = Decimal(text)
        # Go keeps a duration in int64 nanoseconds; Prometheus refuses steps beyond that.
        if abs(seconds) < Decimal(2**63) / 10**9:
            return round(seconds * 1000)
    else:
        try:
            return round(parse_duration(text) * 1000)
        except ValueError:
            pass
    raise ValueError(f'cannot parse "{text}" to a valid duration')


def add_query_routes(app: web.Application, agent: QueryView) -> None:
    """Register ``/api/v1/query`` and ``/api/v1/query_range``."""
    queries = _Queries(agent)
    app.router.add_get("/api/v1/query", queries.query)
    app.router.add_get("/api/v1/query_range", queries.query_range)


class _BadParameter(Exception):
    """A request parameter Prometheus would reject with ``bad_data``."""


# Evaluates a parsed query against its snapshot within its budget.
_Evaluate = Callable[[Snapshot, QueryBudget], Result]


class _Queries:
    def __init__(self, agent: QueryView) -> None:
        self.agent = agent
        self.slots = asyncio.Semaphore(agent.config.api.query_max_concurrency)

    async def query(self, request: web.Request) -> web.Response:
        engine = self.agent.engine
        try:
            expr = request.query.get("query", "")
            raw_time = request.query.get("time")
            t_ms = round(self.agent.clock() * 1000) if raw_time is None else _param(parse_time, "time", raw_time)
            node = _parse(expr)
        except _BadParameter as exc:
            return error(400, "bad_data", str(exc))
        return await self._run(node, t_ms, t_ms, lambda snapshot, budget: engine.instant(node, snapshot, t_ms, budget))

    async def query_range(self, request: web.Request) -> web.Response:
        engine = self.agent.engine
        params = request.query
        try:
            expr = params.get("query", "")
            start_ms = _param(parse_time, "start", params.get("start", ""))
            end_ms = _param(parse_time, "end", params.get("end", ""))
            step_ms = _param(parse_step, "step", params.get("step", ""))
            if end_ms < start_ms:
                raise _BadParameter('invalid parameter "end": end timestamp must not be before start time')
            if step_ms <= 0:
                raise _BadParameter('invalid parameter "step": zero or negative query resolution step widths '
                                    "are not accepted. Try a positive integer")
            if (end_ms - start_ms) // step_ms > MAX_POINTS_PER_SERIES:
                raise _BadParameter(f"exceeded maximum resolution of {MAX_POINTS_PER_SERIES:,} points per "
                                    "timeseries. Try decreasing the query resolution (?step=XX)")
            node = _parse(expr)
            if node.type not in (SCALAR, VECTOR):
                raise _BadParameter(f'invalid parameter "query": invalid expression type "{node.type}" for range '
                                    "query, must be Scalar or instant Vector")
        except _BadParameter as exc:
            return error(400, "bad_data", str(exc))
        return await self._run(node, start_ms, end_ms,
                               lambda snapshot, budget: engine.range(node, snapshot, start_ms, end_ms, step_ms, budget))

    async def _run(self, node: Expr, start_ms: int, end_ms: int, evaluate: _Evaluate) -> web.Response:
        """Wait for a slot, copy the samples ``node`` reads on the loop, evaluate and encode in a thread."""
        api = self.agent.config.api
        budget = QueryBudget(api.query_max_samples, api.query_timeout)
        try:
            async with asyncio.timeout(budget.time_left()):
                await self.slots.acquire()
        except TimeoutError:
            return error(503, "timeout", str(QueryTimeoutError("query queue")))
        try:
            snapshot = Snapshot(node, start_ms, end_ms, self.agent.engine.lookback_ms)
            for _ in snapshot.fill(self.agent.store, budget):
                await asyncio.sleep(0)  # let checks, rules and other requests run between slices
            body = await asyncio.to_thread(_encode, evaluate, snapshot, budget, end_ms)
        except QueryTimeoutError as exc:
            return error(503, "timeout", str(exc))
        except PromQLEvalError as exc:
            return error(422, "execution", str(exc))
        except asyncio.CancelledError:
            budget.cancelled = True  # the worker thread stops at its next charge
            raise
        finally:
            self.slots.release()
        return web.Response(text=body, content_type="application/json; charset=utf-8")


def _param(convert: Callable[[str], int], name: str, text: str) -> int:
    try:
        return convert(text)
    except ValueError as exc:
        raise _BadParameter(f'invalid parameter "{name}": {exc}') from None


def _parse(expr: str) -> Expr:
    """The parsed expression; a syntax error (with its line:column) is a bad ``query`` parameter."""
    try:
        return parse(expr)
    except PromQLSyntaxError as exc:
        raise _BadParameter(f'invalid parameter "query": {exc}') from None
    except RecursionError:
        raise _BadParameter('invalid parameter "query": expression is nested too deeply') from None


def _encode(evaluate: _Evaluate, snapshot: Snapshot, budget: QueryBudget, t_ms: int) -> str:
    """The success body of an evaluation (a large result takes long to encode too: this runs in the thread)."""
    return json.dumps({"status": "success", "data": _result_json(evaluate(snapshot, budget), t_ms)})


def _result_json(result: Result, t_ms: int) -> dict[str, Any]:
    """A result as Prometheus' API encodes it: ``[unix seconds, "value"]`` pairs, values as strings."""
    if isinstance(result, ScalarResult):
        return {"resultType": "scalar", "result": _point(t_ms, result.value)}
    if isinstance(result, StringResult):
        return {"resultType": "string", "result": [_seconds(t_ms), result.value]}
    if isinstance(result, VectorResult):
        return {"resultType": "vector", "result": [
            {"metric": dict(labels), "value": _point(t_ms, value)} for labels, value in result.samples
        ]}
    assert isinstance(result, MatrixResult)
    return {"resultType": "matrix", "result": [
        {"metric": dict(labels), "values": [_point(t, v) for t, v in points]} for labels, points in result.series
    ]}


def _point(t_ms: int, value: float) -> list[Any]:
    return [_seconds(t_ms), format_float(value, "f", -1)]


def _seconds(t_ms: int) -> int | float:
    """Whole seconds print without a fraction, as Prometheus prints them."""
    whole, millis = divmod(t_ms, 1000)
    return whole if millis == 0 else t_ms / 1000


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/query": {"get": {
        "summary": "Evaluate a PromQL expression at one instant, in the shape of Prometheus' /api/v1/query.",
        "parameters": [
            {"name": "query", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "time", "in": "query", "description": "RFC 3339 or unix seconds; default now.",
             "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "A vector, matrix, scalar or string result."},
            "400": {"description": "Bad parameter or PromQL syntax error (with line:column)."},
            "422": {"description": "The expression could not be evaluated."},
            "401": {"description": "Missing or wrong bearer token (with api.auth: all)."},
        },
    }},
    "/api/v1/query_range": {"get": {
        "summary": "Evaluate a PromQL expression at steps over a range, in the shape of Prometheus' "
                   "/api/v1/query_range.",
        "parameters": [
            {"name": "query", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "start", "in": "query", "required": True, "description": "RFC 3339 or unix seconds.",
             "schema": {"type": "string"}},
            {"name": "end", "in": "query", "required": True, "description": "RFC 3339 or unix seconds.",
             "schema": {"type": "string"}},
            {"name": "step", "in": "query", "required": True,
             "description": f"Seconds or a duration (15s); at most {MAX_POINTS_PER_SERIES} points per series.",
             "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "A matrix result."},
            "400": {"description": "Bad parameter, too many points, or PromQL syntax error (with line:column)."},
            "422": {"description": "The expression could not be evaluated."},
            "401": {"description": "Missing or wrong bearer token (with api.auth: all)."},
        },
    }},
}
