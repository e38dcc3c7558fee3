"""The OpenAPI document tells the truth: statuses, media types, schemas and headers, per operation,
derived from the route table — and real answers carry what it promises."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorhub.api.routes import iter_api_routes, route_guard
from tests.builders import World, bearer

SERIES_DATA = "/api/timeseries/v2/entities/{entity_id}/data"


def _ops(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, item in schema["paths"].items() for m, op in item.items()}


def test_no_phantom_422_anywhere(app: FastAPI) -> None:
    schema = app.openapi()
    for (m, p), op in _ops(schema).items():
        assert "422" not in op["responses"], (m, p)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "422" not in json.dumps(schema["paths"])


def test_token_routes_list_the_statuses_their_guard_returns(app: FastAPI) -> None:
    ops = _ops(app.openapi())
    token_routes = 0
    for route in iter_api_routes(app.routes):
        guard = route_guard(route)
        if not route.include_in_schema or guard is None:
            continue
        for method in route.methods or ():
            op = ops[(method.lower(), route.path_format)]
            codes = set(op["responses"])
            if guard[0] in ("scope", "token"):
                token_routes += 1
                assert {"400", "401", "403", "429", "503"} <= codes, (method, route.path, codes)
                assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
                assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True
                ok = next(c for c in codes if c.startswith("2"))
                assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
                    op["responses"][ok]["headers"]
                )
            if guard[0] == "session":
                assert {"401", "403"} <= codes, (method, route.path)
            if "{" in route.path:
                assert "404" in codes, (method, route.path)
            if method in ("POST", "PUT", "PATCH") and "requestBody" in op:
                assert "413" in codes and "400" in codes, (method, route.path)
    assert token_routes >= 18


def test_error_bodies_follow_the_family(app: FastAPI) -> None:
    ops = _ops(app.openapi())
    ngsi = ops[("get", "/ngsi-ld/v1/entities")]["responses"]["400"]["content"]
    assert ngsi == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    akenza = ops[("get", "/v3/assets")]["responses"]["401"]["content"]
    assert akenza == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    err = app.openapi()["components"]["schemas"]["Error"]
    assert {"timestamp", "path", "status", "error", "message", "requestId", "errorId", "traceId"} == set(
        err["required"]
    )


def test_media_types_and_headers_of_the_data_routes(app: FastAPI) -> None:
    ops = _ops(app.openapi())

    def ok(method: str, path: str) -> dict[str, Any]:
        responses = ops[(method, path)]["responses"]
        return responses[next(c for c in responses if c.startswith("2"))]  # type: ignore[no-any-return]

    assert set(ok("get", SERIES_DATA)["content"]) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.arrow.stream",
    }
    assert ok("get", SERIES_DATA)["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EntityData"
    }
    assert set(ok("post", "/api/timeseries/v2/query")["content"]) >= {
        "text/csv",
        "application/vnd.apache.arrow.stream",
    }
    listing = ok("get", "/ngsi-ld/v1/entities")
    assert set(listing["content"]) == {"application/json", "application/ld+json"}
    assert {"Link", "NGSILD-Results-Count"} <= set(listing["headers"])
    assert "406" in ops[("get", "/ngsi-ld/v1/entities/{entity_id}")]["responses"]
    assert "Link" in ok("get", "/api/data")["headers"]
    assert set(ok("get", "/api/datahub/exports/{export_id}/download")["content"]) == {
        "text/csv",
        "application/vnd.apache.parquet",
    }
    assert set(ok("post", "/api/datahub/export")["content"]) == {"application/json", "text/csv"}
    for path in ("/api/devices", "/api/sensors", "/api/data/recent", "/v3/assets", "/api/managements"):
        assert ok("get", path)["content"]["application/json"]["schema"], path
    # Every schema reference resolves.
    schema = app.openapi()
    names = set(schema["components"]["schemas"])
    for ref in _refs(schema):
        assert ref.rsplit("/", 1)[1] in names, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for v in node.values():
            out += _refs(v)
        return out
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_real_answers_carry_the_documented_headers(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("a@acme.test", "acme", "owner")
    h = bearer(world.pat("a@acme.test"))
    r = client.get("/api/devices", headers=h)
    assert r.status_code == 200
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(r.headers)
    r = client.get("/api/devices")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_body_too_large_is_problem_details_under_ngsi_ld(client: TestClient, world: World) -> None:
    limit = client.app.state.ctx.settings.max_body_bytes  # type: ignore[attr-defined]
    r = client.post(
        "/ngsi-ld/v1/entityOperations/query",
        content=b"{" + b" " * limit + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("RequestEntityTooLarge")
    r = client.post(
        "/api/timeseries/v2/query",
        content=b"{" + b" " * limit + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["status"] == 413 and "limit" in r.json()["message"]
