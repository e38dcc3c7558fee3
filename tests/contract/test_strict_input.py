"""Request bodies and query strings refuse what they do not know: a typo is a 400 naming it, in the
family's error shape, never a silently applied default (and never FastAPI's 422)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorhub.api.routes import iter_api_routes, route_guard
from tests.builders import World, bearer
from tests.entities.helpers import problem

AKENZA_KEYS = {"timestamp", "path", "status", "error", "message", "requestId", "errorId", "traceId"}
WINDOW = {"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"}


def _token(world: World) -> str:
    world.org("acme")
    world.user("a@acme.test", "acme", "owner")
    return world.pat("a@acme.test")


def _bad_request_naming(r, name: str) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == 400, (r.status_code, r.text)
    body = r.json()
    assert AKENZA_KEYS <= set(body), body
    assert name in body["message"], body
    return str(body["message"])


def test_misspelt_body_field_is_a_400_naming_it(client: TestClient, world: World) -> None:
    h = bearer(_token(world))
    series = [{"entity_id": "urn:ngsi-ld:Device:x", "attribute": "t"}]
    # Top level: "agregation" used to be dropped and the default avg applied.
    r = client.post(
        "/api/timeseries/v2/query", json={**WINDOW, "series": series, "agregation": "max"}, headers=h
    )
    msg = _bad_request_naming(r, "agregation")
    assert "unknown field" in msg
    # Nested: the series item names its position.
    r = client.post(
        "/api/timeseries/v2/query", json={**WINDOW, "series": [{**series[0], "agg": "max"}]}, headers=h
    )
    assert "series.0.agg" in _bad_request_naming(r, "agg")
    # Export requests too.
    r = client.post(
        "/api/datahub/export", json={**WINDOW, "series": series, "format": "csv", "fromat": "x"}, headers=h
    )
    _bad_request_naming(r, "fromat")


def test_validation_errors_are_400_never_422(client: TestClient, world: World) -> None:
    h = bearer(_token(world))
    r = client.post(
        "/api/timeseries/v2/query", json={**WINDOW, "series": [], "resolution": "many"}, headers=h
    )
    _bad_request_naming(r, "resolution")
    r = client.get("/api/devices", params={"limit": "ten"}, headers=h)
    _bad_request_naming(r, "limit")
    r = client.get("/ngsi-ld/v1/entities", params={"offset": "x"}, headers=h)
    assert "offset" in problem(r, 400, "BadRequestData")["detail"]


def test_unknown_query_parameter_is_a_400_naming_it(client: TestClient, world: World) -> None:
    h = bearer(_token(world))
    r = client.get(
        "/api/timeseries/v2/entities/urn:x/data", params={**WINDOW, "agregation": "max"}, headers=h
    )
    msg = _bad_request_naming(r, "'agregation'")
    assert "aggregation" in msg  # the message lists what the route accepts
    _bad_request_naming(client.get("/api/data", params={"metrc": "t"}, headers=h), "'metrc'")
    _bad_request_naming(client.get("/v3/assets", params={"pagesize": "5"}, headers=h), "'pagesize'")
    r = client.get("/api/sensors", params={"limt": "5", "ofset": "1"}, headers=h)
    assert "'limt', 'ofset'" in _bad_request_naming(r, "limt")
    # NGSI-LD: the same rule, as ProblemDetails.
    body = problem(
        client.get("/ngsi-ld/v1/entities", params={"typ": "Device"}, headers=h), 400, "BadRequestData"
    )
    assert "'typ'" in body["detail"]
    # Declared parameters (aliases included) still pass.
    assert (
        client.get("/api/data", params={"from": "2026-01-01", "to": "2026-01-02"}, headers=h).status_code
        == 200
    )
    assert client.get("/v3/assets", params={"page": 0, "size": 5}, headers=h).status_code == 200


def test_unknown_query_parameter_after_authentication(client: TestClient) -> None:
    # Without a credential the answer is the 401, whatever the query string holds.
    r = client.get("/api/devices", params={"bogus": "1"})
    assert r.status_code == 401


def test_every_token_route_refuses_an_unknown_query_parameter(
    app: FastAPI, client: TestClient, world: World
) -> None:
    """Generated from the route table: a new token route gets the rule without anyone listing it."""
    h = bearer(_token(world))
    checked = []
    for route in iter_api_routes(app.routes):
        guard = route_guard(route)
        if guard is None or guard[0] not in ("scope", "token"):
            continue
        path = re.sub(r"\{[^}]+\}", "urn:ngsi-ld:Device:any", route.path)
        for method in sorted(route.methods or ()):
            kw = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            r = client.request(method, path, params={"bogus": "1"}, headers=h, **kw)
            assert r.status_code == 400, (method, route.path, r.status_code, r.text)
            body = r.json()
            text = (
                body.get("message") or body.get("detail") or body.get("error") or body["errors"][0]["message"]
            )
            assert "'bogus'" in text, (method, route.path, text)
            checked.append((method, route.path))
    assert len(checked) >= 15, checked
