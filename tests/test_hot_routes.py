"""Hot routes (sensorhub.api.hot) answer exactly as FastAPI's own routing does: same status, body and
headers for valid, missing, malformed and wrong credentials, unknown parameters, other methods and
near-miss paths; the same OpenAPI document; the same route template in the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorhub import metrics
from sensorhub.api import hot
from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World, bearer

# Values that differ between any two requests (not between the two ways of routing).
VARYING = {"x-request-id", "date", "x-ratelimit-remaining", "ratelimit-remaining", "ratelimit", "retry-after"}


@pytest.fixture
def plain(settings: Settings, ctx: AppContext) -> Iterator[TestClient]:
    """The same application over the same database, without its hot routes."""
    app = create_app(settings, ctx)
    app.router.routes[:] = [r for r in app.router.routes if not isinstance(r, hot.HotRoute)]
    with TestClient(app, base_url="http://testserver") as c:
        yield c


# The same request id and trace for both ways, so that error bodies can be compared whole.
TRACE = {"X-Request-Id": "hot-route-case", "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}


def _answer(c: TestClient, method: str, url: str, headers: dict[str, str]) -> tuple[int, Any, Any]:
    r = c.request(method, url, headers={**TRACE, **headers})
    kept = sorted((k, "" if k in VARYING else v) for k, v in r.headers.items())
    try:
        body: Any = r.json()
    except ValueError:
        return r.status_code, r.content, kept
    if isinstance(body, dict):  # when it was answered, and the error's own id
        body = {k: ("" if k in ("timestamp", "errorId") else v) for k, v in body.items()}
    return r.status_code, body, kept


def test_every_hot_path_is_served_by_a_hot_route(app: FastAPI) -> None:
    installed = [r.path for r in app.router.routes if isinstance(r, hot.HotRoute)]
    assert installed == list(hot.HOT_PATHS)


def test_hot_routes_answer_as_the_plain_routing(
    app: FastAPI, client: TestClient, plain: TestClient, world: World
) -> None:
    world.org("acme")
    world.user("ann@example.com", "acme", "member")
    token = world.pat("ann@example.com", ["timeseries"])
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    credentials: list[dict[str, str]] = [
        bearer(token),
        {},
        bearer(bad),
        {"Authorization": "Basic abc"},
    ]
    cases: list[tuple[str, str, dict[str, str]]] = []
    for path in hot.HOT_PATHS:
        for cred in credentials:
            for url in (path, path + "?x=1", f"{path}?token={token}", path + "/", path.upper()):
                cases.append(("GET", url, cred))
            for method in ("HEAD", "POST", "DELETE", "OPTIONS"):
                cases.append((method, path, cred))
        cases.append(("GET", path, {**bearer(token), "NGSILD-Tenant": "acme"}))
        cases.append(("GET", path, {**bearer(token), "NGSILD-Tenant": "nope"}))
    statuses = set()
    for method, url, headers in cases:
        fast, slow = _answer(client, method, url, headers), _answer(plain, method, url, headers)
        assert fast == slow, (method, url, headers)
        statuses.add(fast[0])
    assert {200, 401, 404, 405}.issubset(statuses), statuses  # the cases reach more than the happy path


def test_hot_routes_leave_the_openapi_document_and_metrics_as_they_were(
    app: FastAPI, client: TestClient, plain: TestClient, world: World
) -> None:
    assert client.get("/api/openapi.json").json() == plain.get("/api/openapi.json").json()
    world.org("acme")
    world.user("ann@example.com", "acme", "member")
    token = world.pat("ann@example.com", ["timeseries"])
    counter = metrics.http_requests.labels("GET", "/api/managements", "200")
    before = counter._value.get()
    assert client.get("/api/managements", headers=bearer(token)).status_code == 200
    assert counter._value.get() == before + 1
