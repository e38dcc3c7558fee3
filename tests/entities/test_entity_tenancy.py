"""Tenancy: a token of organisation A never sees organisation B's entities, through any entity route;
grant- and restriction-limited credentials see exactly their slice. Also the Akenza asset pages."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.builders import World, bearer, login
from tests.entities.helpers import devices, follow, problem, put_entities

E = "/ngsi-ld/v1/entities"
Q = "/ngsi-ld/v1/entityOperations/query"
SHARED_ID = "urn:ngsi-ld:Device:shared-1"


def _two_tenants(world: World) -> None:
    world.org("alpha", ("north", "south"))
    world.org("beta", ("main",))
    world.user("a@alpha.test", "alpha", "owner")
    world.user("b@beta.test", "beta", "owner")
    put_entities(
        world, "alpha", "north", [*devices("n", 5), {"id": SHARED_ID, "type": "Device", "owner": "alpha"}]
    )
    put_entities(world, "alpha", "south", devices("s", 4, "Valve"))
    put_entities(
        world,
        "beta",
        "main",
        [
            *devices("b", 7),
            {"id": SHARED_ID, "type": "Device", "owner": "beta"},
            *devices("secret", 2, "BetaOnly"),
        ],
    )


def test_token_of_a_never_sees_b(client: TestClient, world: World) -> None:
    _two_tenants(world)
    beta_token = world.pat("b@beta.test", ["entities"])
    for token in (world.pat("a@alpha.test", ["entities"]), world.api_key("alpha", ["entities"])):
        h = bearer(token)
        ids, responses = follow(client, f"{E}?local=true&limit=3&count=true", h)
        assert len(ids) == 10 and not any(":b-" in i or "secret" in i for i in ids)
        assert responses[0].headers["NGSILD-Results-Count"] == "10"
        r = client.get(f"{E}?type=BetaOnly&count=true", headers=h)
        assert r.json() == [] and r.headers["NGSILD-Results-Count"] == "0"
        assert (
            client.get(f"{E}?idPattern=secret&local=true&count=true", headers=h).headers[
                "NGSILD-Results-Count"
            ]
            == "0"
        )
        assert client.get(E, params={"q": 'owner=="beta"'}, headers=h).json() == []
        assert (
            client.get(f"{E}/{SHARED_ID}", params={"options": "keyValues"}, headers=h).json()["owner"]
            == "alpha"
        )
        problem(client.get(f"{E}/urn:ngsi-ld:BetaOnly:secret-0000", headers=h), 404, "ResourceNotFound")
        r = client.post(
            f"{Q}?count=true", json={"type": "Query", "entities": [{"type": "BetaOnly"}]}, headers=h
        )
        assert r.json() == [] and r.headers["NGSILD-Results-Count"] == "0"
        r = client.post(
            Q, json={"type": "Query", "entities": [{"type": "Device", "id": SHARED_ID}]}, headers=h
        )
        assert [e["owner"]["value"] for e in r.json()] == ["alpha"]
        # Assets: only alpha's, and beta's workspace is refused.
        page = client.get("/v3/assets", params={"size": 100}, headers=h).json()
        assert page["totalElements"] == 10
        assert {a["entityId"] for a in page["content"]} >= {SHARED_ID}
        beta_ws = world.workspace("beta", "main").id
        r = client.get("/v3/assets", params={"workspaceId": beta_ws}, headers=h)
        assert r.status_code == 403 and r.json()["message"] == "Permission denied"
        beta_asset = client.get("/v3/assets", headers=bearer(beta_token)).json()
        problem_id = beta_asset["content"][0]["id"]
        assert client.get(f"/v3/assets/{problem_id}", headers=h).status_code == 404


def test_grants_and_token_restrictions_narrow_reads(client: TestClient, world: World) -> None:
    _two_tenants(world)
    world.user("m@alpha.test", "alpha", "member", grant_org=False)
    world.grant("m@alpha.test", "alpha", "south")
    world.grant("m@alpha.test", "alpha", entity="urn:ngsi-ld:Device:n-0002")
    t = world.pat("m@alpha.test", ["entities"])
    ids, _ = follow(client, f"{E}?local=true&limit=2", bearer(t))
    assert ids == ["urn:ngsi-ld:Device:n-0002"] + [f"urn:ngsi-ld:Valve:s-{i:04d}" for i in range(4)]
    problem(client.get(f"{E}/urn:ngsi-ld:Device:n-0001", headers=bearer(t)), 404, "ResourceNotFound")
    r = client.get("/v3/assets", params={"workspaceId": "north"}, headers=bearer(t))
    # The member has an entity grant inside north: the page holds just that entity.
    assert r.status_code == 200 and [a["entityId"] for a in r.json()["content"]] == [
        "urn:ngsi-ld:Device:n-0002"
    ]

    # A member with only the south workspace is refused north.
    world.user("m2@alpha.test", "alpha", "member", grant_org=False)
    world.grant("m2@alpha.test", "alpha", "south")
    t2 = world.pat("m2@alpha.test", ["entities"])
    r = client.get("/v3/assets", params={"workspaceId": "north"}, headers=bearer(t2))
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"

    # An API key restricted to one workspace.
    key = world.api_key("alpha", ["entities"], workspaces=("north",))
    ids, _ = follow(client, f"{E}?local=true&limit=4", {"x-api-key": key})
    assert len(ids) == 6 and all(":n-" in i or i == SHARED_ID for i in ids)
    assert (
        client.get("/v3/assets", params={"workspaceId": "south"}, headers={"x-api-key": key}).status_code
        == 403
    )


def test_asset_spring_page(client: TestClient, world: World) -> None:
    _two_tenants(world)
    h = bearer(world.pat("a@alpha.test", ["entities"]))
    north = world.workspace("alpha", "north")
    r = client.get("/v3/assets", params={"workspaceId": north.id, "size": 4, "page": 1}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "content",
        "pageable",
        "totalPages",
        "totalElements",
        "last",
        "number",
        "size",
        "numberOfElements",
        "first",
        "sort",
        "empty",
    }
    assert (
        body["totalElements"] == 6 and body["totalPages"] == 2 and body["number"] == 1 and body["size"] == 4
    )
    assert (
        body["numberOfElements"] == 2
        and body["last"] is True
        and body["first"] is False
        and not body["empty"]
    )
    assert body["pageable"] == {
        "pageNumber": 1,
        "pageSize": 4,
        "offset": 4,
        "paged": True,
        "unpaged": False,
        "sort": {"sorted": False, "unsorted": True, "empty": True},
    }
    a = body["content"][0]
    assert len(a["id"]) == 16 and a["workspaceId"] == north.id and a["type"] == "Device"
    assert {"name", "description", "entityId", "properties"} <= set(a)
    # By slug, type filter, beyond the end, single asset.
    r = client.get("/v3/assets", params={"workspaceId": "south", "type": "Valve"}, headers=h).json()
    assert r["totalElements"] == 4 and r["first"] and r["last"] and r["size"] == 25
    beyond = client.get("/v3/assets", params={"page": 9}, headers=h).json()
    assert beyond["content"] == [] and beyond["empty"] is True and beyond["totalElements"] == 10
    one = client.get(f"/v3/assets/{a['id']}", headers=h).json()
    assert one == a
    bad = client.get("/v3/assets", params={"page": -1}, headers=h)
    assert bad.status_code == 400 and set(bad.json()) >= {"timestamp", "path", "status", "error", "message"}


def test_offset_paging_is_per_reader_and_follows_writes(client: TestClient, world: World) -> None:
    """Offsets are translated to keys from earlier pages; that shortcut never crosses readers and
    never survives a write."""
    world.org("acme", ("farm", "lab"))
    world.user("o@acme.test", "acme", "owner")
    world.user("m@acme.test", "acme", "member", grant_org=False)
    world.grant("m@acme.test", "acme", "lab")
    put_entities(world, "acme", "farm", devices("a", 6))
    put_entities(world, "acme", "lab", devices("b", 6))
    owner, member = (
        bearer(world.pat("o@acme.test", ["entities"])),
        bearer(world.pat("m@acme.test", ["entities"])),
    )

    def page(h: dict[str, str], offset: int) -> list[str]:
        r = client.get(f"{E}?local=true&limit=4&offset={offset}", headers=h)
        return [e["id"].rsplit(":", 1)[1] for e in r.json()]

    assert page(owner, 0) == ["a-0000", "a-0001", "a-0002", "a-0003"]
    assert page(owner, 4) == ["a-0004", "a-0005", "b-0000", "b-0001"]
    assert page(member, 4) == ["b-0004", "b-0005"]
    login(client, "o@acme.test")
    assert client.delete(f"{E}/urn:ngsi-ld:Device:a-0001").status_code == 204
    assert page(owner, 4) == ["a-0005", "b-0000", "b-0001", "b-0002"]


def test_ngsild_tenant_picks_one_organisation(client: TestClient, world: World) -> None:
    _two_tenants(world)
    world.user("both@x.test", "alpha", "admin")
    world.user("both@x.test", "beta", "viewer")
    h = bearer(world.pat("both@x.test", ["entities"]))
    r = client.get(E, params={"id": SHARED_ID, "local": "true", "options": "keyValues"}, headers=h)
    assert sorted(e["owner"] for e in r.json()) == ["alpha", "beta"]
    for tenant in ("alpha", "beta"):
        th = {**h, "NGSILD-Tenant": tenant}
        assert client.get(f"{E}/{SHARED_ID}?options=keyValues", headers=th).json()["owner"] == tenant
        r = client.get(E, params={"local": "true", "count": "true", "limit": 0}, headers=th)
        assert r.headers["NGSILD-Results-Count"] == "10"  # each organisation has 10
    # A tenant the token does not reach is simply empty.
    r = client.get(
        E, params={"local": "true", "count": "true", "limit": 0}, headers={**h, "NGSILD-Tenant": "nope"}
    )
    assert r.headers["NGSILD-Results-Count"] == "0"
    problem(client.get(f"{E}/{SHARED_ID}", headers={**h, "NGSILD-Tenant": "nope"}), 404, "ResourceNotFound")
