"""`/openapi.json`: OpenAPI 3.1 generated from the route table and the msgspec types it names,
so the description cannot drift from what the server does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec

from api.problems import CONTENT_TYPE, STATUS, Problem
from ledger.statement import Signature, Statement

_PARAM = re.compile(r"{(\w+)}")
_UUID_SCHEMA = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
}
_REASONS = {
    400: "Malformed request",
    401: "Missing, unknown or revoked token",
    403: "The token does not allow this",
    404: "No such resource",
    408: "The request body did not arrive in time",
    409: "Statement id already recorded with other content",
    413: "Body too large",
    415: "Wrong content type",
    422: "Statement refused (signature, key or rule)",
    503: "Unavailable or busy; try again",
}


@dataclass(frozen=True)
class Param:
    """A query parameter: a UUID, a non-negative integer, or a lowercase hex SHA-256."""

    name: str
    kind: str = "uuid"  # "uuid", "int", "position" (-1 or more) or "sha256"
    required: bool = False


_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "uuid": _UUID_SCHEMA,
    "int": {"type": "integer", "minimum": 0},
    "position": {"type": "integer", "minimum": -1},
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}


@dataclass(frozen=True)
class Route:
    """One endpoint: the router and `/openapi.json` are both built from this table."""

    method: str
    path: str
    name: str
    summary: str
    result: Any  # the msgspec type of a 2xx body, or a media type string
    who: str  # "anyone", "signature", or the token scopes that may call it
    statuses: tuple[int, ...] = ()  # problem statuses this route may answer with
    query: tuple[Param, ...] = ()  # query parameters


class Submission(msgspec.Struct, forbid_unknown_fields=True):
    """The envelope POSTed to `/v1/statements` (docs/formats.md)."""

    statement: Statement
    sig: Signature


def document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes."""
    return _document(routes)


@cache
def _document(routes: tuple[Route, ...]) -> dict[str, Any]:
    types = [r.result for r in routes if not isinstance(r.result, str)]
    schemas, components = msgspec.json.schema_components(
        [*types, Problem, Submission], ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip([*types, Problem, Submission], schemas, strict=True))
    components = _ecma_patterns(components)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, by_type)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Accord",
            "version": "1",
            "description": "Signed, event-sourced shared decision records for children's care",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(route: Route, by_type: dict[Any, Any]) -> dict[str, Any]:
    success = 201 if route.method == "POST" else 200
    if isinstance(route.result, str):
        schema = {"type": "string"} if route.result.startswith("text/") else {}
        content = {route.result: {"schema": schema}}
    else:
        content = {"application/json": {"schema": by_type[route.result]}}
    responses: dict[str, Any] = {str(success): {"description": "OK", "content": content}}
    if route.method == "POST":
        responses["200"] = {"description": "Idempotent repeat", "content": content}
    problem = {CONTENT_TYPE: {"schema": by_type[Problem]}}
    for status in route.statuses:
        assert status in STATUS.values(), status
        responses[str(status)] = {"description": _REASONS[status], "content": problem}
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "description": f"Who: {route.who}.",
        "responses": responses,
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": _UUID_SCHEMA}
        for name in _PARAM.findall(route.path)
    ]
    parameters += [
        {
            "name": param.name,
            "in": "query",
            "required": param.required,
            "schema": _PARAM_SCHEMAS[param.kind],
        }
        for param in route.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.who not in ("anyone", "signature"):
        operation["security"] = [{"bearer": []}]
    if route.method == "POST":
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": by_type[Submission]}},
        }
    return operation


def _ecma_patterns(schema: Any) -> Any:
    """Patterns as ECMA-262 regexes (JSON Schema's dialect): our `\\Z` is its `$`."""
    if isinstance(schema, dict):
        return {
            key: value[:-2] + "$"
            if key == "pattern" and isinstance(value, str) and value.endswith("\\Z")
            else _ecma_patterns(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_ecma_patterns(item) for item in schema]
    return schema
