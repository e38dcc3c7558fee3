"""Every route declares exactly one guard; token routes declare a known scope."""

from __future__ import annotations

from fastapi import FastAPI

from sensorhub.api.routes import iter_api_routes, route_guard
from sensorhub.auth.scopes import ALL_SCOPES


def test_every_route_declares_a_guard(app: FastAPI) -> None:
    routes = list(iter_api_routes(app.routes))
    assert len(routes) > 20
    missing = [f"{sorted(r.methods)} {r.path}" for r in routes if route_guard(r) is None]
    assert missing == [], f"routes without exactly one guard: {missing}"
    for r in routes:
        kind, scope = route_guard(r)  # type: ignore[misc]
        if kind == "scope":
            assert scope in ALL_SCOPES, r.path


# Not management: introspection takes the token itself; a leak report is signed by a secret scanner
# (HMAC, docs/tokens.md#leaked-token-reports) and only ever revokes.
NOT_MANAGEMENT = {"/api/tokens/self": ("token", None), "/api/tokens/leaked": ("public", None)}


def test_management_routes_need_a_session(app: FastAPI) -> None:
    for r in iter_api_routes(app.routes):
        if r.path in NOT_MANAGEMENT:
            assert route_guard(r) == NOT_MANAGEMENT[r.path], r.path
        elif r.path.startswith("/api/tokens") or r.path.startswith("/api/orgs"):
            assert route_guard(r) == ("session", None), r.path


def test_openapi_declares_security_schemes(app: FastAPI) -> None:
    schema = app.openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerToken"]["scheme"] == "bearer"
    assert schemes["apiKey"]["name"] == "x-api-key"
    assert schema["paths"]["/api/tokens/self"]["get"]["security"] == [{"bearerToken": []}, {"apiKey": []}]


def test_swagger_ui_is_served_without_a_cdn(client) -> None:  # type: ignore[no-untyped-def]
    import re

    page = client.get("/api/docs")
    assert page.status_code == 200 and "/api/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/api/docs/static/") for a in assets), assets
    for a in assets:
        assert client.get(a).status_code == 200
