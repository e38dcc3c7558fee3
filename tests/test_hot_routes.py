"""Hot routes (sensorhub.api.hot) answer exactly as FastAPI's own routing does: same status, body and
headers for valid, missing, malformed and wrong credentials, unknown parameters, other methods and
near-miss paths; the same OpenAPI document; the same route template in the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Header, Query
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.responses import Response

from sensorhub import metrics
from sensorhub.api import hot
from sensorhub.app import create_app
from sensorhub.auth.dependencies import AnyToken, Public
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
    installed = [r for r in app.router.routes if isinstance(r, hot.HotRoute)]
    assert [r.path for r in installed] == list(hot.HOT_PATHS)
    # Each of them takes the direct lane (no FastAPI dependency solving): the comparisons below cover it.
    assert all(r.direct is not None for r in installed)


def test_the_direct_lane_is_only_for_routes_that_declare_nothing_but_a_guard() -> None:
    class OtherHeader(AnyToken):
        async def __call__(self, request: Any, other: str | None = Header(None, alias="X-Other")) -> Any:  # type: ignore[override]
            return None

    a = FastAPI()

    @a.get("/ok")
    async def ok(p: Any = Depends(AnyToken())) -> Response:
        return Response(b"{}")

    @a.get("/public", dependencies=[Depends(Public())])
    async def public() -> Response:
        return Response(b"{}")

    @a.get("/query")
    async def query(p: Any = Depends(AnyToken()), q: str = Query("")) -> Response:
        return Response(b"{}")

    @a.get("/dict")
    async def as_dict(p: Any = Depends(AnyToken())) -> dict[str, str]:
        return {}

    @a.get("/sync")
    def sync(p: Any = Depends(AnyToken())) -> Response:
        return Response(b"{}")

    @a.get("/two", dependencies=[Depends(Public())])
    async def two(p: Any = Depends(AnyToken())) -> Response:
        return Response(b"{}")

    @a.get("/header")
    async def header(p: Any = Depends(OtherHeader())) -> Response:
        return Response(b"{}")

    @a.get("/status", status_code=201)
    async def status(p: Any = Depends(AnyToken())) -> Response:
        return Response(b"{}")

    lanes = {r.path: hot.direct_lane(r) is not None for r in a.routes if isinstance(r, APIRoute)}
    assert lanes == {
        "/ok": True,
        "/public": True,
        "/query": False,
        "/dict": False,
        "/sync": False,
        "/two": False,
        "/header": False,
        "/status": False,
    }


def test_hot_routes_answer_as_the_plain_routing(
    app: FastAPI, client: TestClient, plain: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways share one failed-auth budget: the 30th failure would be a 429 for whichever came second.
    monkeypatch.setattr(world.ctx.auth.settings, "failed_auth_limit", 10_000)
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
        for tenant in ("acme", "nope", "", "acme/nope", "ACME"):
            cases.append(("GET", path, {**bearer(token), "NGSILD-Tenant": tenant}))
        cases.append(("GET", path, {**bearer(token), "ngsild-tenant": "nope"}))
        cases.append(("GET", path, {"x-api-key": token}))
        cases.append(("GET", path, {"x-api-key": bad}))
    statuses = set()
    for method, url, headers in cases:
        fast, slow = _answer(client, method, url, headers), _answer(plain, method, url, headers)
        assert fast == slow, (method, url, headers)
        statuses.add(fast[0])
    assert {200, 401, 404, 405}.issubset(statuses), statuses  # the cases reach more than the happy path
    # The tenant header given twice: FastAPI reads the first value; so does the direct lane.
    for path in hot.HOT_PATHS:
        for values in (("acme", "nope"), ("nope", "acme")):
            raw = [*bearer(token).items(), *(("NGSILD-Tenant", v) for v in values), *TRACE.items()]
            fast, slow = client.get(path, headers=raw), plain.get(path, headers=raw)
            assert (fast.status_code, fast.content) == (slow.status_code, slow.content), (path, values)


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
