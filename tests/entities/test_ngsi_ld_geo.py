"""NGSI-LD geo-queries on both backends: every georel against sets worked out by hand, GeoJSON output,
paging, tenancy, the bounding box kept on write, and malformed geometry (cf. the ETSI suite's
query_entities geo cases)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorhub.accounts import service as accounts
from sensorhub.entities.service import import_entities
from tests.builders import World, bearer
from tests.entities.helpers import follow, problem, put_entities

E = "/ngsi-ld/v1/entities"
P1 = [8.5417, 47.3769]  # Zürich HB
P2 = [8.5500, 47.3667]  # ~1.3 km from P1
P3 = [8.6000, 47.4000]  # ~5 km from P1
BERN = [7.4474, 46.9480]  # ~95 km from P1
PARCEL = [[[8.54, 47.36], [8.56, 47.36], [8.56, 47.38], [8.54, 47.38], [8.54, 47.36]]]  # contains P1
ROAD = [[8.40, 47.20], [8.50, 47.30]]
BIG_BOX = [[[8.4, 47.3], [8.7, 47.3], [8.7, 47.5], [8.4, 47.5], [8.4, 47.3]]]


def _loc(kind: str, coords: Any) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": kind, "coordinates": coords}}


@pytest.fixture
def token(world: World) -> str:
    world.org("acme", ("farm",))
    world.user("o@acme.test", "acme", "owner")
    items = [
        {"id": "urn:ngsi-ld:Sensor:p1", "type": "Sensor", "location": _loc("Point", P1), "kind": "a"},
        {"id": "urn:ngsi-ld:Sensor:p2", "type": "Sensor", "location": _loc("Point", P2), "kind": "b"},
        {"id": "urn:ngsi-ld:Sensor:p3", "type": "Sensor", "location": _loc("Point", P3), "kind": "a"},
        {"id": "urn:ngsi-ld:Sensor:bern", "type": "Sensor", "location": _loc("Point", BERN), "kind": "a"},
        {"id": "urn:ngsi-ld:Parcel:field", "type": "Parcel", "location": _loc("Polygon", PARCEL)},
        {"id": "urn:ngsi-ld:Road:r1", "type": "Road", "location": _loc("LineString", ROAD)},
        {"id": "urn:ngsi-ld:Sensor:nowhere", "type": "Sensor", "kind": "a"},
    ]
    put_entities(world, "acme", "farm", items)
    world.org("other")
    put_entities(
        world,
        "other",
        "main",
        [{"id": "urn:ngsi-ld:Sensor:spy", "type": "Sensor", "location": _loc("Point", P1)}],
    )
    return world.pat("o@acme.test", ["entities", "timeseries"])


def _ids(client: TestClient, token: str, **params: str) -> set[str]:
    r = client.get(E, params={"limit": "100", **params}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return {e["id"].rsplit(":", 1)[1] for e in r.json()}


def _pt(c: list[float]) -> str:
    return f"[{c[0]},{c[1]}]"


def test_every_georel_gives_the_expected_set(client: TestClient, token: str) -> None:
    near = {"geometry": "Point", "coordinates": _pt(P1)}
    assert _ids(client, token, georel="near;maxDistance==2000", **near) == {"p1", "p2", "field"}
    assert _ids(client, token, georel="near;maxDistance==10", **near) == {"p1", "field"}
    assert _ids(client, token, georel="near;minDistance==50000", **near) == {"bern"}
    box = {"geometry": "Polygon", "coordinates": str(BIG_BOX).replace(" ", "")}
    assert _ids(client, token, georel="within", **box) == {"p1", "p2", "p3", "field"}
    assert _ids(client, token, georel="intersects", **box) == {
        "p1",
        "p2",
        "p3",
        "field",
        "r1",
    }  # r1 touches it
    assert _ids(client, token, georel="disjoint", **box) == {"bern"}  # not "nowhere": it has no location
    assert _ids(client, token, georel="contains", **near) == {"p1", "field"}
    assert _ids(client, token, georel="equals", geometry="Point", coordinates=_pt(P2)) == {"p2"}
    line = {"geometry": "LineString", "coordinates": "[[8.53,47.37],[8.57,47.37]]"}
    assert _ids(client, token, georel="intersects", **line) == {"field"}
    other = "[[[8.55,47.37],[8.58,47.37],[8.58,47.39],[8.55,47.39],[8.55,47.37]]]"
    assert _ids(client, token, georel="overlaps", geometry="Polygon", coordinates=other) == {"field"}
    multi = {"geometry": "MultiPoint", "coordinates": f"[{_pt(P3)},{_pt(BERN)}]"}
    assert _ids(client, token, georel="near;maxDistance==100", **multi) == {"p3", "bern"}
    # With q and type, and through the POST body's geoQ.
    assert _ids(client, token, georel="near;maxDistance==6000", q='kind=="a"', **near) == {"p1", "p3"}
    r = client.post(
        "/ngsi-ld/v1/entityOperations/query",
        json={
            "type": "Query",
            "entities": [{"type": "Sensor"}],
            "geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": P1},
        },
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    assert {e["id"] for e in r.json()} == {"urn:ngsi-ld:Sensor:p1", "urn:ngsi-ld:Sensor:p2"}


def test_geojson_output_paging_and_count(client: TestClient, token: str) -> None:
    h = {**bearer(token), "Accept": "application/geo+json"}
    box = {"georel": "within", "geometry": "Polygon", "coordinates": str(BIG_BOX).replace(" ", "")}
    r = client.get(E, params={**box, "count": "true", "limit": "2"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    assert r.headers["NGSILD-Results-Count"] == "4"
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    f = fc["features"][0]
    assert f["type"] == "Feature" and f["id"] == "urn:ngsi-ld:Parcel:field"
    assert f["geometry"] == {"type": "Polygon", "coordinates": PARCEL}
    assert f["properties"]["type"] == "Parcel"
    ids, pages = follow(
        client,
        f"{E}?georel=within&geometry=Polygon&coordinates={str(BIG_BOX).replace(' ', '')}&limit=3",
        bearer(token),
    )
    assert sorted(ids) == ids and len(ids) == 4 and len(pages) == 2
    one = client.get(f"{E}/urn:ngsi-ld:Sensor:p2", headers=h)
    assert one.json()["geometry"] == {"type": "Point", "coordinates": P2} and one.json()["type"] == "Feature"
    problem(
        client.get(E, params={"geometryProperty": "location"}, headers=bearer(token)), 400, "BadRequestData"
    )


def test_bounding_box_follows_writes_and_temporal_queries_take_geo(
    client: TestClient, world: World, token: str
) -> None:
    near_bern = {"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": _pt(BERN)}
    assert _ids(client, token, **near_bern) == {"bern"}
    with world.ctx.db.transaction() as s:  # p1 moves to Bern
        o = accounts.get_org(s, "acme")
        item = {"id": "urn:ngsi-ld:Sensor:p1", "type": "Sensor", "location": _loc("Point", [7.4480, 46.9482])}
        import_entities(s, o, accounts.get_workspace(s, o, "farm"), [item], upsert=True)
    assert _ids(client, token, **near_bern) == {"bern", "p1"}
    assert "p1" not in _ids(
        client, token, georel="near;maxDistance==10", geometry="Point", coordinates=_pt(P1)
    )
    r = client.get(
        "/ngsi-ld/v1/temporal/entities", params={"type": "Sensor", **near_bern}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    assert {e["id"] for e in r.json()} == {"urn:ngsi-ld:Sensor:bern", "urn:ngsi-ld:Sensor:p1"}


BAD: list[tuple[dict[str, str], str]] = [
    ({"georel": "near;maxDistance==10", "geometry": "Circle", "coordinates": "[8,47]"}, "geometry"),
    ({"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[8,"}, "coordinates"),
    ({"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[200,47]"}, "coordinates"),
    ({"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[[8,47]]"}, "coordinates"),
    ({"georel": "near;maxDistance==10", "geometry": "Point"}, "coordinates"),
    ({"georel": "near;maxDistance==-1", "geometry": "Point", "coordinates": "[8,47]"}, "maxDistance"),
    ({"georel": "near", "geometry": "Point", "coordinates": "[8,47]"}, "maxDistance"),
    # §4.10 nearRel admits one distance: no ring, and no second value overriding the first.
    (
        {"georel": "near;minDistance==1000;maxDistance==6000", "geometry": "Point", "coordinates": "[8,47]"},
        "one distance",
    ),
    (
        {"georel": "near;maxDistance==5;maxDistance==10", "geometry": "Point", "coordinates": "[8,47]"},
        "one distance",
    ),
    ({"georel": "nearby", "geometry": "Point", "coordinates": "[8,47]"}, "georel"),
    ({"georel": "within;x==1", "geometry": "Point", "coordinates": "[8,47]"}, "georel"),
    ({"geometry": "Point", "coordinates": "[8,47]"}, "georel"),
    ({"georel": "within", "geometry": "Polygon", "coordinates": "[[[8,47],[9,47],[9,48]]]"}, "coordinates"),
    (
        {"georel": "within", "geometry": "Polygon", "coordinates": "[[[0,0],[2,2],[2,0],[0,2],[0,0]]]"},
        "Polygon",
    ),
    ({"georel": "within", "geometry": "LineString", "coordinates": "[[8,47]]"}, "coordinates"),
    ({"geoproperty": "location"}, "geoproperty"),
]


def test_malformed_geo_queries_are_400_naming_them(client: TestClient, token: str) -> None:
    for params, name in BAD:
        body = problem(client.get(E, params=params, headers=bearer(token)), 400, "BadRequestData")
        assert name in body["detail"], (params, body["detail"])
    r = client.post(
        "/ngsi-ld/v1/entityOperations/query",
        json={
            "type": "Query",
            "entities": [{"type": "Sensor"}],
            "geoQ": {"georel": "within", "geometry": "Point", "coordinates": [8, 47], "x": 1},
        },
        headers=bearer(token),
    )
    assert "geoQ.x" in problem(r, 400, "BadRequestData")["detail"]
