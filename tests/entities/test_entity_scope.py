"""NGSI-LD entity scopes are not stored: a write that sets one is refused by name, never stored without it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.builders import World, bearer, login
from tests.entities.helpers import problem

E = "/ngsi-ld/v1/entities"
ID = "urn:ngsi-ld:Parcel:scoped"


def test_a_write_with_scope_is_refused_and_writes_nothing(client: TestClient, world: World) -> None:
    world.org("acme", ("farm",))
    world.user("owner@acme.test", "acme", "owner")
    token = world.pat("owner@acme.test", ["entities"])
    login(client, "owner@acme.test")
    body = {"id": ID, "type": "Parcel", "scope": "/farm/north", "area": 3}
    r = problem(client.post(f"{E}?workspace=acme/farm", json=body), 501, "NotImplemented")
    assert "scope" in r["detail"]
    api = TestClient(client.app)
    problem(api.get(f"{E}/{ID}", headers=bearer(token)), 404, "ResourceNotFound")
    # Without the scope the same entity is created; an attribute update setting a scope is refused too.
    del body["scope"]
    assert client.post(f"{E}?workspace=acme/farm", json=body).status_code == 201
    problem(client.post(f"{E}/{ID}/attrs", json={"scope": "/farm"}), 501, "NotImplemented")
    problem(client.patch(f"{E}/{ID}/attrs", json={"scope": "/farm", "area": 4}), 501, "NotImplemented")
    got = api.get(f"{E}/{ID}?options=keyValues", headers=bearer(token)).json()
    assert got["area"] == 3 and "scope" not in got
