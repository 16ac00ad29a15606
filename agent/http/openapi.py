"""The OpenAPI document of the JSON API (``/api/v1/openapi.json``); the query and page routes add their paths."""

from __future__ import annotations

from typing import Any

from agent import __version__
from agent.http.healing import MAX_INCIDENTS


def _error_responses() -> dict[str, Any]:
    return {
        "401": {"description": "Missing or wrong bearer token."},
        "403": {"description": "No API token is configured; mutations are disabled."},
    }


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _mutation(
    summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
    query: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A token-protected operation on one service."""
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [_path_parameter("service"), *(query or [])],
        "responses": {**responses, "404": {"description": "Unknown service."}, **_error_responses()},
    }
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return operation


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "healwatch agent API", "version": __version__},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/v1/status": {"get": {"summary": "Services, checks, processes, active alerts, config and rule load state.",
                                   "responses": {"200": {"description": "Status."}, **_error_responses()}}},
        "/api/v1/alerts": {"get": {"summary": "Active alerts, in the shape of Prometheus' /api/v1/alerts.",
                                   "responses": {"200": {"description": "Alerts."}, **_error_responses()}}},
        "/api/v1/rules": {"get": {
            "summary": "Rule groups, in the shape of Prometheus' /api/v1/rules.",
            "parameters": [{"name": "type", "in": "query", "schema": {"type": "string", "enum": ["alert", "record"]}}],
            "responses": {"200": {"description": "Rule groups."}, **_error_responses()}}},
        "/-/reload": {"post": {"summary": "Re-read the config and rule files; errors keep the running config.",
                               "security": [{"bearer": []}],
                               "responses": {"200": {"description": "Reloaded."},
                                             "422": {"description": "Invalid config; nothing changed."},
                                             **_error_responses()}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OK"}}}},
        "/api/v1/incidents": {"get": {
            "summary": "The healing journal's incidents, newest first.",
            "parameters": [{"name": "service", "in": "query", "schema": {"type": "string"}},
                           {"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INCIDENTS, "default": 50}}],
            "responses": {"200": {"description": "Incidents."}, "400": {"description": "Bad limit."},
                          **_error_responses()}}},
        "/api/v1/incidents/{id}": {"get": {
            "summary": "One incident with its steps.",
            "parameters": [_path_parameter("id")],
            "responses": {"200": {"description": "The incident."}, "400": {"description": "Malformed id."},
                          "404": {"description": "No such incident."}, **_error_responses()}}},
        "/api/v1/heal/{service}": {"post": _mutation(
            "Run the service's playbook (its first, or the one named) now and answer with its incident, outcome and "
            "steps (a long call).",
            {"200": {"description": "The finished run."}, "409": {"description": "The run was refused."}},
            body={"type": "object", "properties": {"dry_run": {"type": "boolean"}, "playbook": {"type": "string"}}},
            query=[{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}},
                   {"name": "playbook", "in": "query", "schema": {"type": "string"}}])},
        "/api/v1/heal/{service}/reset": {"post": _mutation(
            "Lift an auto-heal suspension and forget the service's restart budget.",
            {"200": {"description": "Reset."}})},
        "/api/v1/traffic/{service}/cut": {"post": _mutation(
            "Take the service out of rotation through its traffic backend.",
            {"200": {"description": "Cut."}, "409": {"description": "No backend, a run is going on, or it failed."}})},
        "/api/v1/traffic/{service}/restore": {"post": _mutation(
            "Put the service back into rotation through its traffic backend.",
            {"200": {"description": "Restored."},
             "409": {"description": "No backend, a run is going on, or it failed."}})},
        "/api/v1/maintenance/{service}": {
            "post": _mutation("Switch maintenance on: no healing of the service until it is off.",
                              {"200": {"description": "Maintenance on."}}),
            "delete": _mutation("Switch maintenance off.", {"200": {"description": "Maintenance off."}}),
        },
        "/api/v1/silences": {
            "get": {"summary": "Silences, Alertmanager-like: active, then pending, then expired.",
                    "responses": {"200": {"description": "Silences."}, **_error_responses()}},
            "post": {
                "summary": "Add a silence; answers its silenceID.",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["matchers"],
                    "properties": {
                        "matchers": {"type": "array", "minItems": 1, "items": {"oneOf": [
                            {"type": "string", "example": 'alertname="HighLatency"'},
                            {"type": "object", "required": ["name", "value"], "properties": {
                                "name": {"type": "string"}, "value": {"type": "string"},
                                "isRegex": {"type": "boolean"}, "isEqual": {"type": "boolean"}}},
                        ]}},
                        "startsAt": {"type": "string", "format": "date-time", "description": "Default: now."},
                        "endsAt": {"type": "string", "format": "date-time", "description": "Default: start + 1h."},
                        "createdBy": {"type": "string"},
                        "comment": {"type": "string"},
                    }}}}},
                "responses": {"200": {"description": "Added."},
                              "400": {"description": "Malformed JSON, invalid matchers or times."},
                              **_error_responses()}},
        },
        "/api/v1/notify/test": {"post": {
            "summary": "Send a synthetic firing, then resolved, notification to one receiver through the outbox; "
                       "answers what the receiver said to each attempt (waits up to 30 s for its final answers).",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["receiver"],
                "properties": {"receiver": {"type": "string"},
                               "labels": {"type": "object", "additionalProperties": {"type": "string"},
                                          "description": "Labels of the test alert, beside alertname."}}}}}},
            "responses": {"200": {"description": "Each notification's attempts: outcome, HTTP status, detail."},
                          "400": {"description": "Malformed JSON, receiver or labels."},
                          "404": {"description": "No such receiver, or one without a kind."},
                          **_error_responses()}}},
        "/api/v1/silences/{id}": {"delete": {
            "summary": "Expire a silence.",
            "security": [{"bearer": []}],
            "parameters": [_path_parameter("id")],
            "responses": {"200": {"description": "Expired."}, "400": {"description": "Malformed id."},
                          "404": {"description": "No such silence."}, "409": {"description": "Already expired."},
                          **_error_responses()}}},
    },
}
