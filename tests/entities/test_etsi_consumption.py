"""The ETSI NGSI-LD API conformance test suite (ETSI GS CIM 009, Robot Framework; ``ngsi-ld-test-suite``)
as a yardstick: its consumption test cases for entity query/retrieve and discovery, translated into pytest
and sent to a real ``uvicorn`` server with a token. Each test is named after its ETSI test id.

How the translation differs from the suite: the suite creates its entities anonymously with
``POST /entities``; sensorhub's entity writes take a session, so the setup imports the same entities
(their terms expanded with the suite's context, ``https://ngsi-ld-test-suite/context#…``) through the
import service. The suite's ``@context`` is served as a hosted context (``SENSORHUB_NGSI_LD_CONTEXT_DIR``)
and named in a ``Link`` header where the suite names it. The assertions are the suite's (status codes,
counts, ids, the members it compares), not its expectation files verbatim.

Cases that fail on what sensorhub does not build are ``xfail(strict=True)`` with the reason: they are
counted as failures of the yardstick (docs/ngsi-ld.md, "ETSI suite"), and start failing this module the day
they pass, so that the count is updated.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World
from tests.conftest import TEST_SECRET_KEY, _truncate_pg
from tests.entities.helpers import put_entities, running_server

NS = "https://ngsi-ld-test-suite/context#"
CONTEXT_NAME = "ngsi-ld-test-suite-compound.jsonld"
B = "urn:ngsi-ld:Building:"


def _t(term: str) -> str:
    return NS + term


def _building(eid: str, **attrs: Any) -> dict[str, Any]:
    # location is a core term (the suite's context imports the core context after its own)
    return {
        "id": eid,
        "type": _t("Building"),
        **{k if k == "location" else _t(k): v for k, v in attrs.items()},
    }


def _p(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def _rel(obj: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def _loc(geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": geometry}


def simple(name: str, sub: str, aql: int, at: str, full: bool, **more: Any) -> dict[str, Any]:
    """building-simple-attributes(-second, -third).jsonld"""
    return {
        "name": _p(name),
        "subCategory": _p(sub),
        "airQualityLevel": _p(aql, unitCode="C62", observedAt=at),
        "almostFull": _p(full),
        **more,
    }


SIMPLE_1 = simple("Eiffel Tower", "tourism", 4, "2020-09-09T16:40:00.000Z", False)
SIMPLE_2 = simple("Pisa Tower", "tourism", 6, "2020-10-10T16:40:00.000Z", True)
SIMPLE_3 = simple(
    "Pisa Tower", "sightseeing", 7, "2023-10-10T16:40:00.000Z", False, locatedIn=_rel("urn:ngsi-ld:City:Pisa")
)
POLYGON_1 = {
    "type": "Polygon",
    "coordinates": [
        [
            [13.2865906, 52.5648645],
            [13.2879639, 52.5648645],
            [13.2797241, 52.4988679],
            [13.477478, 52.4712703],
            [13.5049438, 52.5373084],
            [13.2865906, 52.5648645],
        ]
    ],
}
POLYGON_2 = {
    "type": "Polygon",
    "coordinates": [
        [[13.315773, 52.4757209], [13.339119, 52.4443421], [13.3892441, 52.4669371], [13.315773, 52.4757209]]
    ],
}


class Suite:
    """A real server, a token, and the suite's request keywords (Query Entities, Retrieve Entity, …)."""

    def __init__(self, base: str, token: str, world: World, org: str) -> None:
        self.org = org
        self.base = base + "/ngsi-ld/v1"
        self.context = f"{base}/ngsi-ld/v1/jsonldContexts/{CONTEXT_NAME}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.world = world

    def put(self, *entities: dict[str, Any]) -> None:
        put_entities(self.world, self.org, "farm", list(entities))

    def get(self, path: str, *, context: bool = False, accept: str | None = None, **params: Any) -> Any:
        headers = {}
        if context:
            headers["Link"] = (
                f'<{self.context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
            )
        if accept:
            headers["Accept"] = accept
        return self.http.get(self.base + path, params=params, headers=headers, timeout=30)

    def query(self, **params: Any) -> Any:
        return self.get("/entities/", **params)

    def count(self, **params: Any) -> int:
        r = self.query(count="true", **params)
        assert r.status_code == 200, r.text
        return int(r.headers["NGSILD-Results-Count"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, World]]:
    """One real server per backend for the module; each test reads its own organisation through its own
    token, so tests never see each other's entities."""
    d = tmp_path_factory.mktemp("etsi")
    (d / "contexts").mkdir()
    (d / "contexts" / CONTEXT_NAME).write_text(json.dumps({"@context": {"@vocab": NS}}))
    (d / "data").mkdir()
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, d / "data" / "sensorhub.db")
        settings = Settings(data_dir=d / "data", env="test")
    else:
        url: str = request.getfixturevalue("pg_url")
        _truncate_pg(url)
        settings = Settings(data_dir=d / "data", database_url=url, env="test", secret_key=TEST_SECRET_KEY)
    ctx = AppContext.build(settings)
    try:
        with running_server(settings, SENSORHUB_NGSI_LD_CONTEXT_DIR=str(d / "contexts")) as base:
            yield base, World(ctx)
    finally:
        ctx.db.dispose()


@pytest.fixture
def suite(server: tuple[str, World]) -> Suite:
    base, world = server
    org = f"etsi-{uuid.uuid4().hex[:8]}"
    world.org(org, ("farm",))
    world.user(f"owner@{org}.test", org, "owner")
    return Suite(base, world.pat(f"owner@{org}.test", ["entities"]), world, org)


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted(e["id"] for e in r.json())


# --- 019 Query Entities -------------------------------------------------------------------------------


def test_019_01_01_query_several_entities_based_on_ids(suite: Suite) -> None:
    suite.put(*(_building(f"{B}{i}") for i in range(3)))
    r = suite.query(id=f"{B}0,{B}1", type=_t("Building"))
    assert _ids(r) == [f"{B}0", f"{B}1"]
    assert r.json()[0] == {"id": f"{B}0", "type": _t("Building")}


def test_019_01_02_query_several_entities_based_on_the_entities_types(suite: Suite) -> None:
    suite.put(
        _building(f"{B}b"),
        {"id": "urn:ngsi-ld:Vehicle:v", "type": _t("Vehicle"), _t("brandName"): _p("Mercedes")},
        {
            "id": "urn:ngsi-ld:OffStreetParking:p",
            "type": _t("OffStreetParking"),
            _t("availableSpotNumber"): _p(121),
        },
    )
    r = suite.query(type=f"{_t('Vehicle')},{_t('OffStreetParking')}", accept="application/ld+json")
    assert _ids(r) == ["urn:ngsi-ld:OffStreetParking:p", "urn:ngsi-ld:Vehicle:v"]
    assert all("@context" in e for e in r.json())


def test_019_01_03_query_several_entities_based_on_the_given_id_pattern(suite: Suite) -> None:
    suite.put(_building(f"{B}x1"), _building(f"{B}x2"))
    assert _ids(suite.query(idPattern="urn:ngsi-ld:Building:.*", type=_t("Building"))) == [f"{B}x1", f"{B}x2"]


def test_019_01_04_query_several_entities_based_on_attribute_names(suite: Suite) -> None:
    suite.put(_building(f"{B}s", **SIMPLE_1), _building(f"{B}m"))
    r = suite.query(attrs=f"{_t('airQualityLevel')},{_t('subCategory')}")
    assert _ids(r) == [f"{B}s"]
    assert set(r.json()[0]) == {"id", "type", _t("airQualityLevel"), _t("subCategory")}


def test_019_01_05_query_several_entities_based_on_a_geoquery(suite: Suite) -> None:
    point = {"type": "Point", "coordinates": [13.3986, 52.5547]}
    suite.put(*(_building(f"{B}g{i}", name=_p("Eiffel Tower"), location=_loc(point)) for i in range(2)))
    r = suite.query(
        type=_t("Building"), accept="application/ld+json", georel="equals", geometry="Point",
        coordinates="[13.3986, 52.5547]",
    )  # fmt: skip
    assert _ids(r) == [f"{B}g0", f"{B}g1"]


SCOPE_CASES = [
    ("QueryWithFullScope", "/Madrid/Gardens/ParqueNorte", 2),
    ("QueryWithPlusMatching", "/Madrid/+/ParqueNorte", 2),
    ("QueryWithHashMatching", "/CompanyA/#", 1),
    ("QueryNonEmptyScope", "/#", 2),
    ("QueryWithAndScope", "/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC", 1),
    ("QueryWithOrScope", "/Madrid/Gardens/ParqueNorte,/CompanyA/OrganizationB/UnitC", 2),
]


@pytest.mark.parametrize(("case", "scope_q", "expected"), SCOPE_CASES, ids=[c[0] for c in SCOPE_CASES])
def test_019_01_06_query_several_entities_based_on_scopes(
    suite: Suite, case: str, scope_q: str, expected: int
) -> None:
    suite.put(
        {**_building(f"{B}one"), "scope": "/Madrid/Gardens/ParqueNorte"},
        {**_building(f"{B}many"), "scope": ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]},
    )
    assert suite.count(scopeQ=scope_q, type=_t("Building")) == expected


def test_019_02_01_query_one_entity_via_post_interaction_based_on_id(suite: Suite) -> None:
    suite.put(*(_building(f"{B}{i}") for i in range(3)))
    r = suite.http.post(
        suite.base + "/entityOperations/query",
        json={"type": "Query", "entities": [{"id": f"{B}0", "type": _t("Building")}]},
        timeout=30,
    )
    assert _ids(r) == [f"{B}0"]


def test_019_04_01_query_entities_in_a_simplified_representation(suite: Suite) -> None:
    suite.put(*(_building(f"{B}{i}", **SIMPLE_1) for i in range(3)))
    r = suite.query(id=f"{B}0,{B}1", type=_t("Building"), options="keyValues")
    assert _ids(r) == [f"{B}0", f"{B}1"]
    assert r.json()[0] == {
        "id": f"{B}0", "type": _t("Building"), _t("name"): "Eiffel Tower", _t("subCategory"): "tourism",
        _t("airQualityLevel"): 4, _t("almostFull"): False,
    }  # fmt: skip


def test_019_05_01_get_an_entity_by_id_that_can_be_returned_in_geojson_format(suite: Suite) -> None:
    point = {"type": "Point", "coordinates": [13.3986, 52.5547]}
    suite.put(*(_building(f"{B}019-05-0{i}", name=_p("Eiffel Tower"), location=_loc(point)) for i in (1, 2)))
    r = suite.query(
        id=f"{B}019-05-01,{B}019-05-02", type=_t("Building"), accept="application/geo+json", context=True
    )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    f = fc["features"][0]
    assert f["type"] == "Feature" and f["geometry"] == point
    assert f["properties"]["type"] == "Building" and f["properties"]["name"]["value"] == "Eiffel Tower"


def test_019_06_01_query_entities_specifying_a_maximum_number_of_results(suite: Suite) -> None:
    suite.put(*(_building(f"{B}{i}") for i in range(3)))
    r = suite.query(id=f"{B}0,{B}1,{B}2", type=_t("Building"), limit=2)
    assert len(_ids(r)) == 2


@pytest.mark.parametrize(
    ("case", "q", "expected"), [("019_07_01", None, 2), ("019_07_02", "airQualityLevel==6", 1)]
)
def test_019_07_total_number_of_matching_results_with_count(
    suite: Suite, case: str, q: str | None, expected: int
) -> None:
    suite.put(_building(f"{B}1", **SIMPLE_1), _building(f"{B}2", **SIMPLE_2))
    params = {"type": "Building", "context": True} | ({"q": q} if q else {})
    assert suite.count(**params) == expected


TYPE_CASES = [
    ("019_08_01", "Building", ["1", "3"]),
    ("019_08_02", "(Building;TouristDestination)", ["3"]),
    ("019_08_03", "Building,Parking", ["1", "2", "3"]),
    ("019_08_04", "Parking,TouristDestination", ["2", "3"]),
    ("019_08_05", "(Building;Parking),TouristDestination", ["3"]),
]


@pytest.mark.parametrize(("case", "types", "expected"), TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
def test_019_08_query_entities_with_entity_type_selection_language(
    suite: Suite, case: str, types: str, expected: list[str]
) -> None:
    m = "urn:ngsi-ld:MultiTypes:"
    suite.put(
        {**_building(f"{m}1", **SIMPLE_1)},
        {"id": f"{m}2", "type": [_t("Parking")]},
        {"id": f"{m}3", "type": [_t("Building"), _t("TouristDestination")]},
    )
    assert _ids(suite.query(type=types, context=True)) == [m + i for i in expected]


Q_CASES = [
    ("019_09_01", 'name=="Eiffel Tower"', 1),
    ("019_09_02", 'name=="Pisa Tower";almostFull==false', 1),
    ("019_09_03", 'name=="Pisa Tower";almostFull==false', 1),
    ("019_09_04", 'name=="Pisa Tower"|almostFull==false', 3),
    ("019_09_05", '(name=="Pisa Tower"|name=="Eiffel Tower");almostFull==false', 2),
    ("019_09_06", "airQualityLevel==4", 1),
    ("019_09_07", "airQualityLevel>=4;airQualityLevel<7", 2),
    ("019_09_08", "locatedIn==urn:ngsi-ld:City:Pisa", 1),
    ("019_09_09", "locatedIn==urn:ngsi-ld:City:Paris", 0),
    ("019_09_10", "locatedIn==urn:ngsi-ld:City:Pisa|locatedIn==urn:ngsi-ld:City:Paris", 1),
]


@pytest.mark.parametrize(("case", "q", "expected"), Q_CASES, ids=[c[0] for c in Q_CASES])
def test_019_09_query_several_entities_based_on_q(suite: Suite, case: str, q: str, expected: int) -> None:
    suite.put(_building(f"{B}1", **SIMPLE_1), _building(f"{B}2", **SIMPLE_2), _building(f"{B}3", **SIMPLE_3))
    assert suite.count(q=q, context=True) == expected


POLY = "[[[13.1616211,52.5438124],[13.597641,52.4840224],[13.5948944,52.3402782],[13.142395,52.386428],[13.1616211,52.5438124]]]"
GEO_POINT_CASES = [
    ("019_10_01", "equals", "Point", "[13.3986, 52.5547]", 1),
    ("019_10_02", "near;maxDistance==15000", "Point", "[13.388930, 52.534473]", 2),
    ("019_10_03", "near;minDistance==15000", "Point", "[13.388930, 52.534473]", 1),
    ("019_10_04", "within", "Polygon", POLY, 2),
    ("019_10_05", "disjoint", "Polygon", POLY, 1),
    ("019_10_06", "disjoint", "Point", "[13.3986, 52.5547]", 2),
    ("019_10_07", "contains", "Point", "[13.3986, 52.5547]", 1),
    ("019_10_08", "intersects", "Point", "[13.3986, 52.5547]", 1),
]


@pytest.mark.parametrize(
    ("case", "georel", "geometry", "coordinates", "expected"),
    GEO_POINT_CASES,
    ids=[c[0] for c in GEO_POINT_CASES],
)
def test_019_10_complex_geoqueries_with_point_targets(
    suite: Suite, case: str, georel: str, geometry: str, coordinates: str, expected: int
) -> None:
    points = ([13.3986, 52.5547], [13.509818, 52.363457], [13.215983, 52.470441])
    suite.put(
        *(
            _building(f"{B}{i}", location=_loc({"type": "Point", "coordinates": p}))
            for i, p in enumerate(points)
        )
    )
    n = suite.count(type="Building", context=True, georel=georel, geometry=geometry, coordinates=coordinates)
    assert n == expected


INVALID_POLYGON = pytest.mark.xfail(
    strict=True,
    reason="the suite's reference polygon is self-intersecting: sensorhub answers 400 naming the self-intersection instead of testing an invalid geometry",
)
GEO_POLYGON_CASES = [
    pytest.param("019_11_01", "equals", "Polygon", json.dumps(POLYGON_1["coordinates"]), 1, marks=INVALID_POLYGON),
    ("019_11_02", "intersects", "Polygon", "[[[13.3456421,52.4794848],[13.3641815,52.4428773],[13.4177399,52.4730023],[13.3459854,52.479903],[13.3456421,52.4794848]]]", 1),
    ("019_11_03", "contains", "Polygon", "[[[13.3844376,52.5356966],[13.3844376,52.5356966],[13.381691,52.5123012],[13.4235764,52.5100027],[13.4331894,52.5273425],[13.3844376,52.5356966]]]", 1),
    ("019_11_04", "contains", "Polygon", "[[[13.1369019,52.5198225],[13.1365585,52.5200314],[13.131752,52.4980907],[13.1832504,52.5026887],[13.1369019,52.5198225]]]", 0),
    ("019_11_05", "disjoint", "Polygon", "[[[13.1369019,52.5198225],[13.1365585,52.5200314],[13.131752,52.4980907],[13.1832504,52.5026887],[13.1369019,52.5198225]]]", 2),
    pytest.param("019_11_06", "within", "Polygon", "[[[13.3023834,52.4903066],[13.3027267,52.4905156],[13.2745743,52.465632],[13.3343124,52.4185447],[13.4311295,52.47107],[13.3023834,52.4903066]]]", 1, marks=INVALID_POLYGON),
    ("019_11_07", "overlaps", "Polygon", "[[[13.3456421,52.4794848],[13.3641815,52.4428773],[13.4177399,52.4730023],[13.3459854,52.479903],[13.3456421,52.4794848]]]", 1),
    ("019_11_08", "contains", "Point", "[13.3442688,52.4650045]", 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "georel", "geometry", "coordinates", "expected"),
    GEO_POLYGON_CASES,
    ids=[c.values[0] if hasattr(c, "marks") else c[0] for c in GEO_POLYGON_CASES],
)
def test_019_11_complex_geoqueries_with_polygon_targets(
    suite: Suite, case: str, georel: str, geometry: str, coordinates: str, expected: int
) -> None:
    suite.put(_building(f"{B}1", location=_loc(POLYGON_1)), _building(f"{B}2", location=_loc(POLYGON_2)))
    n = suite.count(type="Building", context=True, georel=georel, geometry=geometry, coordinates=coordinates)
    assert n == expected


def _joined(suite: Suite) -> None:
    for i in (1, 2):
        suite.put(
            _building(f"{B}019-13-{i}", locatedAt=_rel(f"urn:ngsi-ld:City:019-13-{i}")),
            {"id": f"urn:ngsi-ld:City:019-13-{i}", "type": _t("City")},
        )


@pytest.mark.parametrize(
    ("case", "join", "options"),
    [("019_13_01", "inline", None), ("019_13_02", "flat", None), ("019_13_03", "inline", "keyValues"),
     ("019_13_04", "flat", "keyValues")],
)  # fmt: skip
def test_019_13_query_with_linked_entities_in_join_types_and_representations(
    suite: Suite, case: str, join: str, options: str | None
) -> None:
    _joined(suite)
    params = {"type": "Building", "join": join, "joinLevel": 1, "context": True}
    r = suite.query(**params, **({"options": options} if options else {}))
    assert r.status_code == 200, r.text
    body = r.json()
    city = {"id": "urn:ngsi-ld:City:019-13-1", "type": "City"}
    if join == "inline":
        assert [e["id"] for e in body] == [f"{B}019-13-1", f"{B}019-13-2"]
        assert (body[0]["locatedAt"] if options else body[0]["locatedAt"]["entity"]) == city
        if not options:
            assert body[0]["locatedAt"]["object"] == city["id"]
    else:
        assert [e["id"] for e in body] == [
            f"{B}019-13-1", f"{B}019-13-2", "urn:ngsi-ld:City:019-13-1", "urn:ngsi-ld:City:019-13-2",
        ]  # fmt: skip
        assert body[0]["locatedAt"] == (
            city["id"] if options else {"type": "Relationship", "object": city["id"]}
        )


def test_019_14_01_query_entities_with_inline_linked_entities_and_sysattrs(suite: Suite) -> None:
    _joined(suite)
    body = suite.query(type="Building", options="sysAttrs", join="inline", joinLevel=1, context=True).json()
    assert "createdAt" in body[0]["locatedAt"]["entity"] and "createdAt" in body[1]["locatedAt"]["entity"]


def test_019_15_01_query_entities_with_flat_linked_entities_and_sysattrs(suite: Suite) -> None:
    _joined(suite)
    body = suite.query(type="Building", options="sysAttrs", join="flat", joinLevel=1, context=True).json()
    assert len(body) == 4 and all("createdAt" in e for e in body)


# --- 022-027 Discovery --------------------------------------------------------------------------------


def _two_types(suite: Suite) -> None:
    suite.put(
        _building(f"{B}1", **SIMPLE_1),
        {"id": "urn:ngsi-ld:Vehicle:v", "type": _t("Vehicle"), _t("brandName"): _p("Mercedes")},
    )


@pytest.mark.parametrize(("case", "context"), [("022_01_01", False), ("022_01_02", True)])
def test_022_01_retrieve_available_entity_types(suite: Suite, case: str, context: bool) -> None:
    _two_types(suite)
    r = suite.get("/types", context=context, details="false")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "EntityTypeList"
    want = ["Building", "Vehicle"] if context else [_t("Building"), _t("Vehicle")]
    assert sorted(body["typeList"]) == want


def test_024_01_01_retrieve_entity_type_without_context_is_not_found(suite: Suite) -> None:
    suite.put(_building(f"{B}1", **SIMPLE_1), _building(f"{B}2", **SIMPLE_1))
    r = suite.get("/types/Building")
    assert r.status_code == 404
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound" and r.json()["title"]


@pytest.mark.parametrize(
    ("case", "name"),
    [("024_02_01", "Building"), ("024_02_02", "https%3A%2F%2Fngsi-ld-test-suite%2Fcontext%23Building")],
)
def test_024_02_retrieve_detailed_representation_of_an_entity_type(
    suite: Suite, case: str, name: str
) -> None:
    suite.put(_building(f"{B}1", **SIMPLE_1), _building(f"{B}2", **SIMPLE_1))
    r = suite.get(f"/types/{name}", context=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "EntityTypeInfo" and body["typeName"] == "Building" and body["entityCount"] == 2
    assert {a["attributeName"] for a in body["attributeDetails"]} == {
        "name", "subCategory", "airQualityLevel", "almostFull",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("case", "name"),
    [
        ("027_02_01", "airQualityLevel"),
        ("027_02_02", "https%3A%2F%2Fngsi-ld-test-suite%2Fcontext%23airQualityLevel"),
    ],
)
def test_027_02_retrieve_detailed_representation_of_an_attribute(suite: Suite, case: str, name: str) -> None:
    suite.put(_building(f"{B}1", **SIMPLE_1))
    r = suite.get(f"/attributes/{name}", context=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "Attribute" and body["attributeName"] == "airQualityLevel"
    assert body["attributeCount"] == 1 and body["attributeTypes"] == ["Property"]
    assert body["typeNames"] == ["Building"]
