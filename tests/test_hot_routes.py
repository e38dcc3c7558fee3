"""Hot routes (sensorhub.api.hot) answer exactly as FastAPI's own routing does: same status, body and
headers for valid, missing, malformed and wrong credentials, unknown parameters, other methods and
near-miss paths; the same OpenAPI document; the same route template in the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
    return _normal(c.request(method, url, headers={**TRACE, **headers}))


def _normal(r: Any) -> tuple[int, Any, Any]:
    """Status, body and headers, without what differs between any two requests."""
    kept = sorted((k, "" if k in VARYING else v) for k, v in r.headers.items())
    try:
        body: Any = r.json()
    except ValueError:
        return r.status_code, r.content, kept
    if isinstance(body, dict):  # when it was answered, the error's own id, and a countdown in whole
        # seconds (/api/tokens/self: it ticks when the two requests straddle a second under load)
        body = {
            k: ("" if k in ("timestamp", "errorId", "expires_in_seconds") else v) for k, v in body.items()
        }
    return r.status_code, body, kept


def test_every_hot_path_is_served_by_a_hot_route(app: FastAPI) -> None:
    installed = [r for r in app.router.routes if isinstance(r, hot.HotRoute)]
    assert [r.path for r in installed] == list(hot.HOT_PATHS)
    # Each of them takes the direct lane (no FastAPI dependency solving): the comparisons below cover it.
    assert all(r.direct is not None for r in installed)


def test_the_direct_lane_is_only_for_routes_that_declare_a_guard_and_plain_parameters() -> None:
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
    async def query(
        p: Any = Depends(AnyToken()), q: str = Query(""), n: int = Query(1, ge=1, le=9)
    ) -> Response:
        return Response(b"{}")

    @a.get("/pattern")
    async def pattern(p: Any = Depends(AnyToken()), q: str = Query("", pattern="^a")) -> Response:
        return Response(b"{}")

    @a.get("/float")
    async def as_float(p: Any = Depends(AnyToken()), q: float = Query(1.0)) -> Response:
        return Response(b"{}")

    @a.get("/unbounded")
    async def unbounded(p: Any = Depends(AnyToken()), n: int = Query(1)) -> Response:
        return Response(b"{}")

    @a.get("/alias")
    async def alias(p: Any = Depends(AnyToken()), q: str = Query("", alias="Q")) -> Response:
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
        "/query": True,  # plain parameters: the lane reads them (or lets FastAPI answer)
        "/pattern": False,
        "/float": False,
        "/unbounded": False,
        "/alias": False,
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
            fast, slow = _normal(client.get(path, headers=raw)), _normal(plain.get(path, headers=raw))
            assert fast == slow, (path, values)


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


def _minutes(n: int, start: datetime, key: str = "temperature") -> list[dict[str, Any]]:
    return [
        {"timestamp": _z(start + timedelta(minutes=i)), "data": {key: i * 0.5, "humidity": 40.0}}
        for i in range(n)
    ]


def _z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_data_read_answers_as_the_plain_routing(
    app: FastAPI, client: TestClient, plain: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /api/timeseries/v2/entities/{entity_id}/data (a template, parameters read by the direct lane):
    raw and downsampled reads, every encoding, each parameter valid, missing, malformed or out of bounds,
    unknown, other-tenant and ambiguous entities, a token's time window, credentials and methods."""
    monkeypatch.setattr(world.ctx.auth.settings, "failed_auth_limit", 10_000)
    dev = "urn:ngsi-ld:Device:hot-1"
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    world.org("acme")
    world.org("other")
    world.user("ann@example.com", "acme", "member")
    world.user("ann@example.com", "other", "member")
    world.user("bob@example.com", "other", "member")
    for org in ("acme", "other"):
        world.entity(org, "main", dev)
    world.entity("other", "main", "urn:ngsi-ld:Device:theirs")
    token = world.pat("ann@example.com", ["timeseries", "ingest"], "acme", organisations=["acme"])
    both = world.pat("ann@example.com", ["timeseries"], "both")
    windowed = world.pat(
        "ann@example.com", ["timeseries"], "windowed", organisations=["acme"], time_start=t0 + timedelta(hours=6),
        time_end=t0 + timedelta(hours=12),
    )  # fmt: skip
    ingest_only = world.pat("ann@example.com", ["ingest"], "ingest")
    r = client.post(f"/v3/devices/{dev}/backfill", json=_minutes(1440, t0), headers=bearer(token))
    assert r.status_code == 200, r.text
    day = f"start_time={_z(t0)}&end_time={_z(t0 + timedelta(days=1))}"
    base = f"/api/timeseries/v2/entities/{dev}/data"
    queries = [
        day + "&resolution=200",
        day + "&resolution=2000",  # raw
        day + "&resolution=1",
        day + "&resolution=100000",
        day,
        f"{day}&resolution=200&attribute=temperature",
        f"{day}&resolution=200&attribute=temperature&attribute=humidity&attribute=temperature",
        f"{day}&resolution=200&attribute=nope",
        f"{day}&resolution=200&" + "&".join(f"attribute=a{i}" for i in range(101)),
        *(
            f"{day}&resolution=200&aggregation={a}"
            for a in ("min", "max", "sum", "count", "first", "last", "median", "")
        ),
        *(
            f"{day}&resolution={v}"
            for v in ("0", "100001", "abc", "007", "+5", " 5", "1e3", "", "2.0", "9" * 30)
        ),
        f"{day}&resolution=200&resolution=abc",
        f"{day}&resolution=abc&resolution=200",
        *(f"{day}&resolution=200&format={f}" for f in ("json", "csv", "arrow", "xml", "")),
        f"{day}&resolution=200&topic=default",
        f"{day}&resolution=200&topic=other",
        f"{day}&resolution=200&topic=",
        f"{day}&resolution=200&topic=" + "t" * 201,
        f"{day}&resolution=200&unknown=1",
        f"start_time={_z(t0)}&resolution=200",
        "resolution=200",
        "",
        f"start_time=yesterday&end_time={_z(t0)}",
        f"start_time={_z(t0 + timedelta(days=1))}&end_time={_z(t0)}",
        f"start_time={_z(t0)}&end_time={_z(t0)}",
        f"start_time=2024-01-01T00:00:00%2B02:00&end_time={_z(t0 + timedelta(days=7))}&resolution=50",
        f"start_time={_z(t0 - timedelta(days=365))}&end_time={_z(t0 - timedelta(days=364))}",  # no data
    ]
    paths = [base, "/api/timeseries/v2/entities/urn:ngsi-ld:Device:nope/data",
             "/api/timeseries/v2/entities/urn:ngsi-ld:Device:theirs/data",
             "/api/timeseries/v2/entities/%20/data"]  # fmt: skip
    cases: list[tuple[str, str, dict[str, str]]] = []
    for q in queries:
        cases.append(("GET", f"{base}?{q}", bearer(token)))
    for p in paths[1:]:
        cases.append(("GET", f"{p}?{day}&resolution=200", bearer(token)))
    good = f"{base}?{day}&resolution=200"
    for accept in ("text/csv", "application/vnd.apache.arrow.stream", "application/json", "text/html", "*/*"):
        cases.append(("GET", good, {**bearer(token), "Accept": accept}))
    for cred in ({}, bearer(token[:-1] + "A"), bearer(ingest_only), bearer(windowed), bearer(both),
                 {**bearer(both), "NGSILD-Tenant": "acme"}, {**bearer(both), "NGSILD-Tenant": "other"},
                 {**bearer(both), "NGSILD-Tenant": "nope"}, {"x-api-key": token}):  # fmt: skip
        cases.append(("GET", good, cred))
        cases.append(("GET", f"{base}?resolution=abc", cred))  # auth comes before parameter errors
    for method in ("HEAD", "POST", "DELETE", "OPTIONS"):
        cases.append((method, good, bearer(token)))
    cases += [("GET", good.replace("/data?", "/data/?"), bearer(token)), ("GET", good.upper(), bearer(token))]
    statuses = set()
    for method, url, headers in cases:
        fast, slow = _answer(client, method, url, headers), _answer(plain, method, url, headers)
        assert fast == slow, (method, url, headers)
        statuses.add(fast[0])
    assert {200, 400, 401, 403, 404, 405, 409}.issubset(statuses), statuses
    # The downsampled day really is one: 144 ten-minute buckets, the windowed token's clamped to its window.
    body = client.get(good, headers=bearer(token)).json()
    assert body["bucket_seconds"] == 600 and len(body["timestamps"]) == 144
    clamped = client.get(good, headers=bearer(windowed)).json()
    assert clamped["timestamps"][0] == "2024-01-01T06:00:00Z" and len(clamped["timestamps"]) == 36


def test_the_device_list_answers_as_the_plain_routing(
    app: FastAPI, client: TestClient, plain: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /api/devices (parameters read by the direct lane): pages, slices and types, each parameter
    valid, malformed, out of bounds or repeated, unknown parameters, credentials of other reach, scopes
    and tenants, and methods."""
    monkeypatch.setattr(world.ctx.auth.settings, "failed_auth_limit", 10_000)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    world.org("acme", ("main", "lab"))
    world.org("other")
    world.user("ann@example.com", "acme", "member")
    world.user("ann@example.com", "other", "member")
    for i in range(5):
        world.entity(
            "acme", "main" if i < 3 else "lab", f"urn:ngsi-ld:Device:hot-{i}", "Lab" if i % 2 else "Device"
        )
    world.entity("other", "main", "urn:ngsi-ld:Device:theirs")
    key = world.api_key("acme", ["ingest"], name="in")
    for i in range(5):
        r = client.post(
            f"/v3/devices/urn:ngsi-ld:Device:hot-{i}/backfill", json=_minutes(3 + i, t0), headers=bearer(key)
        )
        assert r.status_code == 200, r.text
    token = world.pat("ann@example.com", ["telemetry"], "acme", organisations=["acme"])
    both = world.pat("ann@example.com", ["telemetry"], "both")
    windowed = world.pat("ann@example.com", ["telemetry"], "windowed", time_end=t0 + timedelta(minutes=2))
    no_scope = world.pat("ann@example.com", ["timeseries"], "ts")
    queries = [
        "",
        "limit=2",
        "limit=2&offset=3",
        "offset=4",
        "type=Lab",
        "type=Lab&limit=1&offset=1",
        "type=",
        "type=nope",
        "type=Lab&type=Device",
        *(f"limit={v}" for v in ("0", "1000", "1001", "abc", "007", "+5", " 5", "1e3", "", "2.0", "9" * 30)),
        *(f"offset={v}" for v in ("-1", "1000000", "1000001", "x", "")),
        "limit=2&limit=abc",
        "limit=abc&limit=2",
        "unknown=1",
    ]
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("GET", f"/api/devices?{q}", bearer(token)) for q in queries
    ]
    for cred in ({}, bearer(token[:-1] + "A"), bearer(no_scope), bearer(windowed), bearer(both),
                 {**bearer(both), "NGSILD-Tenant": "acme"}, {**bearer(both), "NGSILD-Tenant": "other"},
                 {**bearer(both), "NGSILD-Tenant": "nope"}, {"x-api-key": token}):  # fmt: skip
        cases.append(("GET", "/api/devices", cred))
        cases.append(("GET", "/api/devices?limit=abc", cred))  # auth comes before parameter errors
    for method in ("HEAD", "POST", "DELETE", "OPTIONS"):
        cases.append((method, "/api/devices", bearer(token)))
    cases += [("GET", "/api/devices/", bearer(token)), ("GET", "/API/DEVICES", bearer(token))]
    statuses = set()
    for method, url, headers in cases:
        fast, slow = _answer(client, method, url, headers), _answer(plain, method, url, headers)
        assert fast == slow, (method, url, headers)
        statuses.add(fast[0])
    assert {200, 400, 401, 403, 405}.issubset(statuses), statuses
    page = client.get("/api/devices", headers=bearer(both)).json()
    assert [d["id"] for d in page] == [f"urn:ngsi-ld:Device:hot-{i}" for i in range(5)]  # theirs: no series
    assert page[4]["attributes"]["temperature"]["value"] == 3.0  # the latest of 7 points


def test_route_path_strips_the_root_path_as_starlette_does() -> None:
    """The hot routes match the path below an ASGI root_path (a server mounted under a prefix) as
    Starlette's routes do (starlette._utils.get_route_path), without importing Starlette's private helper."""
    from sensorhub.api.hot import route_path

    cases = [
        ("/api/x", "", "/api/x"),
        ("/sub/api/devices", "/sub", "/api/devices"),
        ("/sub", "/sub", ""),
        ("/subx/y", "/sub", "/subx/y"),  # a root_path is a whole segment
        ("/other/y", "/sub", "/other/y"),
    ]
    for path, root, expected in cases:
        assert route_path({"type": "http", "path": path, "root_path": root}) == expected, (path, root)
