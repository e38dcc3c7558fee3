"""Issue 10 hardening of the entity APIs: hostile regular expressions, time windows on attributes,
the same entity id in two organisations, bounds on every number and on ``q``, the NGSI-LD 403 code."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from sensorhub.accounts import service as accounts
from sensorhub.tokens import service as tokens
from tests.builders import World, bearer, login
from tests.entities.helpers import devices, problem, put_entities
from tests.entities.test_real_server_client import server  # noqa: F401  (a real uvicorn fixture)

E = "/ngsi-ld/v1/entities"
Q = "/ngsi-ld/v1/entityOperations/query"
# Catastrophic for a backtracking engine on any long id of these characters that lacks a "!".
EVIL = "^(([a-zA-Z0-9:-])+)+!"
LONG_ID = "urn:ngsi-ld:Device:" + "a1-b2:" * 8 + "x"


def _evil_world(world: World) -> str:
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    put_entities(
        world,
        "acme",
        "main",
        [
            {"id": LONG_ID, "type": "Device", "label": "ab-cd:" * 8 + "x"},
            {"id": "urn:ngsi-ld:Device:n-0001", "type": "Device", "label": "one"},
            {"id": "urn:ngsi-ld:Device:n-0002", "type": "Device", "label": "two"},
        ],
    )
    return world.pat("o@acme.test", ["entities"])


# --- #2 regular expressions ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_pathological_patterns_answer_at_once(world: World, server: str) -> None:  # noqa: F811
    # Against a real server (not in this process): a backtracking engine holds the GIL, so in-process
    # even pytest's timeout could not fire; here the client's timeout turns a hang into a failure.
    h = bearer(_evil_world(world))

    def get(**params: str) -> requests.Response:
        return requests.get(f"{server}{E}", params=params, headers=h, timeout=30)

    r = get(idPattern=EVIL, local="true")
    assert r.status_code == 200 and r.json() == []
    r = get(q=f'label~="{EVIL}"')
    assert r.status_code == 200 and r.json() == []
    body = {"type": "Query", "entities": [{"type": "Device", "idPattern": EVIL}], "q": f'label!~="{EVIL}"'}
    r = requests.post(f"{server}{Q}", json=body, headers=h, timeout=30)
    assert r.status_code == 200 and r.json() == []
    # RE2 keeps the ordinary meaning of patterns.
    r = get(idPattern=r"n-000[12]$", q='label~="^t"')
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Device:n-0002"]


def test_patterns_re2_refuses_are_400_naming_the_parameter(client: TestClient, world: World) -> None:
    h = bearer(_evil_world(world))
    for pattern in (r"(a)\1", "(?=a)b", "(?<!a)b", "a" * 257):
        body = problem(client.get(E, params={"idPattern": pattern}, headers=h), 400, "BadRequestData")
        assert body["detail"].startswith("idPattern"), body
        body = problem(
            client.post(
                Q, json={"type": "Query", "entities": [{"type": "Device", "idPattern": pattern}]}, headers=h
            ),
            400,
            "BadRequestData",
        )
        assert body["detail"].startswith("entities[0].idPattern"), body
        quoted = pattern.replace("\\", "\\\\")  # a q string escapes with backslashes
        body = problem(client.get(E, params={"q": f'label~="{quoted}"'}, headers=h), 400, "InvalidRequest")
        assert "q" in body["detail"] and "regular expression" in body["detail"], body


@pytest.mark.timeout(90)
def test_healthz_stays_answered_while_a_pathological_pattern_runs(world: World, server: str) -> None:  # noqa: F811
    token = _evil_world(world)
    h = bearer(token)
    results: dict[str, Any] = {}

    def hostile() -> None:
        # Several at once: on the old code each one pins a worker thread under the GIL for minutes.
        rs = [
            requests.get(f"{server}{E}", params={"idPattern": EVIL, "local": "true"}, headers=h, timeout=60),
            requests.get(f"{server}{E}", params={"q": f'label~="{EVIL}"'}, headers=h, timeout=60),
        ]
        results["hostile"] = [r.status_code for r in rs]

    t = threading.Thread(target=hostile)
    t.start()
    health = []
    while t.is_alive() or not health:
        health.append(requests.get(f"{server}/healthz", timeout=10).status_code)
        time.sleep(0.05)
    t.join()
    assert results["hostile"] == [200, 200]
    assert health and set(health) == {200}


# --- #3 time windows on attributes -----------------------------------------------------------------------

JAN = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
EID = "urn:ngsi-ld:Device:station-1"


def _windowed_world(world: World) -> dict[str, str]:
    """One entity: humidity observed in January, temperature in March, a static crop; and four
    credentials: unrestricted, a grant window, a PAT window, an API key window (all January)."""
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    put_entities(
        world,
        "acme",
        "main",
        [
            {
                "id": EID,
                "type": "Device",
                "crop": "wheat",
                "humidity": {"type": "Property", "value": 61, "observedAt": "2026-01-15T10:00:00Z"},
                "temperature": {"type": "Property", "value": 7.5, "observedAt": "2026-03-10T00:00:00.5Z"},
                # Just outside January (the window is half-open), in another offset notation.
                "pressure": {"type": "Property", "value": 1013, "observedAt": "2026-02-01T01:00:00+01:00"},
            }
        ],
    )
    world.user("m@acme.test", "acme", "member", grant_org=False)
    world.grant("m@acme.test", "acme", time_start=JAN[0], time_end=JAN[1])
    with world.ctx.db.transaction() as s:
        minted = tokens.create_api_key(
            s,
            accounts.get_org(s, "acme"),
            tokens.NewToken(
                "january",
                ["entities"],
                restrictions=tokens.RestrictionSpec(time_start=JAN[0], time_end=JAN[1]),
            ),
            settings=world.ctx.settings,
            created_by=None,
        )
    return {
        "all": world.pat("o@acme.test", ["entities"]),
        "grant": world.pat("m@acme.test", ["entities"]),
        "pat": world.pat("o@acme.test", ["entities"], name="jan", time_start=JAN[0], time_end=JAN[1]),
        "key": minted.token,
    }


def _seen(client: TestClient, h: dict[str, str]) -> list[set[str]]:
    """The attribute names each entity read path shows for EID."""
    out = []
    for params in ({}, {"options": "keyValues"}):
        rows = client.get(E, params={**params, "local": "true"}, headers=h).json()
        assert [e["id"] for e in rows] == [EID]
        out.append(set(rows[0]) - {"id", "type"})
        out.append(set(client.get(f"{E}/{EID}", params=params, headers=h).json()) - {"id", "type"})
    rows = client.post(Q, json={"type": "Query", "entities": [{"type": "Device"}]}, headers=h).json()
    out.append(set(rows[0]) - {"id", "type"})
    assets = client.get("/v3/assets", headers=h).json()["content"]
    out.append(set(assets[0]["properties"]))
    out.append(set(client.get(f"/v3/assets/{assets[0]['id']}", headers=h).json()["properties"]))
    return out


def _matches(client: TestClient, h: dict[str, str], **params: str) -> int:
    r = client.get(E, params={"local": "true", **params, "count": "true"}, headers=h)
    assert r.status_code == 200, r.text
    return int(r.headers["NGSILD-Results-Count"])


def test_time_windows_hide_attributes_observed_outside_them(client: TestClient, world: World) -> None:
    creds = _windowed_world(world)
    everything = {"crop", "humidity", "temperature", "pressure"}
    assert all(s == everything for s in _seen(client, bearer(creds["all"])))
    assert _matches(client, bearer(creds["all"]), q="temperature>0") == 1
    for name in ("grant", "pat", "key"):
        h = bearer(creds[name])
        assert all(s == {"crop", "humidity"} for s in _seen(client, h)), name
        body = client.get(f"{E}/{EID}", headers=h).json()
        assert body["humidity"]["observedAt"] == "2026-01-15T10:00:00Z"
        # q and attrs treat the hidden observations as absent: no comparison can probe them.
        for q in ("temperature>0", "temperature==7.5", "temperature!=1", "temperature", "pressure<2000"):
            assert _matches(client, h, q=q) == 0, (name, q)
        assert _matches(client, h, q='humidity==61;crop=="wheat"') == 1
        assert _matches(client, h, q="temperature>0|humidity>0") == 1
        assert _matches(client, h, attrs="temperature") == 0
        assert _matches(client, h, attrs="temperature,humidity") == 1
        r = client.post(Q, json={"type": "Query", "q": "temperature>0"}, headers=h)
        assert r.json() == [], name


def test_time_windows_hide_observations_from_ordering_too(client: TestClient, world: World) -> None:
    """orderBy reads what the credential may read: an observation outside its window orders like a
    missing attribute (last), so the order cannot reveal the hidden value."""
    creds = _windowed_world(world)
    put_entities(
        world,
        "acme",
        "main",
        [
            {"id": f"{EID}-jan", "type": "Device",
             "temperature": {"type": "Property", "value": 3, "observedAt": "2026-01-20T00:00:00Z"}},
            {"id": f"{EID}-mar", "type": "Device",
             "temperature": {"type": "Property", "value": 1, "observedAt": "2026-03-20T00:00:00Z"}},
        ],
    )  # fmt: skip

    def order(h: dict[str, str], order_by: str) -> list[str]:
        r = client.get(E, params={"type": "Device", "orderBy": order_by}, headers=h)
        assert r.status_code == 200, r.text
        return [e["id"].removeprefix(EID) for e in r.json()]

    # EID itself has temperature 7.5 observed in March.
    assert order(bearer(creds["all"]), "temperature") == ["-mar", "-jan", ""]
    for name in ("grant", "pat", "key"):
        h = bearer(creds[name])
        assert order(h, "temperature") == ["-jan", "", "-mar"], name  # the hidden ones by id, last
        assert order(h, "temperature;desc") == ["-jan", "", "-mar"], name


# --- #4 the same id in two organisations -----------------------------------------------------------------


SHARED = "urn:ngsi-ld:Device:shared-1"


def test_an_id_in_two_readable_orgs_is_409_then_chosen_by_ngsild_tenant(
    client: TestClient, world: World
) -> None:
    world.org("alpha", ("north",))
    world.org("beta", ("main",))
    world.org("gamma", ("main",))
    world.user("v@alpha.test", "alpha", "owner")
    world.user("v@alpha.test", "beta", "member")
    world.user("g@gamma.test", "gamma", "owner")
    put_entities(world, "alpha", "north", [{"id": SHARED, "type": "Device", "owner": "alpha"}])
    put_entities(world, "beta", "main", [{"id": SHARED, "type": "Device", "owner": "beta"}])
    put_entities(world, "gamma", "main", [{"id": SHARED, "type": "Device", "owner": "gamma"}])
    h = bearer(world.pat("v@alpha.test", ["entities", "timeseries"]))
    body = problem(client.get(f"{E}/{SHARED}", headers=h), 409, "Conflict")
    assert body["code"] == "ambiguous_entity"
    assert (
        "NGSILD-Tenant" in body["detail"]
        and "alpha/north" in body["detail"]
        and "beta/main" in body["detail"]
    )
    assert "gamma" not in body["detail"]  # exists there too, but this token cannot read it
    for tenant, owner in (
        ("alpha", "alpha"),
        ("beta", "beta"),
        ("alpha/north", "alpha"),
        ("beta/main", "beta"),
    ):
        r = client.get(
            f"{E}/{SHARED}", params={"options": "keyValues"}, headers={**h, "NGSILD-Tenant": tenant}
        )
        assert r.status_code == 200 and r.json()["owner"] == owner, (tenant, r.text)
    for tenant in ("gamma", "alpha/main", "nope"):
        problem(client.get(f"{E}/{SHARED}", headers={**h, "NGSILD-Tenant": tenant}), 404, "ResourceNotFound")
    # The time-series route by entity resolves through the same lookup: never a 404 for a readable id.
    r = client.get(
        f"/api/timeseries/v2/entities/{SHARED}/data",
        params={"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-02-01T00:00:00Z"},
        headers=h,
    )
    assert r.status_code == 409 and "NGSILD-Tenant" in r.json()["message"], r.text
    # ... and the header the message names chooses there too, as on every token route.
    r = client.get(
        f"/api/timeseries/v2/entities/{SHARED}/data",
        params={"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-02-01T00:00:00Z"},
        headers={**h, "NGSILD-Tenant": "beta"},
    )
    assert r.status_code == 200 and r.json()["entity_id"] == SHARED, r.text
    # The owner of one of them still reads their own entity (the attacker's copy does not hide it).
    g = bearer(world.pat("g@gamma.test", ["entities"]))
    assert client.get(f"{E}/{SHARED}", params={"options": "keyValues"}, headers=g).json()["owner"] == "gamma"


# --- #9 bounds on numbers and on q -----------------------------------------------------------------------


def test_huge_numbers_and_huge_queries_are_400_naming_the_parameter(client: TestClient, world: World) -> None:
    h = bearer(_evil_world(world))
    for value in (str(2**63), str(2**64 + 5), "1" + "0" * 30, "1000000001"):
        body = problem(client.get(E, params={"offset": value}, headers=h), 400, "BadRequestData")
        assert "offset" in body["detail"], body
        r = client.post(
            f"{Q}?offset={value}", json={"type": "Query", "entities": [{"type": "Device"}]}, headers=h
        )
        assert r.status_code == 400 and "offset" in r.json()["detail"], r.text
    for value in ("1e30", "1.5", "-1"):
        body = problem(client.get(E, params={"offset": value}, headers=h), 400, "BadRequestData")
        assert "offset" in body["detail"], body
    for value in ("1e30", str(-(2**64))):
        body = problem(client.get(E, params={"limit": value}, headers=h), 400, "BadRequestData")
        assert "limit" in body["detail"], body
    for value in (str(10**6), str(2**63), str(2**70)):  # documented: 403 TooManyResults (ETSI V1.8.1)
        body = problem(client.get(E, params={"limit": value}, headers=h), 403, "TooManyResults")
        assert "limit" in body["detail"], body
    for q in ("label==" + "9" * 400, "label>" + "-" + "9" * 25, "label<1e400", "label==1.5e999"):
        body = problem(client.get(E, params={"q": q}, headers=h), 400, "BadRequestData")
        assert body["detail"].startswith("q "), body
    assert client.get(E, params={"q": "label==9223372036854775807|label<1e300"}, headers=h).status_code == 200
    for q in ("|".join(["x"] * 1000), "label==" + ",".join(str(i) for i in range(200))):
        body = problem(client.get(E, params={"q": q}, headers=h), 400, "BadRequestData")
        assert "at most 100" in body["detail"], body
    body = problem(
        client.get(E, params={"q": "label==1|" * 600 + "label==1"}, headers=h), 400, "BadRequestData"
    )
    assert "q is longer than" in body["detail"]
    many = [{"type": "Device"}] * 101
    r = client.post(Q, json={"type": "Query", "entities": many}, headers=h)
    assert r.status_code == 400 and "entities" in r.json()["detail"]
    r = client.post(Q, json={"type": "Query", "attrs": [f"a{i}" for i in range(101)]}, headers=h)
    assert r.status_code == 400 and "attrs" in r.json()["detail"]


def test_asset_pages_bound_page_and_size(client: TestClient, world: World) -> None:
    h = bearer(_evil_world(world))
    for params, name in (
        ({"page": str(2**63)}, "page"),
        ({"page": str(2**70)}, "page"),
        ({"page": "1e30"}, "page"),
        ({"page": "1000001"}, "page"),
        ({"size": "1e30"}, "size"),
        ({"size": "0"}, "size"),
    ):
        r = client.get("/v3/assets", params=params, headers=h)
        assert r.status_code == 400, (params, r.text)
        body = r.json()
        assert body["status"] == 400 and body["error"] == "Bad Request" and name in body["message"], body
    assert client.get("/v3/assets", params={"size": str(2**64)}, headers=h).json()["size"] == 500  # clamped
    r = client.get("/v3/assets", params={"page": "1000000", "size": "500"}, headers=h)
    assert r.status_code == 200 and r.json()["content"] == []


# --- the NGSI-LD 403 carries the documented code ---------------------------------------------------------


def test_ngsi_ld_403_carries_the_code(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    r = client.get(E, headers=bearer(world.pat("o@acme.test", ["timeseries"])))
    body = problem(r, 403, "PermissionDenied")
    assert body["code"] == "insufficient_scope" and "'entities'" in body["detail"]
    world.user("v@acme.test", "acme", "viewer")
    put_entities(world, "acme", "main", [{"id": SHARED, "type": "Device"}])
    login(client, "v@acme.test")
    r = client.post(f"{E}/{SHARED}/attrs", json={"x": 1})
    body = problem(r, 403, "PermissionDenied")
    assert body["code"] == "forbidden"


def test_postgresql_cancels_a_slow_pattern_query_with_a_400(
    client: TestClient, world: World, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        return  # SQLite runs patterns in RE2 itself (linear time); the timeout is PostgreSQL's bound
    from sensorhub.entities import service

    h = bearer(_evil_world(world))
    put_entities(world, "acme", "main", devices("bulk", 3000, label="x" * 200))
    monkeypatch.setattr(service, "REGEX_STATEMENT_TIMEOUT_MS", 1)
    r = client.get(E, params={"q": 'label~="(x+x+)+y"', "count": "true"}, headers=h)
    body = problem(r, 400, "BadRequestData")
    assert "idPattern or q" in body["detail"] and "0.001 s" in body["detail"]
    monkeypatch.setattr(service, "REGEX_STATEMENT_TIMEOUT_MS", 5_000)
    r = client.get(E, params={"q": 'label~="(x+x+)+y"', "count": "true"}, headers=h)
    assert r.status_code == 200 and r.headers["NGSILD-Results-Count"] == "0"
    # The request after the cancelled one answers normally (the transaction was rolled back).
    r = client.get(E, params={"count": "true", "limit": "0", "local": "true"}, headers=h)
    assert r.headers["NGSILD-Results-Count"] == "3003"


def test_writes_accept_observed_at_only_in_the_form_windows_can_read(
    client: TestClient, world: World
) -> None:
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    login(client, "o@acme.test")
    for at in ("2026-01-15T10:00:00.1234567Z", "20260115T100000Z", "2026-W03-4"):
        body = {
            "id": "urn:ngsi-ld:Device:w-1",
            "type": "Device",
            "t": {"type": "Property", "value": 1, "observedAt": at},
        }
        r = client.post(E, params={"workspace": "acme/main"}, json=body)
        assert problem(r, 400, "BadRequestData")["detail"].startswith("attribute 't': observedAt"), at
    body["t"]["observedAt"] = "2026-01-15T11:00:00.123456+01:00"
    assert client.post(E, params={"workspace": "acme/main"}, json=body).status_code == 201


def test_a_write_to_an_id_in_two_orgs_is_409_then_chosen_by_ngsild_tenant(
    client: TestClient, world: World
) -> None:
    world.org("alpha", ("north",))
    world.org("beta", ("main",))
    world.user("v@alpha.test", "alpha", "owner")
    world.user("v@alpha.test", "beta", "owner")
    put_entities(world, "alpha", "north", [{"id": SHARED, "type": "Device", "owner": "alpha"}])
    put_entities(world, "beta", "main", [{"id": SHARED, "type": "Device", "owner": "beta"}])
    login(client, "v@alpha.test")
    problem(client.post(f"{E}/{SHARED}/attrs", json={"x": 1}), 409, "Conflict")
    r = client.post(f"{E}/{SHARED}/attrs", json={"x": 1}, headers={"NGSILD-Tenant": "beta/main"})
    assert r.status_code == 204, r.text
    h = bearer(world.pat("v@alpha.test", ["entities"]))
    r = client.get(f"{E}/{SHARED}", params={"options": "keyValues"}, headers={**h, "NGSILD-Tenant": "beta"})
    assert r.json()["x"] == 1
    r = client.get(f"{E}/{SHARED}", params={"options": "keyValues"}, headers={**h, "NGSILD-Tenant": "alpha"})
    assert "x" not in r.json()


def test_a_query_body_with_unknown_members_is_400_naming_them(client: TestClient, world: World) -> None:
    h = bearer(_evil_world(world))
    for body, name in (
        ({"type": "Query", "entities": [{"type": "Device"}], "qq": "x"}, "qq"),
        ({"type": "Query", "entities": [{"type": "Device"}], "attr": ["name"]}, "attr"),
        ({"type": "Query", "entities": [{"type": "Device", "idPatern": "^x"}]}, "idPatern"),
    ):
        detail = problem(client.post(Q, json=body, headers=h), 400, "BadRequestData")["detail"]
        assert name in detail, detail
    ok = {"type": "Query", "entities": [{"type": "Device"}], "attrs": ["name"]}
    assert client.post(Q, json=ok, headers=h).status_code == 200


def test_a_user_context_is_refused_not_ignored(client: TestClient, world: World) -> None:
    h = bearer(_evil_world(world))
    core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
    body = {"type": "Query", "entities": [{"type": "Device"}], "@context": "https://example.com/ctx.jsonld"}
    ld = {**h, "Content-Type": "application/ld+json"}
    # Not hosted and not on the allow-list: refused by name, never fetched.
    detail = problem(client.post(Q, content=json.dumps(body), headers=ld), 400, "BadRequestData")["detail"]
    assert detail.startswith("@context https://example.com/ctx.jsonld"), detail
    body["@context"] = [core]
    assert client.post(Q, content=json.dumps(body), headers=ld).status_code == 200
    # In an application/json body @context is not allowed at all (ETSI: the Link header carries it).
    detail = problem(client.post(Q, json=body, headers=h), 400, "BadRequestData")["detail"]
    assert detail.startswith("@context"), detail
