"""NGSI-LD entity scopes (ETSI GS CIM 009 V1.8: ``scope`` is a string or an array of strings such as
``/Madrid/Gardens``): stored, written through the session write paths and the import, rendered after
``type`` in every representation, and matched by ``scopeQ`` (exact, ``+`` one level, ``/#`` it and below,
``/#`` any; ``;`` and, ``,``/``|`` or, parentheses) with the other filters, paging and counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from sensorhub.config import Settings
from sensorhub.entities.models import entity_scopes
from tests.builders import World, bearer, login
from tests.conftest import TEST_SECRET_KEY
from tests.entities.helpers import follow, owner_token, problem, put_entities, short_ids

E = "/ngsi-ld/v1/entities"
Q = "/ngsi-ld/v1/entityOperations/query"
POINT = {"type": "Point", "coordinates": [8.54, 47.37]}
ITEMS: list[dict[str, Any]] = [
    {"id": "urn:ngsi-ld:Park:s1", "type": "Park", "scope": "/Madrid/Gardens/ParqueNorte", "area": 1,
     "location": POINT},
    {"id": "urn:ngsi-ld:Park:s2", "type": "Park", "area": 2,
     "scope": ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]},
    {"id": "urn:ngsi-ld:Park:s3", "type": "Park", "scope": "/Madrid/Parks", "area": 3, "location": POINT},
    {"id": "urn:ngsi-ld:Office:s4", "type": "Office", "scope": ["/Madrid"], "area": 4},
    {"id": "urn:ngsi-ld:Office:u1", "type": "Office", "scope": "/a_b/x"},
    {"id": "urn:ngsi-ld:Office:u2", "type": "Office", "scope": "/aXb/x"},
    {"id": "urn:ngsi-ld:Park:n", "type": "Park", "area": 5, "location": POINT},
]  # fmt: skip


SCOPE_QUERIES: list[tuple[str, list[str]]] = [
    ("/Madrid/Gardens/ParqueNorte", ["s1", "s2"]),
    ("/Madrid/+/ParqueNorte", ["s1", "s2"]),
    ("/Madrid/+", ["s3"]),
    ("/+", ["s4"]),
    ("/Madrid/#", ["s1", "s2", "s3", "s4"]),  # /Madrid itself and everything below it
    ("/Madrid/+/#", ["s1", "s2", "s3"]),
    ("/CompanyA/#", ["s2"]),
    ("/#", ["s1", "s2", "s3", "s4", "u1", "u2"]),  # any scope: not the unscoped entity
    ("/a_b/#", ["u1"]),  # _ is a name character, not a LIKE wildcard
    ("/Mad", []),
    ("/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC", ["s2"]),
    ("/Madrid/Parks,/CompanyA/#", ["s2", "s3"]),
    ("/Madrid/Parks|/CompanyA/#", ["s2", "s3"]),
    ("(/Madrid/Parks|/Madrid);/#", ["s3", "s4"]),
    ("/CompanyA/#;(/Madrid/Parks|/Madrid/Gardens/ParqueNorte)", ["s2"]),
    ("/Madrid/+/ParqueNorte;/Madrid/Parks", []),
]


def test_scope_q_matches_the_scopes(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    got = {q: sorted(short_ids(client, token, scopeQ=q)) for q, _ in SCOPE_QUERIES}
    assert got == {q: want for q, want in SCOPE_QUERIES}


def test_scope_q_with_the_other_filters_paging_and_counts(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    h = bearer(token)
    assert short_ids(client, token, scopeQ="/Madrid/#", type="Park") == ["s1", "s2", "s3"]
    assert short_ids(client, token, scopeQ="/Madrid/#", q="area>=2") == ["s4", "s2", "s3"]
    assert short_ids(client, token, scopeQ="/Madrid/#", idPattern=":s[12]$") == ["s1", "s2"]
    near = {"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": "[8.54,47.37]"}
    assert short_ids(client, token, scopeQ="/Madrid/+/#", **near) == ["s1", "s3"]
    r = client.get(E, params={"scopeQ": "/#", "limit": "2", "count": "true"}, headers=h)
    assert r.headers["NGSILD-Results-Count"] == "6" and len(r.json()) == 2
    ids, pages = follow(client, f"{E}?scopeQ=/%23&limit=2", h)
    assert sorted(i.rsplit(":", 1)[1] for i in ids) == ["s1", "s2", "s3", "s4", "u1", "u2"]
    assert len(pages) == 3
    r = client.get(E, params={"scopeQ": "/#", "limit": "2", "offset": "4"}, headers=h)
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Park:s2", "urn:ngsi-ld:Park:s3"]
    r = client.get(E, params={"scopeQ": "/Madrid/#", "limit": "0", "count": "true"}, headers=h)
    assert r.headers["NGSILD-Results-Count"] == "4" and r.json() == []
    # the Query body
    r = client.post(Q, json={"type": "Query", "scopeQ": "/Madrid/+/ParqueNorte"}, headers=h)
    assert sorted(e["id"] for e in r.json()) == ["urn:ngsi-ld:Park:s1", "urn:ngsi-ld:Park:s2"]
    body = {"type": "Query", "entities": [{"type": "Office"}], "scopeQ": "/Madrid/#,/a_b/x"}
    r = client.post(Q, params={"count": "true"}, json=body, headers=h)
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Office:s4", "urn:ngsi-ld:Office:u1"]
    assert r.headers["NGSILD-Results-Count"] == "2"
    # the temporal Query body (and GET /temporal/entities) are read by the same entity query; with timerel
    # only entities with instances in the range are answered, so s3 gets one
    ingest = world.pat("owner@acme.test", ["ingest"], "ingest")
    point = [{"timestamp": "2021-01-01T00:00:00Z", "data": {"level": 1.0}}]
    for park in ("urn:ngsi-ld:Park:s3", "urn:ngsi-ld:Park:n"):
        r = client.post(f"/v3/devices/{park}/backfill", json=point, headers=bearer(ingest))
        assert r.status_code == 200, r.text
    tq = {
        "type": "Query",
        "scopeQ": "/Madrid/+",
        "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"},
    }
    all_scopes = world.pat("owner@acme.test", ["entities", "timeseries"], "temporal")
    r = client.post("/ngsi-ld/v1/temporalEntityOperations/query", json=tq, headers=bearer(all_scopes))
    assert r.status_code == 200, r.text
    assert [(e["id"], e["scope"]) for e in r.json()] == [("urn:ngsi-ld:Park:s3", "/Madrid/Parks")]
    r = client.get(
        "/ngsi-ld/v1/temporal/entities",
        params={"scopeQ": "/Madrid/+", "timerel": "after", "timeAt": "2020-01-01T00:00:00Z"},
        headers=bearer(all_scopes),
    )
    assert r.status_code == 200, r.text
    assert [(e["id"], e["scope"]) for e in r.json()] == [("urn:ngsi-ld:Park:s3", "/Madrid/Parks")]
    for bad in ("Madrid", "/Madrid/#/x", "/a;", "(/a", "/a b"):
        problem(client.get(E, params={"scopeQ": bad}, headers=h), 400, "InvalidRequest")
    problem(client.post(Q, json={"type": "Query", "scopeQ": "/a/"}, headers=h), 400, "InvalidRequest")


def test_scopes_render_after_the_type_in_every_form(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    h = bearer(token)
    one = client.get(f"{E}/urn:ngsi-ld:Park:s1", headers=h).json()
    assert list(one)[:3] == ["id", "type", "scope"] and one["scope"] == "/Madrid/Gardens/ParqueNorte"
    many = client.get(f"{E}/urn:ngsi-ld:Park:s2", params={"options": "keyValues"}, headers=h).json()
    assert many == {
        "id": "urn:ngsi-ld:Park:s2",
        "type": "Park",
        "scope": ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"],
        "area": 2,
    }
    concise = client.get(f"{E}/urn:ngsi-ld:Office:s4", params={"format": "concise"}, headers=h).json()
    assert concise == {"id": "urn:ngsi-ld:Office:s4", "type": "Office", "scope": "/Madrid", "area": 4}
    ld = client.get(f"{E}/urn:ngsi-ld:Park:s3", headers={**h, "Accept": "application/ld+json"}).json()
    assert ld["scope"] == "/Madrid/Parks" and "@context" in ld
    assert "scope" not in client.get(f"{E}/urn:ngsi-ld:Park:n", headers=h).json()
    listed = client.get(E, params={"type": "Park", "options": "sysAttrs"}, headers=h).json()
    assert [e.get("scope") for e in listed] == [
        None,  # Park:n
        "/Madrid/Gardens/ParqueNorte",
        ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"],
        "/Madrid/Parks",
    ]
    # pick and omit treat scope like id and type
    picked = client.get(f"{E}/urn:ngsi-ld:Park:s1", params={"pick": "id,scope"}, headers=h).json()
    assert picked == {"id": "urn:ngsi-ld:Park:s1", "scope": "/Madrid/Gardens/ParqueNorte"}
    omitted = client.get(f"{E}/urn:ngsi-ld:Park:s1", params={"omit": "scope,location"}, headers=h).json()
    assert set(omitted) == {"id", "type", "area"}
    # a joined entity shows its scopes too
    put_entities(
        world,
        "acme",
        "farm",
        [
            {
                "id": "urn:ngsi-ld:Visit:w",
                "type": "Visit",
                "park": {"type": "Relationship", "object": ITEMS[0]["id"]},
            }
        ],
    )
    r = client.get(f"{E}/urn:ngsi-ld:Visit:w", params={"join": "inline"}, headers=h).json()
    assert r["park"]["entity"]["scope"] == "/Madrid/Gardens/ParqueNorte"


def _scope_rows(world: World) -> list[tuple[str, ...]]:
    with world.ctx.db.session() as s:
        return sorted(tuple(r) for r in s.execute(select(entity_scopes.c.scope)).all())


def test_session_writes_set_add_and_replace_the_scopes(client: TestClient, world: World) -> None:
    world.org("acme", ("farm",))
    world.user("owner@acme.test", "acme", "owner")
    token = world.pat("owner@acme.test", ["entities"])
    login(client, "owner@acme.test")
    api = TestClient(client.app)
    eid = "urn:ngsi-ld:Parcel:scoped"

    def scope() -> Any:
        return (
            api.get(f"{E}/{eid}", params={"options": "keyValues"}, headers=bearer(token)).json().get("scope")
        )

    body = {"id": eid, "type": "Parcel", "scope": "/farm/north", "area": 3}
    assert client.post(f"{E}?workspace=acme/farm", json=body).status_code == 201
    assert scope() == "/farm/north" and short_ids(api, token, scopeQ="/farm/#") == ["scoped"]
    # append (POST /attrs): the new scopes are added to the entity's
    assert client.post(f"{E}/{eid}/attrs", json={"scope": ["/farm/south", "/farm/north"]}).status_code == 204
    assert scope() == ["/farm/north", "/farm/south"]
    assert _scope_rows(world) == [("/farm/north",), ("/farm/south",)]
    # update (PATCH /attrs): replaced; an attribute the entity lacks is reported as before
    r = client.patch(f"{E}/{eid}/attrs", json={"scope": "/orchard", "area": 4, "nope": 1})
    assert r.status_code == 207 and r.json()["updated"] == ["area", "scope"]
    assert scope() == "/orchard" and _scope_rows(world) == [("/orchard",)]
    assert short_ids(api, token, scopeQ="/farm/#") == [] and short_ids(api, token, scopeQ="/orchard") == [
        "scoped"
    ]
    assert client.patch(f"{E}/{eid}/attrs", json={"scope": ["/a", "/b"]}).status_code == 204
    assert scope() == ["/a", "/b"]
    # a bad scope is a 400 naming scope, and changes nothing
    bad: list[Any] = ["farm", "/farm/+", "/farm/#", "/#", "/a//b", "/a b", "/a/", [], ["/a", 3], 7, None,
                      "/" + "x" * 200, [f"/s{i}" for i in range(21)]]  # fmt: skip
    for value in bad:
        r = problem(
            client.post(f"{E}?workspace=acme/farm", json={**body, "scope": value}), 400, "BadRequestData"
        )
        assert "scope" in r["detail"], value
        problem(client.patch(f"{E}/{eid}/attrs", json={"scope": value}), 400, "BadRequestData")
        problem(client.post(f"{E}/{eid}/attrs", json={"scope": value}), 400, "BadRequestData")
    many = {"scope": [f"/s{i}" for i in range(19)]}
    r = problem(client.post(f"{E}/{eid}/attrs", json=many), 400, "BadRequestData")  # 2 + 19 > 20
    assert "scope" in r["detail"]
    assert scope() == ["/a", "/b"]
    assert client.delete(f"{E}/{eid}").status_code == 204
    assert _scope_rows(world) == []  # the scopes went with the entity


def test_import_upsert_replaces_the_scopes(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    with world.ctx.db.transaction() as s:
        from sensorhub.accounts import service as accounts
        from sensorhub.entities.service import import_entities

        o = accounts.get_org(s, "acme")
        items = [
            {"id": "urn:ngsi-ld:Park:s1", "type": "Park", "scope": ["/Lisbon", "/Madrid/Parks"]},
            {"id": "urn:ngsi-ld:Park:s2", "type": "Park"},  # no scope: removed
        ]
        import_entities(s, o, accounts.get_workspace(s, o, "farm"), items, upsert=True)
    assert short_ids(client, token, scopeQ="/Madrid/Parks") == ["s1", "s3"]
    assert short_ids(client, token, scopeQ="/Madrid/Gardens/#") == []
    assert short_ids(client, token, scopeQ="/Lisbon") == ["s1"]
    assert "scope" not in client.get(f"{E}/urn:ngsi-ld:Park:s2", headers=bearer(token)).json()
    with pytest.raises(Exception, match="scope"):
        put_entities(world, "acme", "farm", [{"id": "urn:ngsi-ld:Park:x", "type": "Park", "scope": "x"}])


def test_scoped_entities_stay_within_the_token(client: TestClient, world: World) -> None:
    token = owner_token(world, ITEMS)
    world.org("other", ("main",))
    put_entities(
        world, "other", "main", [{"id": "urn:ngsi-ld:Park:theirs", "type": "Park", "scope": "/Madrid"}]
    )
    assert "theirs" not in short_ids(client, token, scopeQ="/#")
    r = client.get(E, params={"scopeQ": "/Madrid", "count": "true"}, headers=bearer(token))
    assert r.headers["NGSILD-Results-Count"] == "1"
    narrow = world.pat("owner@acme.test", ["entities"], "narrow", entities=["urn:ngsi-ld:Park:s2"])
    assert short_ids(client, narrow, scopeQ="/#") == ["s2"]
    assert short_ids(client, narrow, scopeQ="/Madrid/#") == ["s2"]


def _migrate_with_a_scoped_entity(settings: Settings) -> None:
    from sensorhub.context import AppContext
    from sensorhub.migrate import downgrade, upgrade

    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    World(ctx).org("acme", ("main",))
    put_entities(World(ctx), "acme", "main", [{"id": "urn:ngsi-ld:Park:p", "type": "Park", "scope": "/a/b"}])
    with ctx.db.engine.connect() as c:
        assert c.execute(text("SELECT scope FROM entity_scopes")).all() == [("/a/b",)]
    downgrade(ctx.db, "0022_push_event_types")
    with ctx.db.engine.connect() as c:
        assert c.execute(text("SELECT entity_id, type FROM entities")).all() == [
            ("urn:ngsi-ld:Park:p", "Park")
        ]
    upgrade(ctx.db)
    with ctx.db.engine.connect() as c:
        assert c.execute(text("SELECT scopes FROM entities")).all() == [(None,)]
        assert c.execute(text("SELECT count(*) FROM entity_scopes")).scalar() == 0
    ctx.db.dispose()


def test_migration_adds_scopes_sqlite(tmp_path: Path) -> None:
    _migrate_with_a_scoped_entity(Settings(data_dir=tmp_path))


def test_migration_adds_scopes_postgresql(tmp_path: Path, fresh_pg: Callable[[bool], str]) -> None:
    _migrate_with_a_scoped_entity(
        Settings(data_dir=tmp_path, database_url=fresh_pg(False), env="test", secret_key=TEST_SECRET_KEY)
    )
