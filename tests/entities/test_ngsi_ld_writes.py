"""Entity writes: people with a session, never tokens; roles and grants decide where."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.builders import World, bearer, login
from tests.entities.helpers import problem

E = "/ngsi-ld/v1/entities"
STATION = {
    "id": "urn:ngsi-ld:WeatherObserved:station-9",
    "type": "WeatherObserved",
    "temperature": {"type": "Property", "value": 12.5, "unitCode": "CEL"},
    "name": "Station 9",
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.5, 47.3]}},
}


def _setup(world: World) -> None:
    world.org("acme", ("farm", "lab"))
    world.user("owner@acme.test", "acme", "owner")
    world.user("mem@acme.test", "acme", "member", grant_org=False)
    world.grant("mem@acme.test", "acme", "farm")
    world.user("viewer@acme.test", "acme", "viewer")


def test_owner_creates_updates_appends_deletes(client: TestClient, world: World) -> None:
    _setup(world)
    token = world.pat("owner@acme.test", ["entities"])
    login(client, "owner@acme.test")

    r = client.post(f"{E}?workspace=acme/farm", json=STATION)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"{E}/urn:ngsi-ld:WeatherObserved:station-9"
    problem(client.post(f"{E}?workspace=acme/farm", json=STATION), 409, "AlreadyExists")

    api = TestClient(client.app)
    got = api.get(f"{E}/urn:ngsi-ld:WeatherObserved:station-9", headers=bearer(token)).json()
    assert got["temperature"] == {"type": "Property", "value": 12.5, "unitCode": "CEL"}
    assert got["location"]["value"]["coordinates"] == [8.5, 47.3]

    # PATCH replaces existing attributes; unknown ones are reported (207).
    r = client.patch(
        f"{E}/urn:ngsi-ld:WeatherObserved:station-9/attrs",
        json={"temperature": {"type": "Property", "value": 14.0, "unitCode": "CEL"}},
    )
    assert r.status_code == 204, r.text
    r = client.patch(
        f"{E}/urn:ngsi-ld:WeatherObserved:station-9/attrs", json={"temperature": 15, "humidity": 80}
    )
    assert r.status_code == 207
    assert r.json()["updated"] == ["temperature"]
    assert r.json()["notUpdated"][0]["attributeName"] == "humidity"
    # POST appends (keyValues accepted).
    r = client.post(f"{E}/urn:ngsi-ld:WeatherObserved:station-9/attrs", json={"humidity": 80})
    assert r.status_code == 204, r.text
    kv = api.get(f"{E}/urn:ngsi-ld:WeatherObserved:station-9?options=keyValues", headers=bearer(token)).json()
    assert kv["temperature"] == 15 and kv["humidity"] == 80 and kv["name"] == "Station 9"
    assert client.delete(f"{E}/urn:ngsi-ld:WeatherObserved:station-9/attrs/humidity").status_code == 204
    problem(
        client.delete(f"{E}/urn:ngsi-ld:WeatherObserved:station-9/attrs/humidity"), 404, "ResourceNotFound"
    )

    assert client.delete(f"{E}/urn:ngsi-ld:WeatherObserved:station-9").status_code == 204
    problem(
        api.get(f"{E}/urn:ngsi-ld:WeatherObserved:station-9", headers=bearer(token)), 404, "ResourceNotFound"
    )
    problem(client.delete(f"{E}/urn:ngsi-ld:WeatherObserved:station-9"), 404, "ResourceNotFound")


def test_tokens_can_never_write(client: TestClient, world: World) -> None:
    _setup(world)
    token = world.pat("owner@acme.test")  # every scope, including ingest
    key = world.api_key("acme")
    for headers in (bearer(token), {"x-api-key": key}):
        problem(
            client.post(f"{E}?workspace=acme/farm", json=STATION, headers=headers), 403, "PermissionDenied"
        )
        problem(
            client.patch(f"{E}/{STATION['id']}/attrs", json={"a": 1}, headers=headers),
            403,
            "PermissionDenied",
        )
        problem(client.delete(f"{E}/{STATION['id']}", headers=headers), 403, "PermissionDenied")
    problem(client.post(f"{E}?workspace=acme/farm", json=STATION), 401, "Unauthorized")


def test_csrf_is_required(client: TestClient, world: World) -> None:
    _setup(world)
    login(client, "owner@acme.test")
    del client.headers["X-CSRF-Token"]
    problem(client.post(f"{E}?workspace=acme/farm", json=STATION), 403, "PermissionDenied")


def test_roles_and_grants_decide_where_people_write(client: TestClient, world: World) -> None:
    _setup(world)
    # Separate cookie jars on the same app (the lifespan already runs in ``client``).
    owner, member, viewer = TestClient(client.app), TestClient(client.app), TestClient(client.app)
    login(owner, "owner@acme.test")
    login(member, "mem@acme.test")
    login(viewer, "viewer@acme.test")

    # A member writes in the granted workspace only.
    assert member.post(f"{E}?workspace=acme/farm", json=STATION).status_code == 201
    lab = dict(STATION, id="urn:ngsi-ld:WeatherObserved:lab-1")
    problem(member.post(f"{E}?workspace=acme/lab", json=lab), 403, "PermissionDenied")
    assert owner.post(f"{E}?workspace=acme/lab", json=lab).status_code == 201
    # ... and cannot even see the lab entity to change it.
    problem(member.patch(f"{E}/{lab['id']}/attrs", json={"temperature": 1}), 404, "ResourceNotFound")
    assert member.patch(f"{E}/{STATION['id']}/attrs", json={"temperature": 1}).status_code == 204

    # A viewer reads (org-wide grant) but never writes.
    problem(
        viewer.post(f"{E}?workspace=acme/farm", json=dict(STATION, id="urn:x:1")), 403, "PermissionDenied"
    )
    problem(viewer.patch(f"{E}/{STATION['id']}/attrs", json={"temperature": 2}), 403, "PermissionDenied")
    problem(viewer.delete(f"{E}/{STATION['id']}"), 403, "PermissionDenied")

    # Someone from another organisation sees nothing.
    world.org("other")
    world.user("stranger@other.test", "other", "owner")
    stranger = TestClient(client.app)
    login(stranger, "stranger@other.test")
    problem(stranger.delete(f"{E}/{STATION['id']}"), 404, "ResourceNotFound")
    problem(
        stranger.post(f"{E}?workspace=acme/farm", json=dict(STATION, id="urn:x:2")), 404, "ResourceNotFound"
    )


def test_workspace_selection_and_body_validation(client: TestClient, world: World) -> None:
    _setup(world)
    login(client, "owner@acme.test")
    body = problem(client.post(E, json=STATION), 400, "BadRequestData")
    assert "workspace=<org>/<workspace>" in body["detail"]
    # NGSILD-Tenant + workspace, and a bare workspace when the user has one organisation.
    r = client.post(f"{E}?workspace=farm", json=STATION, headers={"NGSILD-Tenant": "acme"})
    assert r.status_code == 201, r.text
    assert client.post(f"{E}?workspace=lab", json=dict(STATION, id="urn:x:3")).status_code == 201
    problem(
        client.post(f"{E}?workspace=acme/nope", json=dict(STATION, id="urn:x:4")), 404, "ResourceNotFound"
    )
    for bad, needle in [
        ({"type": "X"}, "id"),
        ({"id": "no-scheme", "type": "X"}, "not a valid entity id"),
        ({"id": "urn:x:5"}, "type"),
        ({"id": "urn:x:5", "type": "X", "bad name": 1}, "not a valid attribute name"),
        ({"id": "urn:x:5", "type": "X", "t": {"type": "Property"}}, "non-null 'value'"),
        ({"id": "urn:x:5", "type": "X", "location": {"type": "Blob"}}, "GeoJSON"),
        ({"id": "urn:x:5", "type": "X", "r": {"type": "Relationship"}}, "object"),
        ([1, 2], "JSON object"),
    ]:
        detail = problem(client.post(f"{E}?workspace=acme/farm", json=bad), 400, "BadRequestData")["detail"]
        assert needle in detail, (bad, detail)
    problem(client.patch(f"{E}/{STATION['id']}/attrs", json={"id": "urn:x:9"}), 400, "BadRequestData")
