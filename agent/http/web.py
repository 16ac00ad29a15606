"""The small web framework the agent's handlers use: requests, responses, HTTP errors, routes and middlewares.

It replaces aiohttp.web (about 10 MiB of memory and 100 ms of import) with the few pieces the agent
needs; ``server.py`` speaks HTTP/1.1 with h11 and hands each complete request to ``Application.handle``.
A GET route also answers HEAD; a path no route has is a 404, a method it lacks a 405, both raised
inside the middlewares so the API's middleware can answer them as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

import structlog

log = structlog.get_logger("healwatch.http")


class HTTPException(Exception):
    """An HTTP error a handler raises (a 500 unless a subclass says otherwise); answered as ``<status>: <reason>``
    text unless a middleware shapes it."""

    status = 500

    def __init__(self, *, reason: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.reason = reason or HTTPStatus(self.status).phrase
        self.headers = dict(headers or {})
        super().__init__(self.reason)

    def response(self) -> Response:
        """The plain-text answer aiohttp gave for the same error."""
        return Response(status=self.status, text=f"{self.status}: {self.reason}", headers=self.headers)


class HTTPFound(HTTPException):
    """A 302 redirect to ``location``."""

    status = 302

    def __init__(self, location: str) -> None:
        super().__init__(headers={"Location": location})


class HTTPBadRequest(HTTPException):
    status = 400


class HTTPNotFound(HTTPException):
    status = 404


class HTTPMethodNotAllowed(HTTPException):
    status = 405


class HTTPRequestEntityTooLarge(HTTPException):
    status = 413


class HTTPServiceUnavailable(HTTPException):
    status = 503


class Headers(Mapping[str, str]):
    """Request headers, looked up in any case; a repeated header's values are joined with commas."""

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._items: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            self._items[key] = f"{self._items[key]}, {value}" if key in self._items else value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Request:
    """One complete request: its head, its path's parameters and its body (read by the server, within its limit)."""

    def __init__(
        self, method: str, target: str, headers: Headers, body: bytes, *, body_too_large: bool = False,
        remote: str | None = None, max_body_bytes: int = 1 << 20,
    ) -> None:
        self.method = method
        raw_path, _, query_string = target.partition("?")
        self.raw_path = raw_path  # routes match it, so that an encoded / stays inside its segment
        self.path = unquote(raw_path, errors="surrogateescape")
        # The first of repeated parameters, as aiohttp's MultiDict.get gives it.
        self.query: dict[str, str] = {}
        for key, value in parse_qsl(query_string, keep_blank_values=True, errors="surrogateescape"):
            self.query.setdefault(key, value)
        self.headers = headers
        self.remote = remote
        self.match_info: dict[str, str] = {}
        self._body = body
        self.body_too_large = body_too_large
        self._max_body_bytes = max_body_bytes

    async def read(self) -> bytes:
        """The body; a 413 when it was larger than the server's limit."""
        if self.body_too_large:
            raise HTTPRequestEntityTooLarge(reason=f"request body larger than {self._max_body_bytes} bytes")
        return self._body


class Response:
    """A whole response: status, headers and body (text is sent as UTF-8)."""

    def __init__(
        self, *, status: int = 200, body: bytes | None = None, text: str | None = None,
        content_type: str | None = None, headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if text is not None:
            self.body = text.encode("utf-8")
            default_type = "text/plain; charset=utf-8"
        else:
            self.body = body or b""
            default_type = "application/octet-stream"
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        else:
            self.headers.setdefault("Content-Type", default_type)


def json_response(data: Any, *, status: int = 200) -> Response:
    """``data`` as a JSON body."""
    return Response(status=status, body=json.dumps(data).encode(), content_type="application/json; charset=utf-8")


Handler = Callable[[Request], Awaitable[Response]]
Middleware = Callable[[Request, Handler], Awaitable[Response]]


class Route:
    """A path pattern (``/api/v1/heal/{service}``: a ``{name}`` is one path segment, ``%2F`` included, and arrives
    decoded) and its handlers by method."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        parts = re.split(r"\{(\w+)\}", pattern)
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts))
        self._regex = re.compile(regex + r"\Z")
        self.handlers: dict[str, Handler] = {}

    def match(self, raw_path: str) -> dict[str, str] | None:
        found = self._regex.match(raw_path)
        if found is None:
            return None
        return {name: unquote(value, errors="surrogateescape") for name, value in found.groupdict().items()}


class Router:
    """The routes, in the order they were added."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    @property
    def paths(self) -> list[str]:
        """Every route's pattern."""
        return list(self._routes)

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        route = self._routes.setdefault(pattern, Route(pattern))
        if method in route.handlers:
            raise ValueError(f"{method} {pattern} has a handler already")
        route.handlers[method] = handler

    def add_get(self, pattern: str, handler: Handler) -> None:
        """GET and HEAD (load balancers and Prometheus' own probes use HEAD)."""
        self.add_route("GET", pattern, handler)
        self.add_route("HEAD", pattern, handler)

    def add_post(self, pattern: str, handler: Handler) -> None:
        self.add_route("POST", pattern, handler)

    def add_delete(self, pattern: str, handler: Handler) -> None:
        self.add_route("DELETE", pattern, handler)

    def resolve(self, request: Request) -> Handler:
        """The handler for the request, its path parameters set; a handler raising 404 or 405 when there is none."""
        for route in self._routes.values():
            params = route.match(request.raw_path)
            if params is None:
                continue
            handler = route.handlers.get(request.method)
            if handler is None:
                allow = ", ".join(sorted(route.handlers))
                return _raising(HTTPMethodNotAllowed(headers={"Allow": allow}))
            request.match_info = params
            return handler
        return _raising(HTTPNotFound())


def _raising(exc: HTTPException) -> Handler:
    async def handler(request: Request) -> Response:
        raise exc

    return handler


class Application:
    """Routes and middlewares; ``handle`` answers one request (an HTTP error raised anywhere becomes its response)."""

    def __init__(self, middlewares: Sequence[Middleware] = ()) -> None:
        self.router = Router()
        self.middlewares = list(middlewares)

    async def handle(self, request: Request) -> Response:
        handler = self.router.resolve(request)
        for middleware in reversed(self.middlewares):
            handler = _wrapped(middleware, handler)
        try:
            return await handler(request)
        except HTTPException as exc:
            return exc.response()
        except Exception:
            log.exception("request failed", method=request.method, path=request.path)
            return HTTPException().response()


def _wrapped(middleware: Middleware, handler: Handler) -> Handler:
    async def call(request: Request) -> Response:
        return await middleware(request, handler)

    return call
