"""The OpenAPI document, told true.

FastAPI's generated document knows the parameters and bodies, but not what the guards, the error
handler and the hand-rendered data responses really do. This post-processing step derives, for every
operation, from its route's guard (:func:`sensorhub.api.routes.route_guard`) and declared parameters:

- the status codes it really returns — 400 (bad input; every token route also refuses unknown query
  parameters), 401/403/429 (credentials), 404 (``{id}`` routes), 406 (content negotiation), 409, 413
  (bodies), 503 (credential store or database busy) — and never FastAPI's phantom 422 (validation errors
  are rendered as 400 by :mod:`sensorhub.api.errors`);
- the error body of its family (Akenza ``Error`` as JSON, or ``ProblemDetails`` under ``/ngsi-ld/``);
- the media types and schemas of its success body (:data:`openapi_schemas.DATA_RESPONSES`);
- the headers clients rely on: ``Link``, ``NGSILD-Results-Count``, ``X-RateLimit-*``, ``Retry-After``,
  ``WWW-Authenticate``.

tests/contract/test_openapi.py pins the result; tests/contract/test_schemathesis.py checks real
responses against it.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from sensorhub.api import openapi_schemas as S
from sensorhub.api.errors import INFLUX_V1_PATHS, INFLUX_V2_PATHS
from sensorhub.api.routes import iter_api_routes, route_guard
from sensorhub.kit.query_params import declared_query_params

SECURITY_SCHEMES = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A Personal Access Token or API key: `Authorization: Bearer shub_pat_…`",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "An organisation API key",
    },
    "session": {"type": "apiKey", "in": "cookie", "name": "sensorhub_session", "description": "Web session"},
}

DESCRIPTIONS = {
    400: "Bad input: an unknown or invalid parameter or body field (the message names it)",
    401: "No, malformed, unknown, expired or revoked credential",
    403: "Credential lacks the scope (insufficient_scope), client address not allowed, or no right here",
    404: "Not found, or not visible to this credential (the same answer)",
    406: "The Accept header asks for a media type this route does not serve",
    409: "Conflicts with existing data",
    410: "Gone (expired)",
    413: "Request body, or what it would create, is over a limit (the message names it)",
    415: "Content-Encoding not supported, or a gzip body that cannot be decompressed",
    429: "Rate limit exceeded (per credential), or too many failed attempts",
    501: "A feature of the standard this server does not implement (the message names it)",
    503: "Temporarily unavailable (credential store or database busy); retry",
}

UNSAFE = frozenset({"post", "put", "patch", "delete"})

# Statuses a route returns beyond what its guard and parameters imply (domain rules), by path.
EXTRA_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/api/auth/login"): (401, 429),
    ("get", "/api/datahub/exports/{export_id}/download"): (403, 404, 410),
    ("get", "/readyz"): (503,),
    ("get", "/api/data"): (404,),  # unknown organisation / department
    ("post", "/api/timeseries/v2/query"): (404, 409),  # a series' entity not found / in several orgs
    ("post", "/api/datahub/export"): (404, 409),
    ("get", "/v3/assets"): (404,),  # unknown workspaceId
    ("delete", "/api/orgs/{org}/invitations/{invitation_id}"): (409,),  # already accepted/declined/cancelled
    ("post", "/api/orgs/{org}/members"): (404,),  # an unknown workspace
    # Writes naming devices in the body: not found / in several organisations; gzip bodies: 415.
    ("post", "/api/v2/write"): (404, 409, 415),
    ("post", "/write"): (404, 409, 415),
    ("post", "/api/gateway/ingest"): (404, 409, 415),
    # Leaked-token reports: unsigned or badly signed, reporting off, too many reports.
    ("post", "/api/tokens/leaked"): (401, 403, 429),
}


def _statuses(route: APIRoute, method: str, kind: str) -> set[int]:
    path_params = "{" in route.path_format
    has_params = bool(path_params or declared_query_params(route.dependant) or route.dependant.header_params)
    has_body = route.body_field is not None or "requestBody" in (route.openapi_extra or {})
    out = _guard_statuses(method, kind)
    if has_params or has_body or kind in ("scope", "token"):
        out.add(400)
    if path_params:
        out.add(404)
        if kind in ("scope", "token"):
            out.add(409)  # an entity id that exists in several organisations the token reads (NGSILD-Tenant)
    if has_body:
        out.add(413)
    if any(h.alias.lower() == "accept" for h in _flat_headers(route)):
        out.add(406)
    out |= set(EXTRA_STATUSES.get((method, route.path_format), ()))
    if (route.openapi_extra or {}).get("x-refused-parameters"):
        out.add(501)
    return out


def _guard_statuses(method: str, kind: str) -> set[int]:
    """What the route's guard (and its write lock) may answer."""
    if kind in ("scope", "token"):
        return {401, 403, 429, 503}
    out: set[int] = {503} if method in UNSAFE else set()
    if kind == "session":
        out |= {401, 403}
        if method in ("post", "put", "patch"):
            out.add(409)
    return out


def _flat_headers(route: APIRoute) -> list[Any]:
    out: list[Any] = []
    todo = [route.dependant]
    while todo:
        d = todo.pop()
        out.extend(d.header_params)
        todo.extend(d.dependencies)
    return out


def _header_refs(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {n: {**S.HEADERS[n], "required": n in required} for n in names}


def _error_schema(path: str) -> str:
    if path in INFLUX_V2_PATHS:
        return "InfluxError"
    if path in INFLUX_V1_PATHS:
        return "InfluxV1Error"
    return "ProblemDetails" if path.startswith("/ngsi-ld/") else "Error"


def _error_response(status: int, path: str, kind: str) -> dict[str, Any]:
    media = S.PROBLEM if path.startswith("/ngsi-ld/") else S.JSON
    resp: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {media: {"schema": S.ref(_error_schema(path))}},
    }
    headers: dict[str, Any] = {}
    if status == 401 and kind in ("scope", "token"):
        headers.update(_header_refs("WWW-Authenticate", required=("WWW-Authenticate",)))
    if status == 429:
        headers.update(_header_refs("Retry-After", required=("Retry-After",)))
        headers.update(_header_refs("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))
    if status == 503:
        headers.update(_header_refs("Retry-After"))
    if headers:
        resp["headers"] = headers
    return resp


def _success(op: dict[str, Any], method: str, route: APIRoute, kind: str) -> None:
    responses = op.setdefault("responses", {})
    code = next((c for c in responses if c.startswith("2")), "200")
    resp = responses.setdefault(code, {"description": "Success"})
    spec = S.DATA_RESPONSES.get((method, route.path_format))
    if spec is not None:
        description, media, header_names = spec
        resp["description"] = description
        resp["content"] = {m: {"schema": copy.deepcopy(schema)} for m, schema in media.items()}
        if header_names:
            resp.setdefault("headers", {}).update(_header_refs(*header_names))
    elif code == "204":
        resp.pop("content", None)
    if kind in ("scope", "token"):
        resp.setdefault("headers", {}).update(
            _header_refs("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
        )


def _operation(op: dict[str, Any], method: str, route: APIRoute, guard: tuple[str, str | None]) -> None:
    kind, scope = guard
    if kind in ("scope", "token"):
        op["security"] = [{"bearerToken": []}, {"apiKey": []}]
        if scope:
            op["description"] = (op.get("description") or "") + f"\n\nRequires scope: `{scope}`"
            op.setdefault("x-required-scope", scope)
    elif kind == "session":
        op["security"] = [{"session": []}]
    else:
        op["security"] = []
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    _success(op, method, route, kind)
    for status in sorted(_statuses(route, method, kind)):
        declared = responses.get(str(status))
        rendered = _error_response(status, route.path_format, kind)
        if declared:  # keep a route's own description, add the body and headers
            rendered["description"] = declared.get("description") or rendered["description"]
        responses[str(status)] = rendered


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The application's OpenAPI document (computed once, then cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = schema.setdefault("components", {})
    comps["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    schemas = comps.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(copy.deepcopy(S.SCHEMAS))
    paths = schema.get("paths", {})
    for route in iter_api_routes(app.routes):
        guard = route_guard(route)
        if guard is None or not route.include_in_schema:
            continue
        path_item = paths.get(route.path_format, {})
        for method in route.methods or ():
            op = path_item.get(method.lower())
            if op is not None:
                _operation(op, method.lower(), route, guard)
    app.openapi_schema = schema
    return schema
