"""The ETSI NGSI-LD API conformance test suite's Retrieve Entity cases (018_*) and the discovery cases
023_01, 025_01, 026_01 and 027_01, translated into pytest as in :mod:`tests.entities.test_etsi_consumption`
(same real ``uvicorn`` server per backend, same hosted suite context, one organisation and token per test,
the suite's ``POST /entities`` setup replaced by the import service). Each test is named after its ETSI
id; the assertions are the suite's: status codes, ProblemDetails types, and the members of its expectation
files (the ``@context`` member is compared as naming the context the request used, which is how the suite's
comparison treats the core context's version).

Not translated: the 3-4 digit cases of the same folder (415_01, 421_01, 436_08, 4516_01, 4517_01, 454_01,
5711_01, 5714_01, 6311_01) are extension test purposes tagged ``since_v1.9.1``, beyond the V1.8 target.
"""

from __future__ import annotations

from typing import Any

import pytest

from sensorhub.compat.ngsi_ld.contexts import is_core
from tests.entities import test_etsi_consumption as etsi
from tests.entities.helpers import problem
from tests.entities.test_etsi_consumption import SIMPLE_1, B, Suite, _building, _loc, _p, _rel, _t

# The module's fixtures are the consumption module's: one server per backend, one organisation per test.
server = etsi.server
suite = etsi.suite

CORE = "core"  # the core context, in any version (the suite ignores the version)
CITY, COUNTRY = "urn:ngsi-ld:City:Paris", "urn:ngsi-ld:Country:France"
POINT = {"type": "Point", "coordinates": [13.3986, 52.5547]}

# building-simple-attributes.jsonld, expanded (the expectation files' normalized and simplified forms)
EXPANDED = {
    _t("name"): _p("Eiffel Tower"),
    _t("subCategory"): _p("tourism"),
    _t("airQualityLevel"): _p(4, unitCode="C62", observedAt="2020-09-09T16:40:00.000Z"),
    _t("almostFull"): _p(False),
}
SIMPLIFIED = {_t("name"): "Eiffel Tower", _t("subCategory"): "tourism", _t("airQualityLevel"): 4,
              _t("almostFull"): False}  # fmt: skip
COMPACTED = {k.removeprefix(etsi.NS): v for k, v in EXPANDED.items()}


def _eid(suite: Suite) -> str:
    """A building-simple-attributes entity (the suite's random Building id)."""
    eid = f"{B}{suite.org}"
    suite.put(_building(eid, **SIMPLE_1))
    return eid


def _entity(r: Any, context: str | None = None) -> dict[str, Any]:
    """The body of a 200, without ``@context``; with ``context``, that member must name it."""
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    ctx = body.pop("@context", None)
    if context == CORE:
        assert is_core(ctx[0] if isinstance(ctx, list) and len(ctx) == 1 else ctx), ctx
    elif context is not None:
        assert ctx in (context, [context]), ctx
    return body


# --- 018 Retrieve Entity ------------------------------------------------------------------------------


def test_018_01_01_get_an_entity_by_id(suite: Suite) -> None:
    eid = _eid(suite)
    r = suite.get(f"/entities/{eid}", accept="application/ld+json")
    assert _entity(r, CORE) == {"id": eid, "type": _t("Building"), **EXPANDED}


def test_018_01_02_query_some_attributes_from_an_entity(suite: Suite) -> None:
    eid = _eid(suite)
    r = suite.get(
        f"/entities/{eid}", accept="application/ld+json", attrs=f"{_t('airQualityLevel')},{_t('subCategory')}"
    )
    want = {k: EXPANDED[k] for k in (_t("airQualityLevel"), _t("subCategory"))}
    assert _entity(r, CORE) == {"id": eid, "type": _t("Building"), **want}


def test_018_02_01_get_an_entity_if_the_entity_id_is_not_a_valid_uri(suite: Suite) -> None:
    problem(suite.get("/entities/thisisaninvaliduri", accept="application/ld+json"), 400, "BadRequestData")


def test_018_03_01_get_an_entity_if_the_entity_id_is_not_known_to_the_system(suite: Suite) -> None:
    r = suite.get(f"/entities/{B}unknown-{suite.org}", accept="application/ld+json")
    problem(r, 404, "ResourceNotFound")


def test_018_03_02_get_an_entity_if_an_attribute_is_not_known_to_the_system(suite: Suite) -> None:
    eid = _eid(suite)
    r = suite.get(f"/entities/{eid}", accept="application/ld+json", attrs="property_not_found")
    problem(r, 404, "ResourceNotFound")


def test_018_04_01_get_an_entity_in_a_simplified_representation(suite: Suite) -> None:
    eid = _eid(suite)
    r = suite.get(f"/entities/{eid}", accept="application/ld+json", options="keyValues")
    assert _entity(r, CORE) == {"id": eid, "type": _t("Building"), **SIMPLIFIED}


def _two_geometries(suite: Suite) -> str:
    """building-two-geometry-attributes.jsonld"""
    eid = f"{B}{suite.org}"
    suite.put(
        {
            **_building(eid, name=_p("Eiffel Tower"), subCategory=_p("tourism"), location=_loc(POINT)),
            "observationSpace": _loc({"type": "Point", "coordinates": [11.1111, 11.1111]}),
        }
    )
    return eid


NORMALIZED_PROPS = {
    "type": "Building",
    "name": _p("Eiffel Tower"),
    "subCategory": _p("tourism"),
    "location": _loc(POINT),
    "observationSpace": _loc({"type": "Point", "coordinates": [11.1111, 11.1111]}),
}
GEOJSON_CASES = [
    ("018_05_01", "keyValues", None, POINT,
     {k: (v["value"] if isinstance(v, dict) else v) for k, v in NORMALIZED_PROPS.items()}),
    ("018_05_02", None, None, POINT, NORMALIZED_PROPS),
    ("018_05_03", None, "observationSpace", {"type": "Point", "coordinates": [11.1111, 11.1111]},
     NORMALIZED_PROPS),
    ("018_05_04", None, "operationSpace", None, NORMALIZED_PROPS),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "options", "geometry_property", "geometry", "properties"),
    GEOJSON_CASES,
    ids=[c[0] for c in GEOJSON_CASES],
)
def test_018_05_retrieve_entity_in_geojson_representation(
    suite: Suite,
    case: str,
    options: str | None,
    geometry_property: str | None,
    geometry: Any,
    properties: dict[str, Any],
) -> None:
    eid = _two_geometries(suite)
    params = {k: v for k, v in (("options", options), ("geometryProperty", geometry_property)) if v}
    r = suite.get(f"/entities/{eid}", accept="application/geo+json", context=True, **params)
    assert r.headers["Content-Type"].startswith("application/geo+json")
    body = _entity(r, suite.context)
    assert body == {"id": eid, "type": "Feature", "geometry": geometry, "properties": properties}


@pytest.mark.parametrize(("case", "context"), [("018_06_01", False), ("018_06_02", True)])
def test_018_06_review_json_ld_resolution_when_retrieving_an_entity(
    suite: Suite, case: str, context: bool
) -> None:
    eid = _eid(suite)
    r = suite.get(f"/entities/{eid}", accept="application/json", context=context)
    assert r.status_code == 200, r.text
    body = r.json()
    if context:
        assert body == {"id": eid, "type": "Building", **COMPACTED}
    else:
        assert body == {"id": eid, "type": _t("Building"), **EXPANDED}


FR = {"type": "Property", "value": "Grand Place", "lang": "fr"}
LANG_CASES = [
    ("018_07_01", "fr", None, FR),
    ("018_07_02", "fr-CH,fr", None, FR),
    ("018_07_03", "*", None, FR),
    ("018_07_04", "fr-CH,fr;q=0.9,en;q=0.8,*;q=0.5", None, FR),
    ("018_07_05", "fr", "keyValues", "Grand Place"),
    ("018_07_06", "*", "keyValues", "Grand Place"),
]


@pytest.mark.parametrize(("case", "lang", "options", "street"), LANG_CASES, ids=[c[0] for c in LANG_CASES])
def test_018_07_retrieve_entity_with_language_filter(
    suite: Suite, case: str, lang: str, options: str | None, street: Any
) -> None:
    eid = f"{B}{suite.org}"
    lmap = {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}}
    suite.put(_building(eid, street=lmap))
    params = {"lang": lang} | ({"options": options} if options else {})
    r = suite.get(f"/entities/{eid}", accept="application/ld+json", context=True, **params)
    assert _entity(r, suite.context) == {"id": eid, "type": "Building", "street": street}


SPACES = {
    "observationSpace": {"type": "Point", "coordinates": [13.3986, 52.5547]},
    "operationSpace": {
        "type": "Polygon",
        "coordinates": [[[100.12, 0.23], [101.12, 0.23], [101.12, 1.23], [100.12, 1.23], [100.12, 0.23]]],
    },
}


@pytest.mark.parametrize(
    ("case", "space", "options"),
    [("018_08_01", "observationSpace", "keyValues"), ("018_08_02", "observationSpace", None),
     ("018_09_01", "operationSpace", "keyValues"), ("018_09_02", "operationSpace", None)],
)  # fmt: skip
def test_018_08_09_retrieve_entity_with_observation_or_operation_space(
    suite: Suite, case: str, space: str, options: str | None
) -> None:
    eid = f"{B}{suite.org}"
    suite.put({**_building(eid), space: _loc(SPACES[space])})
    r = suite.get(f"/entities/{eid}", context=True, **({"options": options} if options else {}))
    want = SPACES[space] if options else _loc(SPACES[space])
    assert _entity(r) == {"id": eid, "type": "Building", space: want}


def _linked(suite: Suite, case: str, *, levels: int = 1, city: bool = True, simple: bool = False) -> str:
    """building-relationship.jsonld (locatedAt City:Paris), city-minimal / city-relationship /
    city-simple-attributes, country-minimal / country-simple-attributes."""
    eid = f"{B}{case}"
    items = [_building(eid, locatedAt=_rel(CITY))]
    if simple:
        items += [
            {"id": CITY, "type": _t("City"), _t("name"): _p("Paris"),
             "description": _p("Paris is the capital and largest city of France"),
             _t("isInCountry"): _rel(COUNTRY)},
            {"id": COUNTRY, "type": _t("Country"), _t("name"): _p("France"),
             "description": _p("France is an European country")},
        ]  # fmt: skip
    elif city:
        items.append(
            {"id": CITY, "type": _t("City"), **({_t("locatedAt"): _rel(COUNTRY)} if levels > 1 else {})}
        )
        if levels > 1:
            items.append({"id": COUNTRY, "type": _t("Country")})
    suite.put(*items)
    return eid


def _building_rel(eid: str, **entity: Any) -> dict[str, Any]:
    return {"id": eid, "type": "Building", "locatedAt": {**_rel(CITY), **entity}}


@pytest.mark.parametrize(
    ("case", "join", "options"),
    [("018_10_01", "inline", None), ("018_10_02", "flat", None), ("018_10_03", "inline", "keyValues"),
     ("018_10_04", "flat", "keyValues")],
)  # fmt: skip
def test_018_10_retrieve_entity_with_linked_entity(
    suite: Suite, case: str, join: str, options: str | None
) -> None:
    eid = _linked(suite, "018-10")
    params = {"join": join, "joinLevel": 1} | ({"options": options} if options else {})
    r = suite.get(f"/entities/{eid}", context=True, **params)
    assert r.status_code == 200, r.text
    city = {"id": CITY, "type": "City"}
    want: Any
    if join == "inline":
        want = (
            {"id": eid, "type": "Building", "locatedAt": city} if options else _building_rel(eid, entity=city)
        )
    else:
        first = {"id": eid, "type": "Building", "locatedAt": CITY} if options else _building_rel(eid)
        want = [first, city]
    assert r.json() == want


def test_018_11_01_retrieve_entity_with_inline_linked_entity_and_sysattrs(suite: Suite) -> None:
    eid = _linked(suite, "018-11")
    r = suite.get(f"/entities/{eid}", context=True, join="inline", joinLevel=1, options="sysAttrs")
    assert r.status_code == 200, r.text
    assert "createdAt" in r.json()["locatedAt"]["entity"]


def test_018_12_01_retrieve_entity_with_flat_linked_entity_and_sysattrs(suite: Suite) -> None:
    eid = _linked(suite, "018-12")
    r = suite.get(f"/entities/{eid}", context=True, join="flat", joinLevel=1, options="sysAttrs")
    assert r.status_code == 200, r.text
    assert "createdAt" in r.json()[0] and "createdAt" in r.json()[1]


@pytest.mark.parametrize(
    ("case", "join", "options"),
    [("018_13_01", "inline", None), ("018_13_02", "flat", None), ("018_13_03", "inline", "keyValues"),
     ("018_13_04", "flat", "keyValues")],
)  # fmt: skip
def test_018_13_retrieve_entity_with_two_levels_of_linked_entities(
    suite: Suite, case: str, join: str, options: str | None
) -> None:
    eid = _linked(suite, "018-13", levels=2)
    params = {"join": join, "joinLevel": 2} | ({"options": options} if options else {})
    r = suite.get(f"/entities/{eid}", context=True, **params)
    assert r.status_code == 200, r.text
    country = {"id": COUNTRY, "type": "Country"}
    want: Any
    if join == "inline" and options:
        want = {
            "id": eid,
            "type": "Building",
            "locatedAt": {"id": CITY, "type": "City", "locatedAt": country},
        }
    elif join == "inline":
        city = {"id": CITY, "type": "City", "locatedAt": {**_rel(COUNTRY), "entity": country}}
        want = _building_rel(eid, entity=city)
    elif options:
        want = [{"id": eid, "type": "Building", "locatedAt": CITY},
                {"id": CITY, "type": "City", "locatedAt": COUNTRY}, country]  # fmt: skip
    else:
        want = [_building_rel(eid), {"id": CITY, "type": "City", "locatedAt": _rel(COUNTRY)}, country]
    assert r.json() == want


@pytest.mark.parametrize(("case", "join"), [("018_14_01", "inline"), ("018_14_02", "flat")])
def test_018_14_retrieve_entity_with_non_existent_linked_entity(suite: Suite, case: str, join: str) -> None:
    eid = _linked(suite, "018-14", city=False)
    r = suite.get(f"/entities/{eid}", context=True, join=join, joinLevel=1)
    assert r.status_code == 200, r.text
    assert r.json() == _building_rel(eid)


FORMAT_CASES = [
    ("018_15_01", "keyValues", None, SIMPLIFIED),
    ("018_15_02", "simplified", None, SIMPLIFIED),
    ("018_15_03", "normalized", None, EXPANDED),
    ("018_15_04", None, "keyValues", SIMPLIFIED),
    ("018_15_05", None, "simplified", SIMPLIFIED),
    ("018_15_06", None, "normalized", EXPANDED),
    ("018_15_07", "keyValues", "normalized", SIMPLIFIED),
]


@pytest.mark.parametrize(("case", "fmt", "options", "want"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_018_15_retrieve_entity_with_format_or_options(
    suite: Suite, case: str, fmt: str | None, options: str | None, want: dict[str, Any]
) -> None:
    eid = _eid(suite)
    params = {k: v for k, v in (("format", fmt), ("options", options)) if v}
    r = suite.get(f"/entities/{eid}", accept="application/ld+json", **params)
    assert _entity(r, CORE) == {"id": eid, "type": _t("Building"), **want}


@pytest.mark.parametrize(
    ("case", "fmt", "options"),
    [("018_16_01", "invalidFormat", None), ("018_16_02", None, "invalidOptions"),
     ("018_16_03", None, "keyValues,invalid"), ("018_16_04", "keyValues", "invalid")],
)  # fmt: skip
def test_018_16_retrieve_entity_with_faulty_format_or_options(
    suite: Suite, case: str, fmt: str | None, options: str | None
) -> None:
    params = {k: v for k, v in (("format", fmt), ("options", options)) if v}
    r = suite.get(f"/entities/{B}{suite.org}", accept="application/ld+json", **params)
    problem(r, 400, "InvalidRequest")


PICK_OMIT_CASES = [
    ("018_17_01", "name", None, {"name"}),
    ("018_17_02", None, "name", {"id", "type", "subCategory", "airQualityLevel", "almostFull"}),
    ("018_17_03", "id", None, {"id"}),
    ("018_17_04", None, "id", {"type", "name", "subCategory", "airQualityLevel", "almostFull"}),
    ("018_17_05", "id,name", None, {"id", "name"}),
    ("018_17_06", None, "type,name", {"id", "subCategory", "airQualityLevel", "almostFull"}),
]


@pytest.mark.parametrize(
    ("case", "pick", "omit", "members"), PICK_OMIT_CASES, ids=[c[0] for c in PICK_OMIT_CASES]
)
def test_018_17_retrieve_entity_with_pick_or_omit(
    suite: Suite, case: str, pick: str | None, omit: str | None, members: set[str]
) -> None:
    eid = _eid(suite)
    params = {k: v for k, v in (("pick", pick), ("omit", omit)) if v}
    r = suite.get(f"/entities/{eid}", accept="application/json", context=True, **params)
    assert r.status_code == 200, r.text
    full = {"id": eid, "type": "Building", **COMPACTED}
    assert r.json() == {k: v for k, v in full.items() if k in members}


INVALID_PROJECTIONS = [
    ("018_18_01", "name", "name", None),
    ("018_18_02", "name", None, "category"),
    ("018_18_03", None, "name", "category"),
    ("018_18_04", "id;name", None, None),
    ("018_18_05", "id,locatedAt{name", None, None),
    ("018_18_06", "id,locatedAt{{name}", None, None),
    ("018_18_07", "id,,name", None, None),
    ("018_18_08", "id,locatedAt{,name}", None, None),
    ("018_18_09", "id,locatedAt{}", None, None),
]


@pytest.mark.parametrize(
    ("case", "pick", "omit", "attrs"), INVALID_PROJECTIONS, ids=[c[0] for c in INVALID_PROJECTIONS]
)
def test_018_18_retrieve_entity_with_invalid_pick_or_omit(
    suite: Suite, case: str, pick: str | None, omit: str | None, attrs: str | None
) -> None:
    eid = _eid(suite)
    params = {k: v for k, v in (("pick", pick), ("omit", omit), ("attrs", attrs)) if v}
    r = suite.get(f"/entities/{eid}", accept="application/json", context=True, **params)
    problem(r, 400, "BadRequestData")


@pytest.mark.parametrize(
    ("case", "pick", "omit"),
    [
        ("018_19_01", "unknown", None),
        ("018_19_02", None, "id,type,name,subCategory,airQualityLevel,almostFull"),
    ],
)
def test_018_19_retrieve_entity_with_nothing_left_after_pick_and_omit(
    suite: Suite, case: str, pick: str | None, omit: str | None
) -> None:
    eid = _eid(suite)
    params = {k: v for k, v in (("pick", pick), ("omit", omit)) if v}
    r = suite.get(f"/entities/{eid}", accept="application/json", context=True, **params)
    problem(r, 404, "ResourceNotFound")


PARIS = {"name": _p("Paris"), "description": _p("Paris is the capital and largest city of France")}
FRANCE = {"name": _p("France"), "description": _p("France is an European country")}


def _projected_join(suite: Suite, case: str, join: str, **projection: str) -> Any:
    eid = _linked(suite, case, simple=True)
    r = suite.get(f"/entities/{eid}", context=True, join=join, joinLevel=2, local="true", **projection)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("join", ["inline", "flat"])
def test_018_20_01_02_retrieve_with_pick_on_linked_entity(suite: Suite, join: str) -> None:
    body = _projected_join(suite, "018-20", join, pick="id,locatedAt{id,name}")
    city = {"id": CITY, "name": PARIS["name"]}
    eid = f"{B}018-20"
    if join == "inline":
        assert body == {"id": eid, "locatedAt": {**_rel(CITY), "entity": city}}
    else:
        assert body == [{"id": eid, "locatedAt": _rel(CITY)}, city]


@pytest.mark.parametrize("join", ["inline", "flat"])
def test_018_20_03_04_retrieve_with_pick_on_second_level_linked_entity(suite: Suite, join: str) -> None:
    body = _projected_join(suite, "018-20", join, pick="id,locatedAt{id,name,isInCountry{id,description}}")
    country = {"id": COUNTRY, "description": FRANCE["description"]}
    eid = f"{B}018-20"
    if join == "inline":
        city = {"id": CITY, "name": PARIS["name"], "isInCountry": {**_rel(COUNTRY), "entity": country}}
        assert body == {"id": eid, "locatedAt": {**_rel(CITY), "entity": city}}
    else:
        city = {"id": CITY, "name": PARIS["name"], "isInCountry": _rel(COUNTRY)}
        assert body == [{"id": eid, "locatedAt": _rel(CITY)}, city, country]


@pytest.mark.parametrize(
    ("case", "omit", "country_members"),
    [("018_21_01_02", "type,locatedAt{name}", {"id", "type", "name", "description"}),
     ("018_21_03_04", "type,locatedAt{name,isInCountry{description}}", {"id", "type", "name"})],
)  # fmt: skip
@pytest.mark.parametrize("join", ["inline", "flat"])
def test_018_21_retrieve_with_omit_on_linked_entities(
    suite: Suite, join: str, case: str, omit: str, country_members: set[str]
) -> None:
    body = _projected_join(suite, "018-21", join, omit=omit)
    full_country = {"id": COUNTRY, "type": "Country", **FRANCE}
    country = {k: v for k, v in full_country.items() if k in country_members}
    city = {"id": CITY, "type": "City", "description": PARIS["description"]}
    eid = f"{B}018-21"
    if join == "inline":
        city["isInCountry"] = {**_rel(COUNTRY), "entity": country}
        assert body == {"id": eid, "locatedAt": {**_rel(CITY), "entity": city}}
    else:
        city["isInCountry"] = _rel(COUNTRY)
        assert body == [{"id": eid, "locatedAt": _rel(CITY)}, city, country]


# --- 023-027 Discovery --------------------------------------------------------------------------------


def _building_and_vehicle(suite: Suite) -> None:
    """building-simple-attributes.json and vehicle-simple-attributes.json, created with the suite's context
    (which leaves isParked to the core context's default vocabulary: imported under its short name, as
    sensorhub stores a name of the default vocabulary)."""
    suite.put(
        _building(f"{B}{suite.org}", **SIMPLE_1),
        {
            "id": f"urn:ngsi-ld:Vehicle:{suite.org}",
            "type": _t("Vehicle"),
            _t("brandName"): _p("Mercedes"),
            "isParked": {
                **_rel("urn:ngsi-ld:OffStreetParking:Downtown1"),
                "observedAt": "2017-07-29T12:00:04Z",
                "providedBy": _rel("urn:ngsi-ld:Person:Bob"),
            },
        },
    )


BUILDING_ATTRS = ["name", "subCategory", "airQualityLevel", "almostFull"]
# isParked compacted with the hosted stand-in for the suite's context: its @vocab replaces the core
# context's default vocabulary, so the default-vocabulary IRI is written with the core ``ngsi-ld:`` prefix
# (the suite's own context has no @vocab and leaves it "isParked").
PARKED = "ngsi-ld:default-context/isParked"


@pytest.mark.parametrize(("case", "context"), [("023_01_01", False), ("023_01_02", True)])
def test_023_01_retrieve_details_of_available_entity_types(suite: Suite, case: str, context: bool) -> None:
    _building_and_vehicle(suite)
    r = suite.get("/types", context=context, details="true")
    assert r.status_code == 200, r.text

    def name(term: str) -> str:
        return term if context else _t(term)

    want = [
        {"id": _t("Building"), "type": "EntityType", "typeName": name("Building"),
         "attributeNames": sorted(name(a) for a in BUILDING_ATTRS)},
        {"id": _t("Vehicle"), "type": "EntityType", "typeName": name("Vehicle"),
         "attributeNames": sorted([name("brandName"), PARKED if context else "isParked"])},
    ]  # fmt: skip
    got = sorted(r.json(), key=lambda t: t["id"])
    assert [t | {"attributeNames": sorted(t["attributeNames"])} for t in got] == want


@pytest.mark.parametrize(("case", "context"), [("025_01_01", False), ("025_01_02", True)])
def test_025_01_retrieve_available_attributes(suite: Suite, case: str, context: bool) -> None:
    suite.put(_building(f"{B}{suite.org}", **SIMPLE_1))
    r = suite.get("/attributes", context=context)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "AttributeList" and body["id"].startswith("urn:ngsi-ld:AttributeList:")
    assert sorted(body["attributeList"]) == sorted(a if context else _t(a) for a in BUILDING_ATTRS)


@pytest.mark.parametrize(("case", "context"), [("026_01_01", False), ("026_01_02", True)])
def test_026_01_retrieve_details_of_available_attributes(suite: Suite, case: str, context: bool) -> None:
    suite.put(_building(f"{B}{suite.org}", **SIMPLE_1))
    r = suite.get("/attributes", context=context, details="true")
    assert r.status_code == 200, r.text
    got = {a["id"]: a for a in r.json()}
    assert set(got) == {_t(a) for a in BUILDING_ATTRS}
    for a in BUILDING_ATTRS:
        assert got[_t(a)]["type"] == "Attribute"
        assert got[_t(a)]["attributeName"] == (a if context else _t(a))
        assert got[_t(a)]["typeNames"] == ["Building" if context else _t("Building")]


def test_027_01_01_retrieve_attribute_without_context_is_not_found(suite: Suite) -> None:
    suite.put(_building(f"{B}{suite.org}", **SIMPLE_1))
    problem(suite.get("/attributes/airQualityLevel"), 404, "ResourceNotFound")
