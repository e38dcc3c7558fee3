"""NGSI-LD reads with a token: paging, counts, limits, filters, projections, formats, error shapes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.builders import World, bearer
from tests.entities.helpers import devices, follow, problem, put_entities

E = "/ngsi-ld/v1/entities"


@pytest.fixture
def token(world: World) -> str:
    world.org("acme", ("farm", "lab"))
    world.user("owner@acme.test", "acme", "owner")
    return world.pat("owner@acme.test", ["entities"])


def test_link_next_pages_through_every_entity_exactly_once(
    client: TestClient, world: World, token: str
) -> None:
    put_entities(world, "acme", "farm", devices("a", 130, "Device"))
    put_entities(world, "acme", "lab", devices("b", 77, "Sensor"))
    world.org("other")
    put_entities(world, "other", "main", devices("x", 20))

    ids, responses = follow(client, f"{E}?local=true&limit=40&count=true", bearer(token))
    assert len(ids) == 207 and len(set(ids)) == 207
    assert ids == sorted(ids)
    assert all(r.headers["NGSILD-Results-Count"] == "207" for r in responses)
    assert len(responses) == 6
    # The next link is absolute, keeps the query, and says where it is.
    first_next = responses[0].links["next"]["url"]
    assert first_next.startswith("http://testserver/ngsi-ld/v1/entities?")
    qs = parse_qs(urlsplit(first_next).query)
    assert qs["limit"] == ["40"] and qs["offset"] == ["40"] and qs["count"] == ["true"] and qs["cursor"]
    assert "next" not in responses[-1].links

    # The same with a type filter, and with offsets alone (no cursor).
    ids, _ = follow(client, f"{E}?type=Sensor&limit=25", bearer(token))
    assert len(ids) == 77 and all(":Sensor:" in i for i in ids)
    by_offset = []
    for off in range(0, 207, 50):
        by_offset += [
            e["id"] for e in client.get(f"{E}?local=true&limit=50&offset={off}", headers=bearer(token)).json()
        ]
    assert by_offset == sorted(by_offset) and len(set(by_offset)) == 207


def test_limit_default_cap_and_count_only(client: TestClient, world: World, token: str) -> None:
    put_entities(world, "acme", "farm", devices("a", 520))
    r = client.get(E, params={"local": "true"}, headers=bearer(token))
    assert r.status_code == 200 and len(r.json()) == 100
    assert parse_qs(urlsplit(r.links["next"]["url"]).query)["limit"] == ["100"]
    # Above the cap: 403 TooManyResults (ETSI V1.8.1), never a silently shorter page.
    body = problem(client.get(f"{E}?local=true&limit=1000", headers=bearer(token)), 403, "TooManyResults")
    assert "500" in body["detail"]
    r = client.get(f"{E}?local=true&limit=500", headers=bearer(token))
    assert len(r.json()) == 500
    assert parse_qs(urlsplit(r.links["next"]["url"]).query)["limit"] == ["500"]
    r = client.get(f"{E}?local=true&limit=0&count=true", headers=bearer(token))
    assert r.status_code == 200 and r.json() == [] and r.headers["NGSILD-Results-Count"] == "520"
    assert "next" not in r.links
    problem(client.get(f"{E}?limit=0", headers=bearer(token)), 400, "BadRequestData")
    problem(client.get(f"{E}?limit=-1", headers=bearer(token)), 400, "BadRequestData")
    r = client.get(f"{E}?local=true&offset=500&limit=100", headers=bearer(token))
    assert len(r.json()) == 20 and "next" not in r.links
    assert client.get(f"{E}?local=true&offset=5000", headers=bearer(token)).json() == []


def test_unknown_type_is_empty_with_zero_count(client: TestClient, world: World, token: str) -> None:
    put_entities(world, "acme", "farm", devices("a", 3))
    r = client.get(f"{E}?type=Nope&count=true", headers=bearer(token))
    assert r.status_code == 200 and r.json() == [] and r.headers["NGSILD-Results-Count"] == "0"


@pytest.fixture
def weather(world: World, token: str) -> None:
    rows = [
        ("s1", 21.5, "wheat", True, {"depth": 10}),
        ("s2", 18.0, "maize", False, {"depth": 30}),
        ("s3", -3.0, "wheat", True, {"depth": 20}),
        ("s4", 30, "barley", False, {"depth": 5}),
    ]
    items = [
        {
            "id": f"urn:ngsi-ld:WeatherObserved:{n}",
            "type": "WeatherObserved",
            "temperature": {
                "type": "Property",
                "value": t,
                "unitCode": "CEL",
                "observedAt": "2026-01-01T00:00:00Z",
            },
            "crop": c,
            "active": a,
            "probe": p,
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.5, 47.3]}},
        }
        for n, t, c, a, p in rows
    ]
    items.append({"id": "urn:ngsi-ld:WeatherObserved:s5", "type": "WeatherObserved", "temperature": "hot"})
    items.append({"id": "urn:ngsi-ld:Building:b1", "type": "Building", "name": "Barn"})
    put_entities(world, "acme", "farm", items)


def _ids(client: TestClient, token: str, **params: str) -> list[str]:
    r = client.get(E, params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    return [e["id"].rsplit(":", 1)[1] for e in r.json()]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("temperature>20", ["s1", "s4"]),
        ("temperature>=21.5", ["s1", "s4"]),
        ("temperature<0", ["s3"]),
        ("temperature<=18", ["s2", "s3"]),
        ("temperature==30", ["s4"]),
        ("temperature!=30", ["s1", "s2", "s3", "s5"]),
        ('temperature=="hot"', ["s5"]),
        ('crop=="wheat"', ["s1", "s3"]),
        ('crop!="wheat"', ["s2", "s4"]),
        ('crop=="wheat";temperature>0', ["s1"]),
        ('crop=="barley"|temperature<0', ["s3", "s4"]),
        ('(crop=="wheat"|crop=="maize");temperature>=18', ["s1", "s2"]),
        ('crop=="wheat";(temperature>25|temperature<0)', ["s3"]),
        ("temperature==18..22", ["s1", "s2"]),
        ('crop=="maize","barley"', ["s2", "s4"]),
        ("active==true", ["s1", "s3"]),
        ("active==false", ["s2", "s4"]),
        ("probe[depth]>=20", ["s2", "s3"]),
        ("crop", ["s1", "s2", "s3", "s4"]),
        ('crop~="^(wh|ba)"', ["s1", "s3", "s4"]),
        ('crop=="whe\\"at"', []),
    ],
)
def test_q_operators(client: TestClient, token: str, weather: None, q: str, expected: list[str]) -> None:
    assert _ids(client, token, q=q) == expected


@pytest.mark.parametrize(
    ("q", "needle"),
    [
        ("temperature>", "expected a value"),
        ("temperature>>3", "expected a number"),
        ('crop=="wheat', "unterminated string"),
        ("(temperature>3", "missing ')'"),
        ("temperature>3)", "expected ';', '|'"),
        ("temperature>3;", "expected an attribute name"),
        ("temperature=3", "expected an operator"),
        ("temperature>3..5", "range"),
        ('crop~="("', "regular expression"),
        ("a[b].c==1", "after ']'"),
    ],
)
def test_malformed_q_is_400_naming_the_problem(client: TestClient, token: str, q: str, needle: str) -> None:
    body = problem(client.get(E, params={"q": q}, headers=bearer(token)), 400, "InvalidRequest")
    assert needle in body["detail"] and "position" in body["detail"]


def test_braces_in_a_q_value_are_part_of_the_value_not_a_linked_entity_q(
    client: TestClient, world: World, token: str
) -> None:
    """A q on linked entities (rel{attr}) needs join; braces inside a quoted string or an unquoted URI
    value are part of the value, so such a q is answered without join (a linked q is told apart by
    parsing it: an unquoted URI value with braces used to be refused as one)."""
    put_entities(
        world,
        "acme",
        "farm",
        [
            {"id": "urn:ngsi-ld:Thing:t1", "type": "Thing", "note": "a{b}", "ref": "urn:x:a{b}"},
            {"id": "urn:ngsi-ld:Thing:t2", "type": "Thing", "note": "ab", "ref": "urn:x:ab"},
        ],
    )
    assert _ids(client, token, type="Thing", q='note=="a{b}"') == ["t1"]
    assert _ids(client, token, type="Thing", q="ref==urn:x:a{b}") == ["t1"]
    assert _ids(client, token, type="Thing", q='note=="}{";ref==urn:x:a{b}') == []
    body = problem(
        client.get(E, params={"type": "Thing", "q": 'rel{note}=="a{b}"'}, headers=bearer(token)),
        400,
        "BadRequestData",
    )
    assert "join" in body["detail"]


def test_id_id_pattern_type_lists(client: TestClient, token: str, weather: None) -> None:
    # id or idPattern alone selects too little (§5.7.2.4): local=true asks for every entity, as type=* does.
    for alone in ({"id": "urn:ngsi-ld:Building:b1"}, {"idPattern": ".*:b1"}, {}, {"attrs": "createdAt"}):
        body = problem(client.get(E, params=alone, headers=bearer(token)), 400, "BadRequestData")
        assert "local=true" in body["detail"], alone
    assert _ids(client, token, idPattern="^urn:ngsi-ld:WeatherObserved:s[1-3]$", local="true") == [
        "s1",
        "s2",
        "s3",
    ]
    assert _ids(client, token, idPattern=".*:b1", type="*") == ["b1"]
    ids = "urn:ngsi-ld:WeatherObserved:s2,urn:ngsi-ld:Building:b1"
    assert _ids(client, token, id=ids, local="true") == ["b1", "s2"]
    assert _ids(client, token, type="Building,WeatherObserved", q="temperature>25") == ["s4"]
    problem(client.get(E, params={"idPattern": "(["}, headers=bearer(token)), 400, "BadRequestData")
    problem(
        client.get(E, params={"local": "true", "id": "not a uri"}, headers=bearer(token)),
        400,
        "BadRequestData",
    )
    problem(client.get(E, params={"georel": "near"}, headers=bearer(token)), 400, "BadRequestData")


def test_attrs_projection_key_values_and_sys_attrs(client: TestClient, token: str, weather: None) -> None:
    r = client.get(E, params={"attrs": "crop,location", "idPattern": "s1$"}, headers=bearer(token))
    (e,) = r.json()
    assert set(e) == {"id", "type", "crop", "location"}
    assert e["crop"] == {"type": "Property", "value": "wheat"}
    assert e["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.5, 47.3]}}
    # Entities with none of the requested attributes are not returned.
    assert _ids(client, token, attrs="name") == ["b1"]
    assert _ids(client, token, attrs="crop,name") == ["b1", "s1", "s2", "s3", "s4"]

    r = client.get(
        E,
        params={"local": "true", "options": "keyValues", "id": "urn:ngsi-ld:WeatherObserved:s1"},
        headers=bearer(token),
    )
    assert r.json() == [
        {
            "id": "urn:ngsi-ld:WeatherObserved:s1",
            "type": "WeatherObserved",
            "temperature": 21.5,
            "crop": "wheat",
            "active": True,
            "probe": {"depth": 10},
            "location": {"type": "Point", "coordinates": [8.5, 47.3]},
        }
    ]
    r2 = client.get(
        E,
        params={"local": "true", "format": "simplified", "id": "urn:ngsi-ld:WeatherObserved:s1"},
        headers=bearer(token),
    )
    assert r2.json() == r.json()
    full = client.get(
        E,
        params={"local": "true", "id": "urn:ngsi-ld:WeatherObserved:s1", "options": "sysAttrs"},
        headers=bearer(token),
    )
    e = full.json()[0]
    assert e["createdAt"].endswith("Z") and e["modifiedAt"].endswith("Z")
    # each attribute carries its own system attributes: written with the entity, created with it
    assert e["temperature"] == {
        "type": "Property",
        "value": 21.5,
        "unitCode": "CEL",
        "observedAt": "2026-01-01T00:00:00Z",
        "createdAt": e["createdAt"],
        "modifiedAt": e["createdAt"],
    }
    assert e["location"]["createdAt"] == e["createdAt"]
    problem(client.get(E, params={"options": "bogus"}, headers=bearer(token)), 400, "InvalidRequest")


def test_context_negotiation(client: TestClient, token: str, weather: None) -> None:
    r = client.get(E, params={"type": "Building"}, headers=bearer(token))
    assert r.headers["content-type"] == "application/json"
    assert "@context" not in r.json()[0]
    assert r.links["http://www.w3.org/ns/json-ld#context"]["url"] == (
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
    )
    r = client.get(E, params={"type": "Building"}, headers={**bearer(token), "Accept": "application/ld+json"})
    assert r.headers["content-type"] == "application/ld+json"
    assert r.json()[0]["@context"] == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
    assert "http://www.w3.org/ns/json-ld#context" not in r.links
    one = client.get(
        f"{E}/urn:ngsi-ld:Building:b1", headers={**bearer(token), "Accept": "application/ld+json"}
    )
    assert one.json()["@context"] and one.headers["content-type"] == "application/ld+json"
    problem(client.get(E, headers={**bearer(token), "Accept": "text/csv"}), 406, "NotAcceptable")
    for accept, ld in [
        ("application/ld+json;q=0.5, application/json", False),
        ("application/json;q=0.2, application/ld+json", True),
        ("text/html, */*;q=0.1", False),
    ]:
        r = client.get(E, params={"type": "Building"}, headers={**bearer(token), "Accept": accept})
        assert r.headers["content-type"] == ("application/ld+json" if ld else "application/json"), accept


def test_retrieve_one_and_404_problem_details(
    client: TestClient, world: World, token: str, weather: None
) -> None:
    r = client.get(f"{E}/urn:ngsi-ld:WeatherObserved:s2", params={"attrs": "crop"}, headers=bearer(token))
    assert r.status_code == 200
    assert r.json() == {
        "id": "urn:ngsi-ld:WeatherObserved:s2",
        "type": "WeatherObserved",
        "crop": {"type": "Property", "value": "maize"},
    }
    r = client.get(
        f"{E}/urn:ngsi-ld:WeatherObserved:s2", params={"options": "keyValues"}, headers=bearer(token)
    )
    assert r.json()["temperature"] == 18.0
    body = problem(client.get(f"{E}/urn:ngsi-ld:Nope:1", headers=bearer(token)), 404, "ResourceNotFound")
    assert body["instance"] == f"{E}/urn:ngsi-ld:Nope:1"
    # Another tenant's entity is exactly as unknown.
    world.org("other")
    put_entities(world, "other", "main", [{"id": "urn:ngsi-ld:Secret:1", "type": "Secret"}])
    hidden = problem(client.get(f"{E}/urn:ngsi-ld:Secret:1", headers=bearer(token)), 404, "ResourceNotFound")
    assert hidden["detail"] == body["detail"].replace("urn:ngsi-ld:Nope:1", "urn:ngsi-ld:Secret:1")


def test_post_query(client: TestClient, token: str, weather: None) -> None:
    url = "/ngsi-ld/v1/entityOperations/query"
    body = {
        "type": "Query",
        "entities": [{"type": "WeatherObserved"}],
        "q": "temperature>=18",
        "attrs": ["temperature"],
    }
    r = client.post(f"{url}?count=true&limit=2", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert [e["id"][-2:] for e in r.json()] == ["s1", "s2"]
    assert set(r.json()[0]) == {"id", "type", "temperature"}
    assert r.headers["NGSILD-Results-Count"] == "3"
    nxt = r.links["next"]["url"]
    r2 = client.post(nxt, json=body, headers=bearer(token))
    assert [e["id"][-2:] for e in r2.json()] == ["s4"] and "next" not in r2.links
    sel = {
        "type": "Query",
        "entities": [{"type": "Building"}, {"type": "WeatherObserved", "idPattern": "s[34]$"}],
    }
    r = client.post(f"{url}?options=keyValues", json=sel, headers=bearer(token))
    assert [e["id"][-2:] for e in r.json()] == ["b1", "s3", "s4"]
    problem(
        client.post(url, json={"entities": [{"type": "X"}]}, headers=bearer(token)), 400, "BadRequestData"
    )
    problem(client.post(url, json={"type": "Query", "q": "a>"}, headers=bearer(token)), 400, "InvalidRequest")
    problem(
        client.post(url, json={"type": "Query", "geoQ": {}}, headers=bearer(token)), 400, "BadRequestData"
    )
    problem(
        client.post(url, content=b"{not json", headers={**bearer(token), "Content-Type": "application/json"}),
        400,
        "BadRequestData",
    )


def test_post_query_selects_as_the_get_query_does_local_true_included(
    client: TestClient, token: str, weather: None
) -> None:
    """A Query body that selects nothing (no entities, attrs, q, scopeQ or geoQ) asks for every entity
    with local=true, as GET /entities?local=true does (it used to be refused whatever local said), and
    is refused naming what selects otherwise."""
    url = "/ngsi-ld/v1/entityOperations/query"
    every = _ids(client, token, local="true")
    r = client.post(f"{url}?local=true", json={"type": "Query"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert [e["id"].rsplit(":", 1)[1] for e in r.json()] == every == ["b1", "s1", "s2", "s3", "s4", "s5"]
    for body in ({"type": "Query"}, {"type": "Query", "attrs": ["createdAt"]}):
        detail = problem(client.post(url, json=body, headers=bearer(token)), 400, "BadRequestData")["detail"]
        assert "entities, attrs, q, scopeQ or geoQ" in detail and "local=true" in detail, body


def test_reads_need_the_entities_scope(client: TestClient, world: World, token: str) -> None:
    ts_only = world.pat("owner@acme.test", ["timeseries"], name="ts")
    r = client.get(E, params={"local": "true"}, headers=bearer(ts_only))
    problem(r, 403, "PermissionDenied")
    assert "entities" in r.json()["detail"]
    problem(client.get(E), 401, "Unauthorized")


def test_regex_the_database_cannot_run_is_a_400(client: TestClient, token: str, weather: None) -> None:
    # Python accepts named groups; PostgreSQL does not. Either way the caller gets a clean answer.
    r = client.get(E, params={"idPattern": "(?P<n>s1)$"}, headers=bearer(token))
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        problem(r, 400, "BadRequestData")
    else:
        assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:WeatherObserved:s1"]
