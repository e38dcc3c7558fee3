"""The error wire shapes, pinned (Akenza-style, NGSI-LD ProblemDetails, GraphQL)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.builders import World, bearer

AKENZA_KEYS = {"timestamp", "path", "status", "error", "message", "requestId", "errorId", "traceId"}


def test_401_shape(client: TestClient) -> None:
    r = client.get("/api/tokens/self", headers=bearer("shub_pat_" + "0" * 49))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="sensorhub", error="invalid_token"'
    body = r.json()
    assert AKENZA_KEYS <= set(body)
    assert body["status"] == 401 and body["error"] == "Unauthorized" and body["path"] == "/api/tokens/self"
    assert body["message"] == "Invalid, expired or revoked credentials"
    assert body["requestId"] == r.headers["x-request-id"]


def test_403_insufficient_scope_shape(client: TestClient, world: World) -> None:
    from fastapi import APIRouter, Depends

    from sensorhub.auth.dependencies import RequireScope

    router = APIRouter()

    @router.get("/probe/export")
    async def p(_: object = Depends(RequireScope("export"))) -> dict[str, str]:
        return {}

    client.app.include_router(router)  # type: ignore[attr-defined]
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    token = world.pat("a@example.com", ["entities"])
    r = client.get("/probe/export", headers=bearer(token))
    assert r.status_code == 403
    body = r.json()
    assert AKENZA_KEYS <= set(body)
    assert body["error"] == "Forbidden" and body["code"] == "insufficient_scope"
    assert "'export'" in body["message"]


def test_ngsi_ld_paths_use_problem_details(client: TestClient) -> None:
    from fastapi import APIRouter, Depends

    from sensorhub.auth.dependencies import RequireScope

    router = APIRouter()

    @router.get("/ngsi-ld/v1/probe")
    async def p(_: object = Depends(RequireScope("entities"))) -> dict[str, str]:
        return {}

    client.app.include_router(router)  # type: ignore[attr-defined]
    r = client.get("/ngsi-ld/v1/probe", headers=bearer("shub_pat_" + "0" * 49))
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
    assert body["status"] == 401
    r = client.get("/ngsi-ld/v1/no-such-thing")
    assert r.status_code == 404
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


def test_unknown_route_and_method(client: TestClient) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404 and AKENZA_KEYS <= set(r.json())
    r = client.put("/api/auth/login")
    assert r.status_code == 405 and AKENZA_KEYS <= set(r.json())


def test_validation_errors_name_the_field(client: TestClient) -> None:
    r = client.post("/api/auth/login", json={"email": "x@example.com"})
    assert r.status_code == 400
    assert "password" in r.json()["message"]
    r = client.post("/api/auth/login", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]


def test_graphql_paths_answer_in_the_graphql_shape(client: TestClient) -> None:
    r = client.post("/graphql", json={"query": "{ user { id } }"}, headers=bearer("shub_pat_" + "0" * 49))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["data"] is None
    (err,) = body["errors"]
    assert err["message"] == "Invalid, expired or revoked credentials"
    assert err["extensions"] == {
        "code": "UNAUTHENTICATED",
        "status": 401,
        "requestId": r.headers["x-request-id"],
    }
