"""GraphQL at /graphql (Datacake's API): the documented queries, auth, scopes, tenancy, cost, batching.

Every test runs on SQLite and PostgreSQL (the ``backend`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from sensorhub.entities.models import Entity
from tests.builders import World, bearer, login

DEV = "urn:ngsi-ld:Device:st-1"


def gql(client: TestClient, query: str, variables: dict[str, Any] | None = None, **headers: str) -> Any:
    r = client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert r.headers["content-type"].startswith("application/json"), r.text
    return r


def backfill(client: TestClient, key: str, device: str, rows: list[dict[str, Any]]) -> None:
    r = client.post(f"/v3/devices/{device}/backfill", json=rows, headers={"x-api-key": key})
    assert r.status_code == 200, r.text


def device(world: World, org: str, ws: str, entity_id: str, type_: str, name: str) -> None:
    e = world.entity(org, ws, entity_id, type_)
    with world.ctx.db.transaction() as s:
        s.get(Entity, e.pk).name = name  # type: ignore[union-attr]


def token_auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


@pytest.fixture
def acme(world: World, client: TestClient) -> dict[str, str]:
    """acme (workspaces main, lab) with two devices with data; globex with one; tokens for both."""
    world.org("acme", ("main", "lab"))
    world.org("globex", ("main",))
    world.user("a@acme.test", "acme", "owner")
    world.user("g@globex.test", "globex", "owner")
    device(world, "acme", "main", DEV, "WeatherStation", "Station one")
    device(world, "acme", "lab", "urn:ngsi-ld:Device:lab-1", "Freezer", "Lab freezer")
    device(world, "globex", "main", "urn:ngsi-ld:Device:secret-1", "SecretType", "Globex secret")
    key = world.api_key("acme", ["ingest"], name="ingest")
    gkey = world.api_key("globex", ["ingest"], name="ingest")
    backfill(
        client,
        key,
        DEV,
        [
            {
                "timestamp": f"2026-01-01T00:0{i}:00Z",
                "data": {"temperature": {"value": 20.0 + i, "unit": "CEL"}},
            }
            for i in range(5)
        ]
        + [{"timestamp": "2026-01-01T00:05:00Z", "data": {"humidity": 40, "status": "ok"}}],
    )
    backfill(
        client,
        key,
        "urn:ngsi-ld:Device:lab-1",
        [{"timestamp": "2026-01-01T00:00:00Z", "data": {"temperature": -18}}],
    )
    backfill(
        client,
        gkey,
        "urn:ngsi-ld:Device:secret-1",
        [{"timestamp": "2026-01-01T00:00:00Z", "data": {"temperature": 99}}],
    )
    return {
        "read": world.pat("a@acme.test", ["entities", "telemetry", "timeseries"], name="read"),
        "entities": world.pat("a@acme.test", ["entities"], name="entities-only"),
        "ingest": world.pat("a@acme.test", ["ingest", "entities"], name="ingest"),
        "globex": world.pat("g@globex.test", ["entities", "telemetry", "timeseries"], name="g"),
    }


def _datacake_documented_queries(client: TestClient, acme: dict[str, str]) -> None:
    h = token_auth(acme["read"])
    r = gql(client, "query { user { id } }", **h)
    assert r.status_code == 200 and r.json()["data"]["user"]["id"]
    ws = gql(client, "query { allWorkspaces { id name } }", **h).json()["data"]["allWorkspaces"]
    assert sorted(w["name"] for w in ws) == ["Lab", "Main"]
    main = next(w["id"] for w in ws if w["name"] == "Main")
    q = (
        "query($ws: String!) { allDevices(inWorkspace: $ws) { id verboseName serialNumber "
        "currentMeasurements(allActiveFields: true) { value field { verboseFieldName fieldName } } } }"
    )
    devs = gql(client, q, {"ws": main}, **h).json()["data"]["allDevices"]
    assert [d["verboseName"] for d in devs] == ["Station one"]
    current = {m["field"]["fieldName"]: m["value"] for m in devs[0]["currentMeasurements"]}
    assert current == {"temperature": 24.0, "humidity": 40.0, "status": "ok"}
    q = """query($id: String!) { device(deviceId: $id) { id
        currentMeasurements { id field { id fieldName verboseFieldName } value time unit }
        currentMeasurement(fieldName: "temperature") { value unit time }
        measurementFields { fieldName unit }
        history(fields: ["temperature"], timerangestart: "2026-01-01T00:00:00Z",
                timerangeend: "2026-01-01T01:00:00Z", resolution: 200) {
          bucketSeconds timestamps fields { fieldName unit values } rows } } }"""
    d = gql(client, q, {"id": DEV}, **h).json()["data"]["device"]
    assert d["currentMeasurement"] == {"value": 24.0, "unit": "CEL", "time": "2026-01-01T00:04:00Z"}
    assert {f["fieldName"] for f in d["measurementFields"]} == {"temperature", "humidity"}
    hist = d["history"]
    assert hist["bucketSeconds"] is None and len(hist["timestamps"]) == 5
    assert hist["fields"] == [
        {"fieldName": "temperature", "unit": "CEL", "values": [20.0, 21.0, 22.0, 23.0, 24.0]}
    ]
    assert hist["rows"][0] == {"time": "2026-01-01T00:00:00Z", "temperature": 20.0}
    # The same as time series v2 says, bucketed too.
    rest = client.get(
        f"/api/timeseries/v2/entities/{DEV}/data",
        params={
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T01:00:00Z",
            "resolution": 2,
            "attribute": "temperature",
        },
        headers=bearer(acme["read"]),
    ).json()
    q2 = q.replace("resolution: 200", "resolution: 2")
    h2 = gql(client, q2, {"id": DEV}, **h).json()["data"]["device"]["history"]
    assert h2["bucketSeconds"] == rest["bucket_seconds"] and h2["timestamps"] == rest["timestamps"]
    assert h2["fields"][0]["values"] == rest["attributes"]["temperature"]


def _every_credential_form_works_and_none_is_a_401(
    client: TestClient, acme: dict[str, str], world: World
) -> None:
    q = "query { user { id kind } }"
    for h in (
        token_auth(acme["read"]),
        bearer(acme["read"]),
        {"x-api-key": world.api_key("acme", ["entities"])},
    ):
        r = gql(client, q, **h)
        assert r.status_code == 200 and r.json()["data"]["user"]["id"], r.text
    for h in ({}, token_auth("shub_pat_nonsense"), bearer(acme["read"][:-3] + "abc")):
        r = gql(client, q, **h)
        assert r.status_code == 401, r.text
        body = r.json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert r.headers["www-authenticate"].startswith("Bearer")
    # GET carries queries (not mutations), authenticated the same way.
    r = client.get("/graphql", params={"query": "{ user { kind } }"}, headers=token_auth(acme["read"]))
    assert r.status_code == 200 and r.json()["data"]["user"]["kind"] == "pat"
    r = client.get("/graphql", params={"query": "{ user { kind } }"})
    assert r.status_code == 401
    r = client.get(
        "/graphql",
        params={"query": 'mutation { recordMeasurements(deviceId: "x", measurements: []) { accepted } }'},
        headers=token_auth(acme["ingest"]),
    )
    assert r.status_code in (400, 405) and r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    r = client.get(
        "/graphql", params={"query": "{ user { id } }", "debug": "1"}, headers=token_auth(acme["read"])
    )
    assert r.status_code == 400 and "debug" in r.json()["errors"][0]["message"]


def _each_field_needs_its_scope(client: TestClient, acme: dict[str, str]) -> None:
    h = token_auth(acme["entities"])
    r = gql(
        client,
        "query($id: String!) { device(deviceId: $id) { id verboseName currentMeasurements { value } } }",
        {"id": DEV},
        **h,
    ).json()
    assert r["data"] is None or r["data"]["device"] is None
    err = r["errors"][0]
    assert err["extensions"] == {"code": "FORBIDDEN", "scope": "telemetry"} and "telemetry" in err["message"]
    q = f'{{ device(deviceId: "{DEV}") {{ history(timerangestart: "2026-01-01T00:00:00Z", timerangeend: "2026-01-02T00:00:00Z") {{ timestamps }} }} }}'
    err = gql(client, q, **h).json()["errors"][0]
    assert err["extensions"]["code"] == "FORBIDDEN" and err["extensions"]["scope"] == "timeseries"
    # Listing needs entities: a telemetry-only token is told so.
    tel = token_auth(acme["read"].replace(acme["read"], acme["read"]))
    assert gql(client, "{ devices { edges { node { id } } } }", **tel).json()["data"]["devices"]["edges"]


def _one_organisation_never_sees_another(client: TestClient, acme: dict[str, str]) -> None:
    g = token_auth(acme["globex"])
    r = gql(
        client,
        "{ allWorkspaces { name organisation { slug } } devices { totalCount edges { node { id type verboseName } } } }",
        **g,
    ).json()
    assert [w["organisation"]["slug"] for w in r["data"]["allWorkspaces"]] == ["globex"]
    assert [e["node"]["id"] for e in r["data"]["devices"]["edges"]] == ["urn:ngsi-ld:Device:secret-1"]
    assert r["data"]["devices"]["totalCount"] == 1
    # acme's device from globex: the same answer as a device that does not exist.
    q = "query($id: String!) { device(deviceId: $id) { id } }"
    theirs = gql(client, q, {"id": DEV}, **g).json()
    nobody = gql(client, q, {"id": "urn:ngsi-ld:Device:nope"}, **g).json()
    assert (
        theirs["errors"][0]["extensions"]["code"] == nobody["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    )
    assert theirs["errors"][0]["message"].replace(DEV, "X") == nobody["errors"][0]["message"].replace(
        "urn:ngsi-ld:Device:nope", "X"
    )
    for ws in ("lab", "acme/lab"):
        err = gql(client, "query($w: String!) { workspace(id: $w) { name } }", {"w": ws}, **g).json()[
            "errors"
        ][0]
        assert err["extensions"]["code"] == "NOT_FOUND" and "Lab" not in err["message"]
    # Filters and aggregates never count the other organisation's devices.
    a = gql(client, '{ aggregate(field: "temperature") { devices max } }', **g).json()["data"]["aggregate"]
    assert a == {"devices": 1, "max": 99.0}
    # Introspection: no enum or type carries data of any organisation.
    schema = client.get("/graphql/schema.graphql").text
    for secret in ("SecretType", "WeatherStation", "Freezer", "globex", "acme", "temperature"):
        assert secret not in schema


def _paging_filters_and_search(client: TestClient, acme: dict[str, str]) -> None:
    h = token_auth(acme["read"])
    q = "query($after: String) { devices(first: 1, after: $after) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } totalCount } }"
    p1 = gql(client, q, **h).json()["data"]["devices"]
    assert p1["pageInfo"]["hasNextPage"] and p1["totalCount"] == 2
    p2 = gql(client, q, {"after": p1["pageInfo"]["endCursor"]}, **h).json()["data"]["devices"]
    assert not p2["pageInfo"]["hasNextPage"]
    assert {p1["edges"][0]["node"]["id"], p2["edges"][0]["node"]["id"]} == {DEV, "urn:ngsi-ld:Device:lab-1"}
    ids = lambda r: [e["node"]["id"] for e in r.json()["data"]["devicesFiltered"]["edges"]]  # noqa: E731
    f = "query($f: [MeasurementFilter!]!) { devicesFiltered(filters: $f) { edges { node { id } } } }"
    assert ids(gql(client, f, {"f": [{"field": "temperature", "op": "LT", "value": 0}]}, **h)) == [
        "urn:ngsi-ld:Device:lab-1"
    ]
    assert ids(gql(client, f, {"f": [{"field": "temperature", "op": "GTE", "value": 24}]}, **h)) == [DEV]
    s = gql(
        client, '{ devices(search: "FREEZ", type: ["Freezer"]) { edges { node { verboseName } } } }', **h
    ).json()
    assert [e["node"]["verboseName"] for e in s["data"]["devices"]["edges"]] == ["Lab freezer"]
    for bad, what in (("first: 1001", "first"), ("first: 0", "first"), ('after: "xyz"', "after")):
        err = gql(client, f"{{ devices({bad}) {{ edges {{ cursor }} }} }}", **h).json()["errors"][0]
        assert err["extensions"]["code"] == "BAD_USER_INPUT" and what in err["message"], err


def _bad_input_is_a_graphql_error_naming_it(client: TestClient, acme: dict[str, str]) -> None:
    h = token_auth(acme["read"])
    hist = '{ device(deviceId: "%s") { history(timerangestart: "%s", timerangeend: "%s", resolution: %s) { timestamps } } }'
    cases = [
        ("{ user { id ", "GRAPHQL_PARSE_FAILED", "Syntax Error"),
        ("{ user { nope } }", "GRAPHQL_VALIDATION_FAILED", "nope"),
        (hist % (DEV, "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", 10), "BAD_USER_INPUT", "timerangeend"),
        (
            hist % (DEV, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 1_000_000),
            "BAD_USER_INPUT",
            "resolution",
        ),
        (hist % (DEV, "yesterday", "2026-01-02T00:00:00Z", 10), "BAD_USER_INPUT", "timerangestart"),
        ("{ " + " ".join(f"a{i}: user {{ id }}" for i in range(40)) + " }", "COST_LIMIT", "alias"),
        ("{ user { workspaces { organisation { id } } } " + "}", None, None),
    ]
    for query, code, word in cases:
        r = gql(client, query, **h)
        assert r.status_code in (200, 400), r.text
        body = r.json()
        if code is None:
            assert "errors" not in body, body
            continue
        err = body["errors"][0]
        assert err["extensions"]["code"] == code and word in err["message"], (query, err)
    r = gql(client, "query($n: Int!) { devices(first: $n) { totalCount } }", {"n": "many"}, **h)
    err = r.json()["errors"][0]
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and "$n" in err["message"]
    deep = "{ user { workspaces { devices { edges { node { workspace { devices { edges { node { workspace { devices { edges { node { id } } } } } } } } } } } } } }"
    err = gql(client, deep, **h).json()["errors"][0]
    assert err["extensions"]["code"] == "COST_LIMIT" and "depth" in err["message"]
    r = client.post("/graphql", content=b"{not json", headers={**h, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_cost_is_refused_before_it_runs(client: TestClient, acme: dict[str, str], world: World) -> None:
    h = token_auth(acme["read"])
    many = (
        '{ devices(first: 1000) { edges { node { history(timerangestart: "2026-01-01T00:00:00Z", '
        'timerangeend: "2027-01-01T00:00:00Z", resolution: 100000) { timestamps } } } } }'
    )
    err = gql(client, many, **h).json()["errors"][0]
    assert (
        err["extensions"]["code"] == "COST_LIMIT" and err["extensions"]["cost"] > err["extensions"]["maxCost"]
    )
    assert "resolution 100000" in err["message"] and "first 1000" in err["message"]
    # A cheap query reports what it cost and what is left of the credential's budget per minute.
    ok = gql(client, "{ user { id } }", **h).json()
    assert ok["extensions"]["cost"]["requested"] == 2 and ok["extensions"]["cost"]["budgetRemaining"] > 0
    # The budget per minute: a credential that spent it is refused, saying why and when to retry.
    settings = client.app.state.ctx.settings  # type: ignore[attr-defined]
    per_query = 200_000
    q = (
        f'{{ device(deviceId: "{DEV}") {{ history(timerangestart: "2026-01-01T00:00:00Z", '
        f'timerangeend: "2026-01-02T00:00:00Z", resolution: {per_query // 2}, '
        'fields: ["temperature", "humidity"]) { timestamps } } }'
    )
    spent = 0
    while spent + per_query <= settings.graphql_cost_per_minute:
        r = gql(client, q, **h).json()
        assert "errors" not in r, r
        spent = settings.graphql_cost_per_minute - r["extensions"]["cost"]["budgetRemaining"]
    err = gql(client, q, **h).json()["errors"][0]
    assert (
        err["extensions"]["code"] == "COST_LIMIT"
        and "per minute" in err["message"]
        and err["extensions"]["retryAfter"] >= 1
    )
    # Another credential has its own budget.
    other = token_auth(world.pat("a@acme.test", ["entities", "timeseries"], name="other"))
    assert "errors" not in gql(client, q, **other).json()


BACKGROUND = ("push_", "job_leases", "notifications", "invitations", "audit_events", "ngsi_subscriptions")


@contextmanager
def count_selects(client: TestClient) -> Iterator[list[str]]:
    """The SELECT statements run on the app's engine inside the block."""
    statements: list[str] = []
    engine = client.app.state.ctx.db.engine  # type: ignore[attr-defined]

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The app's background jobs (delivery, notices, retention) share the engine: not the query's.
        if statement.lstrip().upper().startswith("SELECT") and not any(t in statement for t in BACKGROUND):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def test_current_values_of_many_devices_cost_a_bounded_number_of_statements(
    client: TestClient, acme: dict[str, str], world: World
) -> None:
    key = world.api_key("acme", ["ingest"], name="more")
    for i in range(30):
        eid = f"urn:ngsi-ld:Device:bulk-{i}"
        world.entity("acme", "main", eid, "Bulk")
        backfill(client, key, eid, [{"timestamp": "2026-01-01T00:00:00Z", "data": {"t": i, "u": -i}}])
    h = token_auth(acme["read"])
    q = (
        'query($n: Int!) { devices(first: $n, type: ["Bulk"]) { edges { node { id measurementFields { fieldName } '
        "currentMeasurements { field { fieldName } value time unit } currentValues } } } }"
    )
    gql(client, q, {"n": 1}, **h)  # warm the credential cache
    counts = {}
    for n in (3, 30):
        with count_selects(client) as statements:
            r = gql(client, q, {"n": n}, **h).json()
        assert "errors" not in r and len(r["data"]["devices"]["edges"]) == n
        assert r["data"]["devices"]["edges"][n - 1]["node"]["currentMeasurements"][0]["value"] == n - 1
        counts[n] = len(statements)
    # The page, then the series of all its devices (their fields and latest values): whatever n is.
    assert counts[30] == counts[3] <= 2, counts


def _record_measurements_is_the_backfill(client: TestClient, acme: dict[str, str]) -> None:
    m = "mutation($d: String!, $m: [MeasurementInput!]!) { recordMeasurements(deviceId: $d, measurements: $m) { accepted duplicates } }"
    rows = [
        {"field": "temperature", "value": 30.5, "timestamp": "2026-02-01T00:00:00Z"},
        {"field": "pressure", "value": 1013, "unit": "HPA", "timestamp": "2026-02-01T00:00:00Z"},
    ]
    h = token_auth(acme["ingest"])
    assert gql(client, m, {"d": DEV, "m": rows}, **h).json()["data"]["recordMeasurements"] == {
        "accepted": 2,
        "duplicates": 0,
    }
    assert gql(client, m, {"d": DEV, "m": rows}, **h).json()["data"]["recordMeasurements"] == {
        "accepted": 0,
        "duplicates": 2,
    }
    # All or nothing: one bad value refuses the whole request, naming it.
    bad = [
        {"field": "temperature", "value": 1, "timestamp": "2026-03-01T00:00:00Z"},
        {"field": "x y", "value": 2},
    ]
    err = gql(client, m, {"d": DEV, "m": bad}, **h).json()["errors"][0]
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and "record 1" in err["message"]
    r = gql(
        client,
        f'{{ device(deviceId: "{DEV}") {{ currentMeasurement(fieldName: "temperature") {{ value time }} }} }}',
        **token_auth(acme["read"]),
    ).json()
    assert r["data"]["device"]["currentMeasurement"] == {"value": 30.5, "time": "2026-02-01T00:00:00Z"}
    # Only with the ingest scope; another organisation's device does not exist for this token.
    err = gql(client, m, {"d": DEV, "m": rows}, **token_auth(acme["read"])).json()["errors"][0]
    assert err["extensions"] == {"code": "FORBIDDEN", "scope": "ingest"}
    err = gql(client, m, {"d": "urn:ngsi-ld:Device:secret-1", "m": rows}, **h).json()["errors"][0]
    assert err["extensions"]["code"] == "NOT_FOUND"


def _aggregates_across_devices(client: TestClient, acme: dict[str, str]) -> None:
    h = token_auth(acme["read"])
    now = gql(
        client, '{ aggregate(field: "temperature") { devices count min max avg sum unit } }', **h
    ).json()
    assert now["data"]["aggregate"] == {
        "devices": 2,
        "count": 2,
        "min": -18.0,
        "max": 24.0,
        "avg": 3.0,
        "sum": 6.0,
        "unit": "CEL",
    }
    at = gql(
        client, '{ aggregate(field: "temperature", at: "2026-01-01T00:02:30Z") { devices min max } }', **h
    ).json()
    assert at["data"]["aggregate"] == {"devices": 2, "min": -18.0, "max": 22.0}
    ranged = gql(
        client,
        f'{{ aggregate(field: "temperature", deviceIds: ["{DEV}"], timerangestart: "2026-01-01T00:00:00Z", '
        'timerangeend: "2026-01-01T00:03:00Z") { devices count min max avg sum } }',
        **h,
    ).json()
    assert ranged["data"]["aggregate"] == {
        "devices": 1,
        "count": 3,
        "min": 20.0,
        "max": 22.0,
        "avg": 21.0,
        "sum": 63.0,
    }
    year = gql(
        client,
        '{ aggregate(field: "temperature", timerangestart: "2025-06-01T00:00:00Z", '
        'timerangeend: "2026-06-01T00:00:00Z") { devices count min max sum } }',
        **h,
    ).json()
    assert year["data"]["aggregate"] == {"devices": 2, "count": 6, "min": -18.0, "max": 24.0, "sum": 92.0}


def test_the_ide_is_served_locally_and_works_with_a_session(client: TestClient, acme: dict[str, str]) -> None:
    import re

    page = client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "GraphiQL" in page.text
    # Outside the OpenAPI document, which says where GraphQL is described instead.
    openapi = client.get("/api/openapi.json").json()
    assert not any(p.startswith("/graphql") for p in openapi["paths"])
    assert "/graphql" in openapi["info"]["description"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith(("/static/graphiql/", "/static/vendor/graphiql/")) for a in assets), (
        assets
    )
    for a in assets:
        assert client.get(a).status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    csrf = login(client, "a@acme.test")
    page = client.get("/graphql", headers={"accept": "text/html"})
    assert f'content="{csrf}"' in page.text
    r = gql(client, "{ user { kind } allWorkspaces { name } }")
    assert r.status_code == 200 and r.json()["data"]["user"]["kind"] == "session"
    del client.headers["X-CSRF-Token"]
    r = gql(client, "{ user { kind } }")
    assert r.status_code == 403 and r.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    r = client.get("/graphql", params={"query": "{ user { kind } }"})  # GET too: no forged cross-site reads
    assert r.status_code == 403 and "CSRF" in r.json()["errors"][0]["message"]
    # A session never writes: recording measurements needs a token.
    client.headers["X-CSRF-Token"] = csrf
    err = gql(
        client,
        f'mutation {{ recordMeasurements(deviceId: "{DEV}", measurements: [{{field: "t", value: 1}}]) {{ accepted }} }}',
    ).json()["errors"][0]
    assert err["extensions"] == {"code": "FORBIDDEN", "scope": "ingest"}


def _the_sdk_helper(client: TestClient, acme: dict[str, str]) -> None:
    import sensorhub_client as sc

    transport = client._transport  # the app, in-process
    with sc.Client(base_url="http://testserver", token=acme["read"], transport=transport) as c:
        data = c.graphql("query($id: String!) { device(deviceId: $id) { verboseName } }", {"id": DEV})
        assert data == {"device": {"verboseName": "Station one"}}
        with pytest.raises(sc.GraphQLError) as e:
            c.graphql(
                'mutation { recordMeasurements(deviceId: "x", measurements: [{field: "t", value: 1}]) { accepted } }'
            )
        assert e.value.code == "FORBIDDEN" and e.value.missing_scope == "ingest"


def _wait_for_feeds(client: TestClient, n: int) -> None:
    import time

    live = client.app.state.ctx.live  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while live.open_feeds < n:
        assert time.monotonic() < deadline, "the subscription never opened its live feed"
        time.sleep(0.01)


def test_subscriptions_deliver_live_measurements_of_readable_devices(
    client: TestClient, acme: dict[str, str], world: World
) -> None:
    from starlette.websockets import WebSocketDisconnect

    sub = 'subscription($d: [String!]) { measurements(deviceIds: $d, fields: ["temperature"]) { deviceId field value time unit } }'
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Token {acme['read']}"}})
        assert ws.receive_json()["type"] == "connection_ack"
        # Another organisation's device does not exist for this token.
        ws.send_json(
            {
                "id": "x",
                "type": "subscribe",
                "payload": {"query": sub, "variables": {"d": ["urn:ngsi-ld:Device:secret-1"]}},
            }
        )
        err = ws.receive_json()
        assert err["type"] == "next" and err["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND", err
        assert ws.receive_json() == {"id": "x", "type": "complete"}
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": sub, "variables": {"d": None}}})
        _wait_for_feeds(client, 1)
        key = world.api_key("acme", ["ingest"], name="live")
        gkey = world.api_key("globex", ["ingest"], name="live")
        backfill(
            client,
            gkey,
            "urn:ngsi-ld:Device:secret-1",
            [{"timestamp": "2026-05-01T00:00:00Z", "data": {"temperature": 55}}],
        )
        backfill(
            client,
            key,
            DEV,
            [{"timestamp": "2026-05-01T00:00:00Z", "data": {"temperature": 31.5, "humidity": 1}}],
        )
        msg = ws.receive_json()
        assert msg["type"] == "next" and msg["id"] == "1", msg
        assert msg["payload"]["data"]["measurements"] == {
            "deviceId": DEV,
            "field": "temperature",
            "value": 31.5,
            "time": "2026-05-01T00:00:00Z",
            "unit": "CEL",
        }
        ws.send_json({"id": "1", "type": "complete"})
    # No credential, or a bad one: the socket is closed with 4403 at connection_init.
    for payload in ({}, {"Authorization": "Token shub_pat_nonsense"}):
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": payload})
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4403
    # A token without telemetry is refused the subscription, naming the scope.
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json(
            {
                "type": "connection_init",
                "payload": {"x-api-key": world.api_key("acme", ["entities"], name="e")},
            }
        )
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "2", "type": "subscribe", "payload": {"query": sub}})
        err = ws.receive_json()
        assert err["payload"]["errors"][0]["extensions"] == {"code": "FORBIDDEN", "scope": "telemetry"}, err
        assert "'telemetry' scope" in err["payload"]["errors"][0]["message"]


# Several checks per test: each test's fixture (two organisations, tokens, data) costs more than its checks.


def test_documented_queries_credentials_scopes_and_sdk(
    client: TestClient, acme: dict[str, str], world: World
) -> None:
    _datacake_documented_queries(client, acme)
    _the_sdk_helper(client, acme)
    _every_credential_form_works_and_none_is_a_401(client, acme, world)
    _each_field_needs_its_scope(client, acme)


def test_tenancy_paging_and_bad_input(client: TestClient, acme: dict[str, str]) -> None:
    _one_organisation_never_sees_another(client, acme)
    _paging_filters_and_search(client, acme)
    _bad_input_is_a_graphql_error_naming_it(client, acme)


def test_aggregates_then_recording_measurements(client: TestClient, acme: dict[str, str]) -> None:
    _aggregates_across_devices(client, acme)
    _record_measurements_is_the_backfill(client, acme)


def test_a_revoked_token_ends_its_subscription(
    client: TestClient, acme: dict[str, str], world: World
) -> None:
    from sqlalchemy import select

    from sensorhub.auth import token_format
    from sensorhub.tokens import service as tokens
    from sensorhub.tokens.models import Credential

    client.app.state.ctx.settings.live_heartbeat_seconds = 0.2  # type: ignore[attr-defined]
    token = world.pat("a@acme.test", ["entities", "telemetry"], name="to-revoke")
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": "subscription { measurements { value } }"}}
        )
        _wait_for_feeds(client, 1)
        with world.ctx.db.transaction() as s:
            cred = s.scalar(select(Credential).where(Credential.digest == token_format.digest(token)))
            assert cred is not None
            tokens.revoke(s, cred, actor_id=None)
        msg = ws.receive_json()  # at the next heartbeat, the feed re-checks the credential
        err = msg["payload"]["errors"][0] if msg["type"] == "next" else msg["payload"][0]
        assert err["extensions"]["code"] == "FORBIDDEN" and "revoked" in err["message"], msg
