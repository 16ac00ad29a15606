"""The API's protection: the bearer token, and the middleware that checks it and turns errors into JSON.

Reads are open unless ``api.auth: all``; every mutating request needs the bearer
token, and without a configured token mutations are refused (403), never open.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import structlog

from agent.config import ApiConfig
from agent.http import web
from agent.http.responses import error

log = structlog.get_logger("healwatch.api")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = web.Handler


def api_token(config: ApiConfig) -> str | None:
    """The configured token (file first, then environment), or None when there is none."""
    if config.token_file:
        token = Path(config.token_file).read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get(config.token_env, "").strip()
    return token or None


def unauthorized(token_env: str) -> web.Response:
    """401 with the challenge RFC 6750 asks for, and what a client must send."""
    response = error(401, "unauthorized", "missing or wrong bearer token: send the header "
                     f"'Authorization: Bearer <token>' (healwatch's CLI sends the token from {token_env})")
    response.headers["WWW-Authenticate"] = 'Bearer realm="healwatch"'
    return response


def bearer_credentials(authorization: str) -> bytes:
    """The token of a ``Bearer <token>`` header (scheme in any case, RFC 7235), or b"" for anything else.

    The server hands undecodable header bytes over as surrogates; they can never match
    a token, and must not raise while being compared.
    """
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return b""
    return credentials.strip().encode("utf-8", "surrogateescape")


def protect(config: ApiConfig, token: str | None) -> web.Middleware:
    """Middleware: bearer-token checks, and JSON errors (no tracebacks) for API paths."""

    async def middleware(request: web.Request, handler: Handler) -> web.Response:
        path = request.path
        is_api = path.startswith("/api/") or path == "/-/reload"
        if not is_api:
            return await handler(request)
        needs_token = request.method in MUTATING or config.auth == "all"
        if needs_token and path != "/api/v1/openapi.json":
            if token is None:
                return error(403, "forbidden", "no API token is configured (api.token_file or the "
                             f"{config.token_env} variable); mutating endpoints are disabled")
            if not hmac.compare_digest(bearer_credentials(request.headers.get("Authorization", "")), token.encode()):
                log.warning("API request with a missing or wrong token", method=request.method, path=path,
                            peer=request.remote)
                return unauthorized(config.token_env)
        try:
            if request.method in MUTATING:
                await request.read()  # enforces api.max_body_bytes before any handler runs
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, "bad_data", f"request body larger than {config.max_body_bytes} bytes")
        except web.HTTPException as exc:
            return error(exc.status, "bad_data" if exc.status < 500 else "internal", exc.reason)

    return middleware
