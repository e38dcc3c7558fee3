"""Entities with several types (ETSI GS CIM 009 V1.8: ``type`` may be an array): stored, matched by the
type selection grammar (``A,B``/``A|B`` either, ``A;B`` both, parentheses), counted once per type by
discovery, rendered as an array, written through the session write paths."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from sensorhub.config import Settings
from sensorhub.entities.models import entity_types
from tests.builders import World, bearer, login
from tests.conftest import TEST_SECRET_KEY
from tests.entities.helpers import owner_token, problem, short_ids

E = "/ngsi-ld/v1/entities"
ITEMS: list[dict[str, Any]] = [
    {"id": "urn:ngsi-ld:Thing:ab", "type": ["Building", "Office"], "floors": 3},
    {"id": "urn:ngsi-ld:Thing:a", "type": "Building", "floors": 1},
    {"id": "urn:ngsi-ld:Thing:b", "type": ["Office"], "desks": 12},
    {"id": "urn:ngsi-ld:Thing:abc", "type": ["Shop", "Office", "Building"], "floors": 2},
    {"id": "urn:ngsi-ld:Thing:c", "type": "Shop"},
]


def test_type_selection_grammar_matches_entities_having_the_types(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    assert short_ids(client, token, type="Building") == ["a", "ab", "abc"]
    assert short_ids(client, token, type="Office") == ["ab", "abc", "b"]
    assert short_ids(client, token, type="Building;Office") == ["ab", "abc"]
    assert short_ids(client, token, type="Building,Shop") == ["a", "ab", "abc", "c"]
    assert short_ids(client, token, type="Building|Shop") == ["a", "ab", "abc", "c"]
    assert short_ids(client, token, type="(Building;Office)|Shop") == ["ab", "abc", "c"]
    assert short_ids(client, token, type="Shop;(Building|Office)") == ["abc"]
    assert short_ids(client, token, type="Building;Office;Shop") == ["abc"]
    assert short_ids(client, token, type="Building;Nope") == []
    # with the other filters, counts and paging
    r = client.get(
        E, params={"type": "Building;Office", "q": "floors>2", "count": "true"}, headers=bearer(token)
    )
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Thing:ab"]
    assert r.headers["NGSILD-Results-Count"] == "1"
    r = client.get(E, params={"type": "Office", "limit": "1", "count": "true"}, headers=bearer(token))
    assert r.headers["NGSILD-Results-Count"] == "3" and "next" in r.links
    # the Query body
    r = client.post(
        "/ngsi-ld/v1/entityOperations/query",
        json={
            "type": "Query",
            "entities": [{"type": "Office;Shop"}, {"type": "Building", "idPattern": ":a$"}],
        },
        headers=bearer(token),
    )
    assert sorted(e["id"] for e in r.json()) == ["urn:ngsi-ld:Thing:a", "urn:ngsi-ld:Thing:abc"]


def test_several_types_render_as_an_array(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    r = client.get(f"{E}/urn:ngsi-ld:Thing:abc", headers=bearer(token))
    assert r.json()["type"] == ["Shop", "Office", "Building"]
    assert client.get(f"{E}/urn:ngsi-ld:Thing:a", headers=bearer(token)).json()["type"] == "Building"
    assert client.get(f"{E}/urn:ngsi-ld:Thing:b", headers=bearer(token)).json()["type"] == "Office"
    kv = client.get(E, params={"type": "Office", "options": "keyValues"}, headers=bearer(token)).json()
    assert kv[0] == {"id": "urn:ngsi-ld:Thing:ab", "type": ["Building", "Office"], "floors": 3}
    # retrieve with type= : any type the entity has
    assert client.get(f"{E}/urn:ngsi-ld:Thing:ab?type=Office", headers=bearer(token)).status_code == 200
    assert (
        client.get(f"{E}/urn:ngsi-ld:Thing:ab?type=Office;Building", headers=bearer(token)).status_code == 200
    )
    problem(client.get(f"{E}/urn:ngsi-ld:Thing:ab?type=Shop", headers=bearer(token)), 404, "ResourceNotFound")


def test_discovery_counts_each_type(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    types = client.get("/ngsi-ld/v1/types", headers=bearer(token)).json()
    assert types["typeList"] == ["Building", "Office", "Shop"]
    office = client.get("/ngsi-ld/v1/types/Office", headers=bearer(token)).json()
    assert office["entityCount"] == 3
    assert {a["attributeName"] for a in office["attributeDetails"]} == {"floors", "desks"}
    assert client.get("/ngsi-ld/v1/types/Building", headers=bearer(token)).json()["entityCount"] == 3
    assert client.get("/ngsi-ld/v1/types/Shop", headers=bearer(token)).json()["entityCount"] == 2
    floors = client.get("/ngsi-ld/v1/attributes/floors", headers=bearer(token)).json()
    assert floors["typeNames"] == ["Building", "Office", "Shop"]
    # a time-limited token takes the row-by-row path: the same counts
    limited = world.pat(
        "owner@acme.test", ["entities"], "limited", time_start=datetime(2020, 1, 1, tzinfo=UTC)
    )
    assert client.get("/ngsi-ld/v1/types/Office", headers=bearer(limited)).json()["entityCount"] == 3


def test_session_writes_keep_the_types(client: TestClient, world: World) -> None:
    world.org("acme", ("farm",))
    world.user("owner@acme.test", "acme", "owner")
    token = world.pat("owner@acme.test", ["entities"])
    login(client, "owner@acme.test")
    body = {"id": "urn:ngsi-ld:Thing:new", "type": ["Sensor", "Device", "Sensor"], "depth": 3}
    assert client.post(f"{E}?workspace=acme/farm", json=body).status_code == 201
    api = TestClient(client.app)
    assert api.get(f"{E}/urn:ngsi-ld:Thing:new", headers=bearer(token)).json()["type"] == ["Sensor", "Device"]
    assert short_ids(api, token, type="Device") == ["new"]
    assert client.post(f"{E}/urn:ngsi-ld:Thing:new/attrs", json={"depth": 4}).status_code == 204
    assert short_ids(api, token, type="Device;Sensor") == ["new"]
    problem(
        client.post(f"{E}?workspace=acme/farm", json={"id": "urn:ngsi-ld:Thing:x", "type": []}),
        400,
        "BadRequestData",
    )
    problem(
        client.post(f"{E}?workspace=acme/farm", json={"id": "urn:ngsi-ld:Thing:x", "type": ["A", 3]}),
        400,
        "BadRequestData",
    )
    assert client.delete(f"{E}/urn:ngsi-ld:Thing:new").status_code == 204
    with world.ctx.db.session() as s:
        assert s.execute(select(entity_types)).all() == []  # the extra types went with the entity


def test_import_upsert_replaces_the_types(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    with world.ctx.db.transaction() as s:
        from sensorhub.accounts import service as accounts
        from sensorhub.entities.service import import_entities

        o = accounts.get_org(s, "acme")
        import_entities(
            s,
            o,
            accounts.get_workspace(s, o, "farm"),
            [{"id": "urn:ngsi-ld:Thing:ab", "type": ["Office", "Shop"]}],
            upsert=True,
        )
    assert client.get(f"{E}/urn:ngsi-ld:Thing:ab", headers=bearer(token)).json()["type"] == ["Office", "Shop"]
    assert short_ids(client, token, type="Shop") == ["ab", "abc", "c"]
    assert "ab" not in short_ids(client, token, type="Building")


def _migrate_with_an_entity(settings: Settings) -> None:
    from sensorhub.context import AppContext
    from sensorhub.migrate import downgrade, upgrade

    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    World(ctx).org("acme")
    World(ctx).entity("acme", "main", "urn:ngsi-ld:Device:kept", "Device")
    downgrade(ctx.db, "0016_oidc_sign_in")
    with ctx.db.engine.connect() as c:
        assert c.execute(text("SELECT type FROM entities")).all() == [("Device",)]
    upgrade(ctx.db)
    with ctx.db.engine.connect() as c:
        assert c.execute(text("SELECT type, extra_types FROM entities")).all() == [("Device", None)]
        assert c.execute(text("SELECT count(*) FROM entity_types")).scalar() == 0
    ctx.db.dispose()


def test_migration_keeps_existing_single_types_sqlite(tmp_path: Path) -> None:
    _migrate_with_an_entity(Settings(data_dir=tmp_path))


def test_migration_keeps_existing_single_types_postgresql(
    tmp_path: Path, fresh_pg: Callable[[bool], str]
) -> None:
    _migrate_with_an_entity(
        Settings(data_dir=tmp_path, database_url=fresh_pg(False), env="test", secret_key=TEST_SECRET_KEY)
    )
