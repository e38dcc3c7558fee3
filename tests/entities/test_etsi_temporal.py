"""The ETSI NGSI-LD conformance suite's TemporalEntity consumption cases (``ngsi-ld-test-suite``,
``TP/NGSI-LD/ContextInformation/Consumption/TemporalEntity``: 020_xx Retrieve Temporal Evolution Of An
Entity, 021_xx Query Temporal Evolution Of Entities) translated into pytest, sent to a real ``uvicorn``
server (the ``server`` fixture of :mod:`tests.entities.test_etsi_consumption`) and read with a token.
Each test is named after its ETSI test id.

How the translation differs from the suite: the suite creates its data with ``POST /temporal/entities``
(anonymous temporal provision). sensorhub's temporal history is the time-series store, so the setup
(:meth:`Temporal.create`) imports the entity through the import service (type and attribute names
expanded with the suite's context, its current state = each attribute's newest instance) and sends the
same instances through the ingest service (``POST /v3/devices/{id}/backfill`` with an ``ingest`` token).
The suite's pagination cases assume a broker whose page holds fewer than 20 instances; sensorhub's holds
:data:`~sensorhub.compat.ngsi_ld.temporal.MAX_INSTANCES`, so those cases keep the suite's data shape
(two attributes, interleaved or one day apart) with :data:`N` instances per attribute instead of 20/60.
The assertions are the suite's: status codes, error types, and the expectation files compared whole
(``instanceId`` ignored, as the suite's comparison does).

Cases that fail on what sensorhub does not build are ``xfail(strict=True)`` with the reason, and a
companion test pins the refusal (a 400/501 ProblemDetails naming the feature). Not translated: the
suite's "Antares extension" TPs (021_26, 021_27, the 4-digit ones, 456/459): they target V1.9.1.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from sqlalchemy import select

from sensorhub.accounts import service as accounts
from sensorhub.compat.ngsi_ld.temporal import MAX_INSTANCES
from sensorhub.entities import service as entity_service
from sensorhub.entities.models import Entity
from tests.builders import World
from tests.entities.test_etsi_consumption import NS, Suite, _p, _t, server  # noqa: F401 (server: fixture)

V = "urn:ngsi-ld:Vehicle:"
BUS = "urn:ngsi-ld:Bus:"
SPEED, FUEL = NS + "speed", NS + "fuelLevel"
Points = list[tuple[Any, str]]
Series = dict[str, Points]
N = MAX_INSTANCES + 100  # instances per attribute in the pagination cases (the suite: 20 and 60)


def _day(day: str, speed: list[int], fuel: list[int]) -> Series:
    """2020-0x-vehicle-temporal-representation.jsonld: speed at 12:03/05/07, fuelLevel at 12:03/13:05/14:07."""
    return {
        "speed": list(zip(speed, [f"{day}T12:03:00Z", f"{day}T12:05:00Z", f"{day}T12:07:00Z"], strict=True)),
        "fuelLevel": list(
            zip(fuel, [f"{day}T12:03:00Z", f"{day}T13:05:00Z", f"{day}T14:07:00Z"], strict=True)
        ),
    }


VEHICLE_08 = _day("2020-08-01", [120, 80, 100], [67, 53, 40])
VEHICLE_09 = _day("2020-09-01", [120, 80, 100], [67, 53, 40])
VEHICLE_10 = _day("2020-10-01", [150, 90, 127], [89, 78, 62])
BUS_08 = _day("2020-08-01", [45, 25, 67], [210, 145, 124])
MULTI_08: Series = {  # 2020-08-vehicle-temporal-representation-multiple-instances.jsonld
    "speed": [(85, "2020-08-01T12:25:00Z"), (105, "2020-08-01T12:27:00Z"), (120, "2020-08-01T12:29:00Z"),
              (125, "2020-08-01T12:31:00Z"), (130, "2020-08-01T12:35:00Z")],
    "fuelLevel": [(35, "2020-08-01T20:05:00Z"), (31, "2020-08-01T20:07:00Z"), (28, "2020-08-01T21:03:00Z"),
                  (24, "2020-08-01T21:05:00Z"), (19, "2020-08-01T22:07:00Z")],
}  # fmt: skip
LOCATIONS_10 = [  # 2020-10-vehicle-temporal-representation-with-location.jsonld
    ({"type": "Point", "coordinates": [2.35, 42.22]}, "2020-10-01T12:03:00Z"),
    ({"type": "Point", "coordinates": [-8.5, 41.2]}, "2020-10-01T12:05:00Z"),
]


def _minute(i: int, day: int = 1) -> str:
    return f"2020-01-{day:02d}T{1 + i // 60:02d}:{i % 60:02d}:00Z"


# pagination/2020-01-vehicule-temporal-representation-twenty-instances.jsonld (N instead of 20):
# speed every minute from 01:01, fuelLevel the same two minutes later.
INTERLEAVED: Series = {
    "speed": [(i, _minute(i)) for i in range(1, N + 1)],
    "fuelLevel": [(i, _minute(i + 2)) for i in range(1, N + 1)],
}
# pagination/…-sixty-instances.jsonld (N instead of 59): speed on January 1st, fuelLevel on the 2nd.
APART: Series = {
    "speed": [(i, _minute(i)) for i in range(1, N + 1)],
    "fuelLevel": [(i, _minute(i, day=2)) for i in range(1, N + 1)],
}
TIME_BEFORE, TIME_AFTER = "2019-01-01T01:01:00Z", "2021-01-01T01:01:00Z"


class Temporal(Suite):
    """The suite's temporal keywords: Create Temporal Representation Of Entity (through sensorhub's import
    and ingest services), Retrieve/Query Temporal Representation Of Entities (with a token)."""

    def __init__(self, base: str, token: str, ingest: str, world: World, org: str) -> None:
        super().__init__(base, token, world, org)
        self.root = base
        self.ingest = ingest

    def create(self, eid: str, type_: str, series: Series, **extra: Any) -> None:
        newest = {name: max(pts, key=lambda p: p[1]) for name, pts in series.items()}
        current = {_t(n): {"type": "Property", "value": v, "observedAt": t} for n, (v, t) in newest.items()}
        self.put({"id": eid, "type": _t(type_), **current, **extra})
        by_time: dict[str, dict[str, Any]] = {}
        for name, pts in series.items():
            for v, t in pts:
                by_time.setdefault(t, {})[_t(name)] = v
        records = [{"timestamp": t, "data": d} for t, d in sorted(by_time.items())]
        for i in range(0, len(records), 5000):
            r = requests.post(
                f"{self.root}/v3/devices/{eid}/backfill",
                json=records[i : i + 5000],
                headers={"Authorization": f"Bearer {self.ingest}"},
                timeout=60,
            )
            assert r.status_code == 200, r.text

    def _headers(self, context: bool, accept: str | None) -> dict[str, str]:
        h = {}
        if context:
            h["Link"] = (
                f'<{self.context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
            )
        if accept:
            h["Accept"] = accept
        return h

    def retrieve(self, eid: str, *, context: bool = True, accept: str | None = None, **params: Any) -> Any:
        return self.http.get(
            f"{self.base}/temporal/entities/{eid}",
            params=params,
            headers=self._headers(context, accept),
            timeout=60,
        )

    def temporal(self, *, context: bool = True, accept: str | None = None, **params: Any) -> Any:
        return self.http.get(
            f"{self.base}/temporal/entities",
            params=params,
            headers=self._headers(context, accept),
            timeout=60,
        )

    def via_post(self, body: dict[str, Any], *, context: bool = True, **params: Any) -> Any:
        return self.http.post(
            f"{self.base}/temporalEntityOperations/query",
            json=body,
            params=params,
            headers=self._headers(context, None),
            timeout=60,
        )


@pytest.fixture
def te(server: tuple[str, World]) -> Temporal:  # noqa: F811 (the imported fixture)
    base, world = server
    org = f"etsi-{uuid.uuid4().hex[:8]}"
    world.org(org, ("farm",))
    world.user(f"owner@{org}.test", org, "owner")
    read = world.pat(f"owner@{org}.test", ["entities", "timeseries"], name="read")
    ingest = world.pat(f"owner@{org}.test", ["ingest"], name="ingest")
    return Temporal(base, read, ingest, world, org)


# --- what the suite's expectation files hold -------------------------------------------------------------


def _normalized(pts: Points) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": v, "observedAt": t} for v, t in pts]


def _values(pts: Points) -> dict[str, Any]:
    return {"type": "Property", "values": [[v, t] for v, t in pts]}


def after(pts: Points, at: str) -> Points:
    return [p for p in pts if p[1] > at]


def before(pts: Points, at: str) -> Points:
    return [p for p in pts if p[1] < at]


def between(pts: Points, at: str, end: str) -> Points:
    return [p for p in pts if at <= p[1] < end]


def entity(eid: str, type_: str, series: Series, shape: Any = _normalized, **members: Any) -> dict[str, Any]:
    """An EntityTemporal as the expectation files write it (attributes without instances left out)."""
    return {"id": eid, "type": type_, **{k: shape(v) for k, v in series.items() if v}, **members}


def pick(series: Series, keep: Any) -> Series:
    return {k: keep(v) for k, v in series.items()}


def _strip(x: Any) -> Any:
    """The response without ``instanceId`` (the suite's comparison ignores it)."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k != "instanceId"}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return _strip(r.json())


def by_id(r: Any) -> dict[str, Any]:
    return {e["id"]: e for e in ok(r)}


def problem(r: Any, status: int, etype: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{etype}", body
    assert body["title"]
    return body


# --- 020 Retrieve Temporal Evolution Of An Entity -------------------------------------------------------------


def test_020_01_01_retrieve_the_temporal_evolution_of_an_entity(te: Temporal) -> None:
    te.create(f"{V}020-01", "Vehicle", VEHICLE_08)
    got = ok(te.retrieve(f"{V}020-01", context=False))
    assert got == {
        "id": f"{V}020-01",
        "type": _t("Vehicle"),
        SPEED: _normalized(VEHICLE_08["speed"]),
        FUEL: _normalized(VEHICLE_08["fuelLevel"]),
    }


def test_020_02_01_retrieve_the_temporal_evolution_of_an_entity_using_a_context(te: Temporal) -> None:
    te.create(f"{V}020-02", "Vehicle", VEHICLE_08)
    assert ok(te.retrieve(f"{V}020-02")) == entity(f"{V}020-02", "Vehicle", VEHICLE_08)


@pytest.mark.parametrize(("case", "attrs"), [("020_03_01", "fuelLevel"), ("020_03_02", "fuelLevel,speed")])
def test_020_03_retrieve_the_temporal_evolution_of_certain_attributes(
    te: Temporal, case: str, attrs: str
) -> None:
    te.create(f"{V}020-03", "Vehicle", VEHICLE_08)
    want = {k: v for k, v in VEHICLE_08.items() if k in attrs.split(",")}
    assert ok(te.retrieve(f"{V}020-03", attrs=attrs)) == entity(f"{V}020-03", "Vehicle", want)


RANGES_020_04 = [
    ("020_04_01", {"timerel": "after", "timeAt": "2020-08-01T13:03:00Z"}, lambda p: after(p, "2020-08-01T13:03:00Z")),
    ("020_04_02", {"timerel": "before", "timeAt": "2020-08-01T12:05:00Z"}, lambda p: before(p, "2020-08-01T12:05:00Z")),
    ("020_04_03", {"timerel": "between", "timeAt": "2020-08-01T12:00:00Z", "endTimeAt": "2020-08-01T13:00:00Z"},
     lambda p: between(p, "2020-08-01T12:00:00Z", "2020-08-01T13:00:00Z")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "params", "keep"), RANGES_020_04, ids=[c[0] for c in RANGES_020_04])
def test_020_04_retrieve_matching_the_given_temporal_query(
    te: Temporal, case: str, params: dict[str, str], keep: Any
) -> None:
    te.create(f"{V}020-04", "Vehicle", VEHICLE_08)
    assert ok(te.retrieve(f"{V}020-04", **params)) == entity(f"{V}020-04", "Vehicle", pick(VEHICLE_08, keep))


@pytest.mark.parametrize(("case", "last_n"), [("020_05_01", 4), ("020_05_02", 7)])
def test_020_05_retrieve_the_last_n_instances(te: Temporal, case: str, last_n: int) -> None:
    te.create(f"{V}020-05", "Vehicle", MULTI_08)
    want = pick(MULTI_08, lambda p: p[-last_n:])
    assert ok(te.retrieve(f"{V}020-05", lastN=last_n)) == entity(f"{V}020-05", "Vehicle", want)


def test_020_06_01_retrieve_with_an_invalid_id(te: Temporal) -> None:
    problem(te.retrieve("invalidUri", context=False), 400, "BadRequestData")


def test_020_07_01_retrieve_a_non_existing_entity(te: Temporal) -> None:
    problem(te.retrieve(f"{V}unknowEntity", context=False), 404, "ResourceNotFound")


def test_020_08_01_retrieve_non_existing_attributes(te: Temporal) -> None:
    te.create(f"{V}020-08", "Vehicle", VEHICLE_08)
    problem(te.retrieve(f"{V}020-08", attrs="unknownAttribute"), 404, "ResourceNotFound")


@pytest.mark.parametrize(
    ("case", "params"),
    [("020_09_01", {"timerel": "after"}), ("020_09_02", {"timerel": "before"}),
     ("020_09_03", {"timerel": "between", "timeAt": "2020-08-01T12:00:00Z"})],
)  # fmt: skip
def test_020_09_retrieve_with_an_invalid_request_content(
    te: Temporal, case: str, params: dict[str, str]
) -> None:
    te.create(f"{V}020-09", "Vehicle", VEHICLE_08)
    problem(te.retrieve(f"{V}020-09", context=False, **params), 400, "BadRequestData")


def test_020_10_01_retrieve_in_the_simplified_temporal_representation(te: Temporal) -> None:
    te.create(f"{V}020-10", "Vehicle", VEHICLE_08)
    got = ok(te.retrieve(f"{V}020-10", options="temporalValues"))
    assert got == entity(f"{V}020-10", "Vehicle", VEHICLE_08, _values)


def _aggregated(methods: str, period: str, attrs: str | None) -> dict[str, Any]:
    """vehicle-temporal-representation-aggregated-*.json, for the August vehicle (by hand)."""
    hour = {
        "speed": [([120, 80, 100], "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z")],
        "fuelLevel": [([67], "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"),
                      ([53], "2020-08-01T13:03:00Z", "2020-08-01T14:03:00Z"),
                      ([40], "2020-08-01T14:03:00Z", "2020-08-01T15:03:00Z")],
    }  # fmt: skip
    day = {
        k: [([v for v, _ in VEHICLE_08[k]], "2020-08-01T12:03:00Z", "2020-08-02T12:03:00Z")]
        for k in VEHICLE_08
    }
    fns = {"avg": lambda v: sum(v) / len(v), "max": max, "min": min}
    periods = hour if period == "PT1H" else day
    out: dict[str, Any] = {}
    for attr, rows in periods.items():
        if attrs is None or attr == attrs:
            out[attr] = {"type": "Property"} | {
                m: [[fns[m](vals), s, e] for vals, s, e in rows] for m in methods.split(",")
            }
    return out


AGGREGATED = [
    ("avg", "PT1H", None),
    ("avg", "PT1H", "fuelLevel"),
    ("avg,max", "PT1H", None),
    ("min,max", "P1D", None),
]


@pytest.mark.parametrize(
    ("methods", "period", "attrs"), AGGREGATED, ids=[f"020_11_0{i}" for i in range(1, 5)]
)
def test_020_11_retrieve_in_the_aggregated_temporal_representation(
    te: Temporal, methods: str, period: str, attrs: str | None
) -> None:
    te.create(f"{V}020-11", "Vehicle", VEHICLE_08)
    params = {"options": "aggregatedValues", "aggrMethods": methods, "aggrPeriodDuration": period}
    got = ok(te.retrieve(f"{V}020-11", **params, **({"attrs": attrs} if attrs else {})))
    assert got == {"id": f"{V}020-11", "type": "Vehicle", **_aggregated(methods, period, attrs)}


STREET = [  # vehicle-language-property-temporal-representation.jsonld
    ({"fr": "Grand Place", "nl": "Grote Markt"}, "2020-08-01T12:03:00Z"),
    ({"fr": "Grand Place", "nl": "Grote Markt", "es": "Gran Mercado"}, "2020-08-01T12:05:00Z"),
    (
        {"fr": "Grand Marché", "nl": "Grote Markt", "es": "Gran Lugar", "it": "Grande Mercato"},
        "2020-08-01T12:07:00Z",
    ),
]
JSON_SPEED = [({"value": v}, t) for v, t in VEHICLE_08["speed"]]  # vehicle-json-property-…
VOCAB = [("monument", "2020-08-01T12:03:00Z"), ("sightseeing", "2020-08-01T12:05:00Z"),
         (["monument", "sightseeing"], "2020-08-01T12:07:00Z")]  # fmt: skip
# (attribute, attribute type, member, instances, simplified member)
NON_NUMERIC_CASES = [
    ("020_12", "street", "LanguageProperty", "languageMap", STREET, "languageMaps"),
    ("020_15", "speed", "JsonProperty", "json", JSON_SPEED, "jsons"),
    ("020_16", "vocabProperty", "VocabProperty", "vocab", VOCAB, "vocabs"),
]


def _append(te: Temporal, eid: str, attrs: dict[str, Any]) -> None:
    """Append Attributes (the Core API, a session write in sensorhub) through the entity service."""
    with te.world.ctx.db.transaction() as s:
        user = accounts.get_user_by_email(s, f"owner@{te.org}.test")
        assert user is not None
        org = accounts.get_org(s, te.org)
        e = s.scalars(select(Entity).where(Entity.org_id == org.id, Entity.entity_id == eid)).one()
        entity_service.append_attrs(s, user, e, attrs)


def _non_numeric(te: Temporal, eid: str, name: str, atype: str, member: str, pts: Points) -> None:
    """The suite's instances as sensorhub gets them: the entity created with the first, each later one
    written over it (Append Attributes); every write of a non-numeric attribute is an instance."""
    (v0, t0), *rest = pts
    te.put(
        {
            "id": eid,
            "type": _t("Vehicle"),
            _t(name): {"type": atype, member: _vocab(member, v0), "observedAt": t0},
        }
    )
    for v, t in rest:
        _append(te, eid, {_t(name): {"type": atype, member: _vocab(member, v), "observedAt": t}})


def _vocab(member: str, v: Any) -> Any:
    """A vocab term as a broker stores it: expanded with the suite's context (compacted when read)."""
    if member != "vocab":
        return v
    return [_t(x) for x in v] if isinstance(v, list) else _t(v)


@pytest.mark.parametrize(
    ("case", "name", "atype", "member", "pts", "simple"),
    NON_NUMERIC_CASES,
    ids=[c[0] for c in NON_NUMERIC_CASES],
)
@pytest.mark.parametrize("representation", ["normalized", "temporalValues"])
def test_020_12_15_16_retrieve_non_numeric_attributes(
    te: Temporal, case: str, name: str, atype: str, member: str, pts: Points, simple: str, representation: str
) -> None:
    eid = f"{V}{case}"
    _non_numeric(te, eid, name, atype, member, pts)
    got = ok(te.retrieve(eid, **({} if representation == "normalized" else {"options": "temporalValues"})))
    if representation == "normalized":
        want: Any = [{"type": atype, member: v, "observedAt": t} for v, t in pts]
    else:
        want = {"type": atype, simple: [[v, t] for v, t in pts]}
    assert got == {"id": eid, "type": "Vehicle", name: want}


NOON, ONE = "2020-08-01T12:00:00Z", "2020-08-01T13:00:00Z"


@pytest.mark.parametrize(
    ("case", "name", "atype", "member", "pts", "simple"),
    NON_NUMERIC_CASES,
    ids=[c[0] for c in NON_NUMERIC_CASES],
)
def test_020_12_15_16_non_numeric_history_by_time_range_and_last_n(
    te: Temporal, case: str, name: str, atype: str, member: str, pts: Points, simple: str
) -> None:
    """The history of a non-numeric attribute answers timerel, lastN and attrs as numeric history does."""
    eid = f"{V}{case}"
    _non_numeric(te, eid, name, atype, member, pts)
    inst = [{"type": atype, member: v, "observedAt": t} for v, t in pts]
    got = ok(te.retrieve(eid, attrs=name, timerel="after", timeAt=pts[0][1]))
    assert got == {"id": eid, "type": "Vehicle", name: inst[1:]}
    got = ok(te.retrieve(eid, timerel="before", timeAt=pts[2][1], lastN=1, options="temporalValues"))
    assert got == {"id": eid, "type": "Vehicle", name: {"type": atype, simple: [[pts[1][0], pts[1][1]]]}}
    assert ok(te.retrieve(eid, timerel="before", timeAt=pts[0][1])) == {"id": eid, "type": "Vehicle"}


@pytest.mark.parametrize(
    ("case", "name", "atype", "member", "pts", "simple"),
    NON_NUMERIC_CASES,
    ids=[c[0] for c in NON_NUMERIC_CASES],
)
def test_020_12_15_16_non_numeric_aggregation_counts_only(
    te: Temporal, case: str, name: str, atype: str, member: str, pts: Points, simple: str
) -> None:
    """totalCount and distinctCount apply to any value; avg/max do not and are left out."""
    eid = f"{V}{case}"
    _non_numeric(te, eid, name, atype, member, pts)
    repeat = {"type": atype, member: _vocab(member, pts[0][0]), "observedAt": "2020-08-01T12:09:00Z"}
    _append(te, eid, {_t(name): repeat})
    params = {"options": "aggregatedValues", "aggrMethods": "totalCount,distinctCount,avg,max",
              "aggrPeriodDuration": "PT1H", "timerel": "between", "timeAt": NOON, "endTimeAt": ONE}  # fmt: skip
    got = ok(te.retrieve(eid, **params))
    assert got == {
        "id": eid,
        "type": "Vehicle",
        name: {"type": atype, "totalCount": [[4, NOON, ONE]], "distinctCount": [[3, NOON, ONE]]},
    }


def test_non_numeric_history_is_clamped_to_the_token_time_window(te: Temporal) -> None:
    """A token limited to [12:04, 12:06) never sees — nor counts — an instance outside it."""
    eid = f"{V}020-12-window"
    _non_numeric(te, eid, "street", "LanguageProperty", "languageMap", STREET)
    token = te.world.pat(
        f"owner@{te.org}.test",
        ["entities", "timeseries"],
        name="window",
        time_start=datetime(2020, 8, 1, 12, 4, tzinfo=UTC),
        time_end=datetime(2020, 8, 1, 12, 6, tzinfo=UTC),
    )
    narrow = Temporal(te.root, token, te.ingest, te.world, te.org)
    got = ok(narrow.retrieve(eid))
    assert got == {"id": eid, "type": "Vehicle", "street": [
        {"type": "LanguageProperty", "languageMap": STREET[1][0], "observedAt": STREET[1][1]}]}  # fmt: skip
    params = {"options": "aggregatedValues", "aggrMethods": "totalCount"}
    assert ok(narrow.retrieve(eid, **params))["street"]["totalCount"][0][0] == 1


def _content_range(r: Any) -> tuple[str, str, str, str]:
    unit, rest = r.headers["Content-Range"].split(" ", 1)
    span, size = rest.rsplit("/", 1)
    start, end = span.split("Z-", 1)
    return unit, start + "Z", end, size


LRT, MRT = "least recent timestamp", "most recent timestamp"
# (case, params, expected range start, expected range end, expected size); lastN = N (the suite: 20).
PAGINATION_020_13 = [
    ("020_13_01", {}, LRT, MRT, "*"),
    ("020_13_02", {"lastN": N}, MRT, LRT, str(N)),
    ("020_13_03", {"lastN": N, "timerel": "before", "timeAt": TIME_AFTER}, TIME_AFTER, LRT, str(N)),
    ("020_13_04", {"lastN": N, "timerel": "between", "timeAt": TIME_BEFORE, "endTimeAt": TIME_AFTER}, TIME_AFTER, LRT, None),
    ("020_13_05", {"lastN": N, "timerel": "after", "timeAt": TIME_BEFORE}, MRT, LRT, str(N)),
    ("020_13_06", {"timerel": "before", "timeAt": TIME_AFTER}, None, MRT, "*"),
    ("020_13_07", {"timerel": "between", "timeAt": TIME_BEFORE, "endTimeAt": TIME_AFTER}, TIME_BEFORE, MRT, None),
    ("020_13_08", {"timerel": "after", "timeAt": TIME_BEFORE}, TIME_BEFORE, MRT, None),
    ("020_13_09", {"options": "temporalValues", "timerel": "after", "timeAt": TIME_BEFORE}, TIME_BEFORE, MRT, None),
    ("020_13_10", {"options": "temporalValues", "lastN": N, "timerel": "between", "timeAt": TIME_BEFORE,
                   "endTimeAt": TIME_AFTER}, TIME_AFTER, LRT, None),
]  # fmt: skip


def _check_range(r: Any, times: list[str], start: Any, end: Any, size: Any) -> None:
    assert r.status_code == 206, r.text
    unit, got_start, got_end, got_size = _content_range(r)
    assert unit == "date-time"
    resolve = {LRT: min(times), MRT: max(times)}
    if start is not None:
        assert got_start == resolve.get(start, start)
    if end is not None:
        assert got_end == resolve.get(end, end)
    if size is not None:
        assert got_size == size


@pytest.fixture(scope="module")
def interleaved(server: tuple[str, World]) -> Temporal:  # noqa: F811
    """One organisation with the (scaled) twenty-instances vehicle and the September one, for every
    pagination case (as the suite's Suite Setup)."""
    base, world = server
    org = f"etsi-{uuid.uuid4().hex[:8]}"
    world.org(org, ("farm",))
    world.user(f"owner@{org}.test", org, "owner")
    t = Temporal(
        base,
        world.pat(f"owner@{org}.test", ["entities", "timeseries"], name="read"),
        world.pat(f"owner@{org}.test", ["ingest"], name="ingest"),
        world,
        org,
    )
    t.create(f"{V}pages-1", "Vehicle", INTERLEAVED)
    t.create(f"{V}pages-2", "Vehicle", VEHICLE_09)
    return t


@pytest.mark.parametrize(
    ("case", "params", "start", "end", "size"), PAGINATION_020_13, ids=[c[0] for c in PAGINATION_020_13]
)
def test_020_13_temporal_pagination_on_retrieve(
    interleaved: Temporal, case: str, params: dict[str, Any], start: Any, end: Any, size: Any
) -> None:
    r = interleaved.retrieve(f"{V}pages-1", **params)
    body = r.json()
    _check_range(r, _times_normalized_or_values(body, params.get("options")), start, end, size)


def _times_normalized_or_values(body: dict[str, Any], rep: str | None) -> list[str]:
    if rep == "temporalValues":
        return [t for a in ("speed", "fuelLevel") for _v, t in body[a]["values"]]
    return [i["observedAt"] for a in ("speed", "fuelLevel") for i in body[a]]


@pytest.mark.parametrize(
    ("case", "params", "empty"),
    [("020_14_01", {"timerel": "after", "timeAt": TIME_BEFORE}, "fuelLevel"),
     ("020_14_02", {"lastN": N, "timerel": "before", "timeAt": TIME_AFTER}, "speed")],
)  # fmt: skip
def test_020_14_the_time_range_is_cut_before_the_second_attribute(
    te: Temporal, case: str, params: dict[str, Any], empty: str
) -> None:
    te.create(f"{V}020-14", "Vehicle", APART)
    r = te.retrieve(f"{V}020-14", **params)
    assert r.status_code == 206, r.text
    assert r.json()[empty] == []


def _delete_attr(te: Temporal, eid: str, name: str) -> None:
    """Delete Entity Attributes (the Core API, a session write in sensorhub) through the entity service."""
    with te.world.ctx.db.transaction() as s:
        user = accounts.get_user_by_email(s, f"owner@{te.org}.test")
        assert user is not None
        e = s.scalars(select(Entity).where(Entity.entity_id == eid)).one()
        entity_service.delete_attr(s, user, e, name)


DIFFERENT_TYPES: dict[str, Any] = {  # vehicle-temporal-representation-different-attributes-types.jsonld
    "isParkedIn": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:Graslin",
                   "observedAt": "2024-12-05T12:00:00Z"},
    "name": {"type": "LanguageProperty", "languageMap": {"fr": "Ma jolie voiture", "en": "My pretty vehicle"},
             "observedAt": "2024-12-05T12:00:00Z"},
}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "attr", "simplified"),
    [("020_17_01", "fuelLevel", None), ("020_17_02", "isParkedIn", None), ("020_17_03", "name", None),
     ("020_18_01", "fuelLevel", "values"), ("020_18_02", "isParkedIn", "objects"),
     ("020_18_03", "name", "languageMaps")],
)  # fmt: skip
def test_020_17_18_retrieve_following_the_deleted_at_temporal_property(
    te: Temporal, case: str, attr: str, simplified: str | None
) -> None:
    eid = f"{V}{case}"
    fuel = {"fuelLevel": [(67, "2020-08-01T12:03:00Z"), (53, "2020-08-01T13:05:00Z")]}
    te.create(eid, "Vehicle", fuel, **{_t(k): v for k, v in DIFFERENT_TYPES.items()})
    _delete_attr(te, eid, _t(attr))
    params = {"timeproperty": "deletedAt"} | ({"options": "temporalValues"} if simplified else {})
    body = ok(te.retrieve(eid, **params))
    if simplified:
        assert body[attr][simplified][0][1]  # the deletedAt of the deletion instance
    else:
        assert body[attr][0]["deletedAt"]


@pytest.mark.parametrize(("case", "options"), [("020_19_01", None), ("020_20_01", "temporalValues")])
def test_020_19_20_retrieve_the_scope_following_the_deleted_at_temporal_property(
    te: Temporal, case: str, options: str | None
) -> None:
    eid = f"{V}{case}"
    fuel = {"fuelLevel": [(67, "2020-08-01T12:03:00Z"), (53, "2020-08-01T13:05:00Z")]}
    te.create(eid, "Vehicle", fuel, scope=["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"])
    _delete_attr(te, eid, "scope")
    body = ok(te.retrieve(eid, timeproperty="deletedAt", **({"options": options} if options else {})))
    assert body["scope"]["values"][0][1] if options else body["scope"][0]["deletedAt"]


def test_020_17_deletion_instances_follow_timerel_and_attrs(te: Temporal) -> None:
    """A deletion instance is dated by the deletion: timerel reads it by deletedAt, attrs selects it; with
    the default timeproperty (observedAt) a deleted attribute's values are not listed as its deletion."""
    eid = f"{V}020-17-range"
    te.create(eid, "Vehicle", VEHICLE_08, **{_t(k): v for k, v in DIFFERENT_TYPES.items()})
    now = datetime.now(UTC)
    before = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _delete_attr(te, eid, _t("name"))
    body = ok(te.retrieve(eid, timeproperty="deletedAt", timerel="after", timeAt=before))
    assert list(body) == ["id", "type", "name"]
    (inst,) = body["name"]
    assert inst["type"] == "LanguageProperty" and inst["languageMap"] == {"@none": "urn:ngsi-ld:null"}
    assert datetime.fromisoformat(inst["deletedAt"].replace("Z", "+00:00")) > now
    assert ok(te.retrieve(eid, timeproperty="deletedAt", timerel="before", timeAt=before)) == {
        "id": eid,
        "type": "Vehicle",
    }
    problem(te.retrieve(eid, timeproperty="deletedAt", attrs="speed"), 404, "ResourceNotFound")
    assert "name" not in ok(te.retrieve(eid))


def test_020_17_other_time_properties_are_refused(te: Temporal) -> None:
    te.create(f"{V}020-17", "Vehicle", VEHICLE_08)
    for prop in ("createdAt", "modifiedAt", "unknown"):
        body = problem(te.retrieve(f"{V}020-17", timeproperty=prop), 400, "BadRequestData")
        assert "timeproperty" in body["detail"]


PICK_OMIT_020_21 = [
    ("020_21_01", {"pick": "speed"}, {"speed"}),
    ("020_21_02", {"omit": "speed"}, {"id", "type", "fuelLevel"}),
    ("020_21_03", {"pick": "id,speed"}, {"id", "speed"}),
    ("020_21_04", {"omit": "type,speed"}, {"id", "fuelLevel"}),
]


@pytest.mark.parametrize(
    ("case", "params", "members"), PICK_OMIT_020_21, ids=[c[0] for c in PICK_OMIT_020_21]
)
def test_020_21_retrieve_with_pick_and_omit(
    te: Temporal, case: str, params: dict[str, str], members: set[str]
) -> None:
    te.create(f"{V}020-21", "Vehicle", VEHICLE_08)
    full = entity(f"{V}020-21", "Vehicle", VEHICLE_08)
    assert ok(te.retrieve(f"{V}020-21", **params)) == {k: v for k, v in full.items() if k in members}


@pytest.mark.parametrize(
    ("case", "params"),
    [("020_22_01", {"pick": "speed", "omit": "speed"}), ("020_22_02", {"pick": "speed", "attrs": "fuelLevel"}),
     ("020_22_03", {"omit": "speed", "attrs": "fuelLevel"})],
)  # fmt: skip
def test_020_22_retrieve_with_invalid_pick_or_omit(te: Temporal, case: str, params: dict[str, str]) -> None:
    te.create(f"{V}020-22", "Vehicle", VEHICLE_08)
    problem(te.retrieve(f"{V}020-22", accept="application/json", **params), 400, "BadRequestData")


@pytest.mark.parametrize(
    ("case", "params"),
    [("020_23_01", {"pick": "unknown"}), ("020_23_02", {"omit": "id,type,fuelLevel,speed"})],
)
def test_020_23_retrieve_with_nothing_left_after_pick_and_omit(
    te: Temporal, case: str, params: dict[str, str]
) -> None:
    te.create(f"{V}020-23", "Vehicle", VEHICLE_08)
    problem(te.retrieve(f"{V}020-23", accept="application/json", **params), 404, "ResourceNotFound")


# --- 021 Query Temporal Evolution Of Entities -------------------------------------------------------------


def _three(te: Temporal, case: str) -> tuple[str, str, str]:
    """Setup Initial Entities of 021_01 (and others): the August and September vehicles and the bus."""
    a, b, bus = f"{V}{case}-A", f"{V}{case}-B", f"{BUS}{case}-A"
    te.create(a, "Vehicle", VEHICLE_08)
    te.create(b, "Vehicle", VEHICLE_09)
    te.create(bus, "Bus", BUS_08)
    return a, b, bus


RANGES_021 = [
    ("021_01_01", {"timerel": "after", "timeAt": "2020-08-01T12:04:00Z"}, lambda p: after(p, "2020-08-01T12:04:00Z")),
    ("021_01_02", {"timerel": "before", "timeAt": "2020-09-01T13:06:00Z"}, lambda p: before(p, "2020-09-01T13:06:00Z")),
    ("021_01_03", {"timerel": "between", "timeAt": "2020-08-01T12:04:00Z", "endTimeAt": "2020-09-01T13:06:00Z"},
     lambda p: between(p, "2020-08-01T12:04:00Z", "2020-09-01T13:06:00Z")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "params", "keep"), RANGES_021, ids=[c[0] for c in RANGES_021])
def test_021_01_query_the_temporal_evolution_of_entities(
    te: Temporal, case: str, params: dict[str, str], keep: Any
) -> None:
    a, b, _ = _three(te, case)
    assert by_id(te.temporal(type="Vehicle", **params)) == {
        a: entity(a, "Vehicle", pick(VEHICLE_08, keep)),
        b: entity(b, "Vehicle", pick(VEHICLE_09, keep)),
    }


JULY = {"timerel": "after", "timeAt": "2020-07-01T12:05:00Z"}


def _two(te: Temporal, case: str, first: Series = VEHICLE_08, second: Series = VEHICLE_09) -> tuple[str, str]:
    a, b = f"{V}{case}-A", f"{V}{case}-B"
    te.create(a, "Vehicle", first)
    te.create(b, "Vehicle", second)
    return a, b


def test_021_02_01_query_the_temporal_evolution_of_certain_attributes(te: Temporal) -> None:
    a, b = _two(te, "021-02")
    assert by_id(te.temporal(type="Vehicle", attrs="speed", **JULY)) == {
        a: entity(a, "Vehicle", {"speed": VEHICLE_08["speed"]}),
        b: entity(b, "Vehicle", {"speed": VEHICLE_09["speed"]}),
    }


def test_021_03_01_query_the_last_n_instances(te: Temporal) -> None:
    a, b = _two(te, "021-03", MULTI_08)
    assert by_id(te.temporal(type="Vehicle", lastN=4, **JULY)) == {
        a: entity(a, "Vehicle", pick(MULTI_08, lambda p: p[-4:])),
        b: entity(b, "Vehicle", VEHICLE_09),
    }


def test_021_04_01_query_using_a_context(te: Temporal) -> None:
    a, b = _two(te, "021-04")
    assert by_id(te.temporal(type="Vehicle", **JULY)) == {
        a: entity(a, "Vehicle", VEHICLE_08),
        b: entity(b, "Vehicle", VEHICLE_09),
    }


def test_021_05_01_query_matching_the_given_types(te: Temporal) -> None:
    te.create(f"{V}021-05-A", "Vehicle", VEHICLE_08)
    te.create(f"{BUS}021-05-A", "Bus", BUS_08)
    assert by_id(te.temporal(type="Bus", **JULY)) == {
        f"{BUS}021-05-A": entity(f"{BUS}021-05-A", "Bus", BUS_08)
    }


def test_021_06_01_query_matching_the_given_ids(te: Temporal) -> None:
    a, _ = _two(te, "021-06")
    assert by_id(te.temporal(type="Vehicle", id=a, **JULY)) == {a: entity(a, "Vehicle", VEHICLE_08)}


def test_021_07_01_query_matching_the_given_id_pattern(te: Temporal) -> None:
    a, b = _two(te, "021-07")
    got = by_id(te.temporal(type="Vehicle", idPattern="urn:ngsi-ld:Vehicle:.*", **JULY))
    assert got == {a: entity(a, "Vehicle", VEHICLE_08), b: entity(b, "Vehicle", VEHICLE_09)}


def test_021_08_01_query_matching_the_given_ngsi_ld_query(te: Temporal) -> None:
    a, b = _two(te, "021-08")
    got = by_id(te.temporal(type="Vehicle", q="speed>90", **JULY))
    assert got == {a: entity(a, "Vehicle", VEHICLE_08), b: entity(b, "Vehicle", VEHICLE_09)}


@pytest.mark.parametrize(
    ("case", "geo"),
    [("021_09_01", {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[-8.503,41.202]"}),
     ("021_09_02", {"georel": "within", "geometry": "Polygon", "geoproperty": "location",
                    "coordinates": "[[[-13.503,47.202],[6.541, 52.961],[20.37,44.653],[9.46,32.57],[-13.503,32.57],[-13.503,47.202]]]"})],
)  # fmt: skip
def test_021_09_query_matching_the_given_geo_query(te: Temporal, case: str, geo: dict[str, str]) -> None:
    te.create(f"{V}021-09-A", "Vehicle", VEHICLE_08)
    b = f"{V}021-09-B"
    locations = [{"type": "GeoProperty", "value": v, "observedAt": t} for v, t in LOCATIONS_10]
    # The suite's two location instances as sensorhub gets them: created at the first, then moved.
    te.create(b, "Vehicle", VEHICLE_10, location=locations[0])
    _append(te, b, {"location": locations[1]})
    assert by_id(te.temporal(type="Vehicle", **geo, **JULY)) == {
        b: entity(b, "Vehicle", VEHICLE_10, location=locations)
    }


def test_021_09_the_location_history_follows_timerel_and_last_n(te: Temporal) -> None:
    """The location's instances answer timerel and lastN like any attribute's; the geo-query selects on
    the current location (the entity is found where it is now, with where it was)."""
    b = f"{V}021-09-C"
    locations = [{"type": "GeoProperty", "value": v, "observedAt": t} for v, t in LOCATIONS_10]
    te.create(b, "Vehicle", VEHICLE_10, location=locations[0])
    _append(te, b, {"location": locations[1]})
    got = ok(te.retrieve(b, attrs="location", lastN=1))
    assert got == {"id": b, "type": "Vehicle", "location": locations[1:]}
    got = ok(te.retrieve(b, attrs="location", timerel="before", timeAt=LOCATIONS_10[1][1]))
    assert got == {"id": b, "type": "Vehicle", "location": locations[:1]}
    far = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[2.35,42.22]"}
    assert ok(te.temporal(type="Vehicle", **far, **JULY)) == []  # it left that place


@pytest.mark.parametrize(("case", "limit"), [("021_11_01", 2), ("021_11_02", 3)])
def test_021_11_query_with_a_limit_on_the_number_of_entities(te: Temporal, case: str, limit: int) -> None:
    te.create(f"{V}021-11-1", "Vehicle", VEHICLE_08)
    te.create(f"{V}021-11-2", "Vehicle", VEHICLE_09)
    te.create(f"{V}021-11-3", "Vehicle", VEHICLE_09)
    body = ok(te.temporal(type="Bus,Vehicle", limit=limit, **JULY))
    assert len(body) == limit and all(e["type"] == "Vehicle" for e in body)


def test_021_12_01_query_with_an_invalid_request(te: Temporal) -> None:
    te.create(f"{V}021-12", "Vehicle", VEHICLE_08)
    problem(te.temporal(**JULY), 400, "BadRequestData")


AUG2 = "2020-08-02T12:05:00Z"
POST_021_13 = [  # entity-operations-*-query.jsonld
    ("021_13_01", [{"type": "Vehicle"}], {"timerel": "after", "timeAt": AUG2}, lambda p: after(p, AUG2)),
    ("021_13_02", [{"type": "Vehicle"}], {"timerel": "before", "timeAt": AUG2}, lambda p: before(p, AUG2)),
    ("021_13_03", [{"type": "Vehicle"}], {"timerel": "between", "timeAt": AUG2, "endTimeAt": "2020-09-01T13:06:00Z"},
     lambda p: between(p, AUG2, "2020-09-01T13:06:00Z")),
    ("021_13_04", [{"type": "Vehicle"}, {"type": "Bus"}], {"timerel": "after", "timeAt": AUG2}, lambda p: after(p, AUG2)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "entities", "tq", "keep"), POST_021_13, ids=[c[0] for c in POST_021_13])
def test_021_13_query_using_the_entity_operations_method(
    te: Temporal, case: str, entities: list[dict[str, str]], tq: dict[str, str], keep: Any
) -> None:
    a, b, bus = _three(te, case)
    got = by_id(te.via_post({"type": "Query", "entities": entities, "temporalQ": tq}))
    series = {a: ("Vehicle", VEHICLE_08), b: ("Vehicle", VEHICLE_09)}
    if len(entities) == 2:
        series[bus] = ("Bus", BUS_08)
    want = {}
    for eid, (t, data) in series.items():
        kept = pick(data, keep)
        if any(kept.values()):  # entities with no instance in the time range are not in the answer
            want[eid] = entity(eid, t, kept)
    assert got == want


@pytest.mark.parametrize(
    ("case", "params", "keep"), RANGES_021, ids=[c[0].replace("01", "14") for c in RANGES_021]
)
def test_021_14_query_in_the_simplified_representation(
    te: Temporal, case: str, params: dict[str, str], keep: Any
) -> None:
    a, b, _ = _three(te, case)
    assert by_id(te.temporal(type="Vehicle", options="temporalValues", **params)) == {
        a: entity(a, "Vehicle", pick(VEHICLE_08, keep), _values),
        b: entity(b, "Vehicle", pick(VEHICLE_09, keep), _values),
    }


PAGINATION_021_15 = [
    ("021_15_01", {"lastN": N, "timerel": "before", "timeAt": TIME_AFTER}, TIME_AFTER, LRT, str(N)),
    ("021_15_02", {"lastN": N, "timerel": "between", "timeAt": TIME_BEFORE, "endTimeAt": TIME_AFTER}, TIME_AFTER, LRT, None),
    ("021_15_03", {"lastN": N, "timerel": "after", "timeAt": TIME_BEFORE}, MRT, LRT, str(N)),
    ("021_15_04", {"timerel": "before", "timeAt": TIME_AFTER}, None, MRT, "*"),
    ("021_15_05", {"timerel": "between", "timeAt": TIME_BEFORE, "endTimeAt": TIME_AFTER}, TIME_BEFORE, MRT, None),
    ("021_15_06", {"timerel": "after", "timeAt": TIME_BEFORE}, TIME_BEFORE, MRT, None),
    ("021_15_07", {"options": "temporalValues", "timerel": "after", "timeAt": TIME_BEFORE}, TIME_BEFORE, MRT, None),
    ("021_15_08", {"options": "temporalValues", "lastN": N, "timerel": "between", "timeAt": TIME_BEFORE,
                   "endTimeAt": TIME_AFTER}, TIME_AFTER, LRT, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "params", "start", "end", "size"), PAGINATION_021_15, ids=[c[0] for c in PAGINATION_021_15]
)
def test_021_15_temporal_pagination_on_query(
    interleaved: Temporal, case: str, params: dict[str, Any], start: Any, end: Any, size: Any
) -> None:
    r = interleaved.temporal(type="Vehicle", **params)
    body = r.json()
    times = [t for e in body for t in _times_normalized_or_values(e, params.get("options"))]
    _check_range(r, times, start, end, size)


def test_021_16_01_temporal_pagination_on_query_via_post(interleaved: Temporal) -> None:
    r = interleaved.via_post(
        {
            "type": "Query",
            "entities": [{"type": "Vehicle"}],
            "temporalQ": {"timerel": "before", "timeAt": AUG2},
        }
    )
    assert r.status_code == 206, r.text
    assert _content_range(r)[0] == "date-time"


@pytest.mark.parametrize(
    ("methods", "period", "attrs"), AGGREGATED, ids=[f"021_17_0{i}" for i in range(1, 5)]
)
def test_021_17_query_in_the_aggregated_temporal_representation(
    te: Temporal, methods: str, period: str, attrs: str | None
) -> None:
    te.create(f"{V}021-17", "Vehicle", VEHICLE_08)
    params = {"options": "aggregatedValues", "aggrMethods": methods, "aggrPeriodDuration": period}
    body = ok(
        te.temporal(
            type="Vehicle",
            timerel="after",
            timeAt="2020-01-01T12:03:00Z",
            **params,
            **({"attrs": attrs} if attrs else {}),
        )
    )
    assert body[0] == {"id": f"{V}021-17", "type": "Vehicle", **_aggregated(methods, period, attrs)}


# vehicle-temporal-representation-with-multi-attributes-instances.jsonld: (value, observedAt, datasetId)
MULTI_DATASETS = {
    "speed": [(120, "2020-09-01T12:03:00Z", None), (80, "2020-09-01T12:05:00Z", "urn:ngsi-ld:Dataset:Common"),
              (90, "2020-09-01T13:05:00Z", "urn:ngsi-ld:Dataset:Common"),
              (60, "2020-09-01T12:05:00Z", "urn:ngsi-ld:Dataset:Speed"),
              (62, "2020-09-01T12:15:00Z", "urn:ngsi-ld:Dataset:Speed")],
    "fuelLevel": [(67, "2020-09-01T12:03:00Z", None), (68, "2020-09-01T12:03:30Z", None),
                  (53, "2020-09-01T13:05:00Z", "urn:ngsi-ld:Dataset:Common"),
                  (40, "2020-09-01T14:07:00Z", "urn:ngsi-ld:Dataset:fuel")],
}  # fmt: skip
DATASET_CASES = [
    ("021_18_01", "speed", None), ("021_18_02", None, "urn:ngsi-ld:Dataset:Common"),
    ("021_18_03", None, "urn:ngsi-ld:Dataset:Common,urn:ngsi-ld:Dataset:Speed"), ("021_18_04", None, "@none"),
    ("021_18_05", "speed", "@none"), ("021_18_06", "fuelLevel", "urn:ngsi-ld:Dataset:fuel"),
    ("021_18_07", "speed", "urn:ngsi-ld:Dataset:fuel"),
]  # fmt: skip


def _dataset_expectation(attrs: str | None, dataset: str | None) -> dict[str, Any]:
    wanted = None if dataset is None else {None if d == "@none" else d for d in dataset.split(",")}
    out: dict[str, Any] = {}
    for name, pts in MULTI_DATASETS.items():
        if attrs is not None and name != attrs:
            continue
        groups: dict[str | None, list[list[Any]]] = {}
        for v, t, d in sorted(pts, key=lambda p: p[1]):
            if t > "2020-08-01T12:04:00Z" and (wanted is None or d in wanted):
                groups.setdefault(d, []).append([v, t])
        shown = [
            {"type": "Property", "values": vals} | ({"datasetId": d} if d else {})
            for d, vals in groups.items()
        ]
        if shown:
            out[name] = shown[0] if len(shown) == 1 else shown
    return out


def _create_multi(te: Temporal, eid: str) -> None:
    """The suite's multi-attribute vehicle as a client sends it: the entity with each attribute's newest
    instance per datasetId (a multi-attribute), then each instance through ingest on the topic named
    after its datasetId (the default topic for the default instance; docs/ngsi-ld-temporal.md)."""
    current: dict[str, Any] = {}
    for name, pts in MULTI_DATASETS.items():
        newest: dict[str | None, tuple[Any, str]] = {}
        for v, t, d in sorted(pts, key=lambda p: p[1]):
            newest[d] = (v, t)
        current[_t(name)] = [
            {"type": "Property", "value": v, "observedAt": t} | ({"datasetId": d} if d else {})
            for d, (v, t) in newest.items()
        ]
    te.put({"id": eid, "type": _t("Vehicle"), **current})
    records = [
        {"timestamp": t, "data": {_t(name): v}} | ({"topic": d} if d else {})
        for name, pts in MULTI_DATASETS.items()
        for v, t, d in pts
    ]
    r = requests.post(
        f"{te.root}/v3/devices/{eid}/backfill",
        json=records,
        headers={"Authorization": f"Bearer {te.ingest}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("case", "attrs", "dataset"), DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_021_18_filter_attribute_instances_based_on_dataset_id(
    te: Temporal, case: str, attrs: str | None, dataset: str | None
) -> None:
    eid = f"{V}021-18-A"
    _create_multi(te, eid)
    params = {"timerel": "after", "timeAt": "2020-08-01T12:04:00Z", "options": "temporalValues"}
    params |= ({"attrs": attrs} if attrs else {}) | ({"datasetId": dataset} if dataset else {})
    body = ok(te.temporal(type="Vehicle", **params))
    assert body[0] == {"id": eid, "type": "Vehicle", **_dataset_expectation(attrs, dataset)}


def test_021_18_multi_attributes_normalized_retrieve_and_post(te: Temporal) -> None:
    """The normalized representation of a multi-attribute is one array of instances, each with its
    datasetId (none for the default instance); the retrieve and the POST query filter by datasetId too;
    a topic that is not a URI is not a datasetId and is not shown."""
    eid = f"{V}021-18-B"
    _create_multi(te, eid)
    r = requests.post(
        f"{te.root}/v3/devices/{eid}/backfill",
        json={"timestamp": "2020-09-01T12:00:00Z", "topic": "env", "data": {_t("speed"): 1}},
        headers={"Authorization": f"Bearer {te.ingest}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = ok(te.retrieve(eid, attrs="speed"))
    got = sorted((i["value"], i["observedAt"], i.get("datasetId")) for i in _strip(body)["speed"])
    assert got == sorted(MULTI_DATASETS["speed"])
    body = ok(te.retrieve(eid, datasetId="urn:ngsi-ld:Dataset:fuel", options="temporalValues"))
    assert body == {
        "id": eid,
        "type": "Vehicle",
        "fuelLevel": {
            "type": "Property",
            "values": [[40, "2020-09-01T14:07:00Z"]],
            "datasetId": "urn:ngsi-ld:Dataset:fuel",
        },
    }
    query = {"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": ["speed"], "datasetId": "@none"}
    body = ok(te.via_post(query, options="temporalValues"))
    assert body[0]["speed"] == {"type": "Property", "values": [[120, "2020-09-01T12:03:00Z"]]}
    problem(te.temporal(type="Vehicle", datasetId="Common", **JULY), 400, "BadRequestData")


@pytest.mark.parametrize(
    ("case", "fmt", "options", "methods"),
    [("021_19_01", "temporalValues", None, None), ("021_19_02", "temporalValues", "aggregatedValues", "sum"),
     ("021_19_03", None, "temporalValues", None)],
)  # fmt: skip
def test_021_19_query_with_format_or_options(
    te: Temporal, case: str, fmt: str | None, options: str | None, methods: str | None
) -> None:
    a, b = _two(te, "021-19")
    params = {k: v for k, v in {"format": fmt, "options": options, "aggrMethods": methods}.items() if v}
    got = by_id(te.temporal(type="Vehicle", timerel="after", timeAt="2020-01-01T12:03:00Z", **params))
    assert got == {a: entity(a, "Vehicle", VEHICLE_08, _values), b: entity(b, "Vehicle", VEHICLE_09, _values)}


@pytest.mark.parametrize(
    ("case", "fmt", "options"),
    [("021_20_01", "invalidFormat", None), ("021_20_02", None, "invalidOptions"),
     ("021_20_03", None, "temporalValues,invalidOptions"), ("021_20_04", "temporalValues", "aggregatedValues,invalidOptions")],
)  # fmt: skip
def test_021_20_query_with_faulty_format_or_options(
    te: Temporal, case: str, fmt: str | None, options: str | None
) -> None:
    params = {k: v for k, v in {"format": fmt, "options": options}.items() if v}
    problem(
        te.temporal(type="Vehicle", timerel="after", timeAt="2020-01-01T12:03:00Z", **params),
        400,
        "InvalidRequest",
    )


PICK_OMIT_021_21 = [
    ("021_21_01", {"pick": "speed"}, {"speed"}),
    ("021_21_02", {"omit": "speed"}, {"id", "type", "fuelLevel"}),
    ("021_21_03", {"pick": "id"}, {"id"}),
    ("021_21_04", {"omit": "type"}, {"id", "speed", "fuelLevel"}),
    ("021_21_05", {"pick": "id,speed"}, {"id", "speed"}),
    ("021_21_06", {"omit": "type,speed"}, {"id", "fuelLevel"}),
]


@pytest.mark.parametrize(
    ("case", "params", "members"), PICK_OMIT_021_21, ids=[c[0] for c in PICK_OMIT_021_21]
)
def test_021_21_query_with_pick_and_omit(
    te: Temporal, case: str, params: dict[str, str], members: set[str]
) -> None:
    a, b, bus = f"{V}021-21-A", f"{V}021-21-B", f"{BUS}021-21-C"
    te.create(a, "Vehicle", VEHICLE_08)
    te.create(b, "Vehicle", VEHICLE_09)
    te.create(bus, "Bus", BUS_08)
    body = ok(te.temporal(type="Bus,Vehicle", timerel="after", timeAt="1970-01-01T00:00:00Z", **params))
    full = [entity(bus, "Bus", BUS_08), entity(a, "Vehicle", VEHICLE_08), entity(b, "Vehicle", VEHICLE_09)]
    want = [{k: v for k, v in e.items() if k in members} for e in full]
    key = lambda e: str(sorted(e.items()))  # noqa: E731 (group_by=None when id is not picked)
    assert sorted(body, key=key) == sorted(want, key=key)


@pytest.mark.parametrize(
    ("case", "params"),
    [("021_22_01", {"pick": "speed", "omit": "speed"}), ("021_22_02", {"pick": "speed", "attrs": "fuelLevel"}),
     ("021_22_03", {"omit": "speed", "attrs": "fuelLevel"})],
)  # fmt: skip
def test_021_22_query_with_invalid_pick_or_omit(te: Temporal, case: str, params: dict[str, str]) -> None:
    te.create(f"{V}021-22-A", "Vehicle", VEHICLE_08)
    r = te.temporal(type="Building,Vehicle", timerel="after", timeAt="1970-01-01T00:00:00Z", **params)
    problem(r, 400, "BadRequestData")


ORDER_BY = ["name", "id", "createdAt", "name.createdAt", "name.subProperty", "name;asc", "name;desc", "type,name",
            "type;asc,name.subProperty;desc,name;asc"]  # fmt: skip


@pytest.mark.parametrize("order_by", ORDER_BY, ids=[f"021_23_0{i}" for i in range(1, 10)])
def test_021_23_query_with_order_by(te: Temporal, order_by: str) -> None:
    """The suite's setup: orderBy/building_{2,1,3}.jsonld created in that order (a text ``name`` with a
    ``subProperty``, no numeric attribute), queried by the instances' createdAt."""
    for i in (2, 1, 3):
        te.put(_suite_building(i))
    r = te.temporal(
        type="Building",
        orderBy=order_by,
        timerel="after",
        timeAt="1970-01-01T00:00:00Z",
        timeproperty="createdAt",
    )
    assert [e["id"] for e in ok(r)] == [f"urn:ngsi-ld:Building:{i}" for i in ORDER_BY_EXPECTED[order_by]]


# What 021_23 expects of each orderBy (buildings created 2, 1, 3 with names n2, n1, n3).
ORDER_BY_EXPECTED = dict(
    zip(ORDER_BY, ["123", "123", "213", "213", "123", "123", "321", "123", "321"], strict=True)
)


def _suite_building(i: int) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Building:{i}", "type": _t("Building"),
            _t("name"): {"type": "Property", "value": f"n{i}", _t("subProperty"): _p(i)}}  # fmt: skip


def _timed_building(te: Temporal, i: int) -> None:
    te.create(f"urn:ngsi-ld:Building:{i}", "Building", {"speed": [(i, "2020-08-01T12:00:00Z")]},
              **{_t("name"): {"type": "Property", "value": f"n{i}", _t("subProperty"): _p(i)}})  # fmt: skip


@pytest.mark.parametrize("order_by", ORDER_BY)
def test_021_23_order_by_orders_the_entities(te: Temporal, order_by: str) -> None:
    for i in (2, 1, 3):
        _timed_building(te, i)
    r = te.temporal(type="Building", orderBy=order_by, timerel="after", timeAt="1970-01-01T00:00:00Z")
    assert [e["id"] for e in ok(r)] == [f"urn:ngsi-ld:Building:{i}" for i in ORDER_BY_EXPECTED[order_by]]


def test_021_23_order_by_pages_and_via_post(te: Temporal) -> None:
    for i in (2, 1, 3):
        _timed_building(te, i)
    r = te.temporal(
        type="Building", orderBy="name;desc", limit=2, timerel="after", timeAt="1970-01-01T00:00:00Z"
    )
    assert [e["id"] for e in ok(r)] == ["urn:ngsi-ld:Building:3", "urn:ngsi-ld:Building:2"]
    r = te.http.get(r.links["next"]["url"], headers=r.request.headers, timeout=30)
    assert [e["id"] for e in ok(r)] == ["urn:ngsi-ld:Building:1"]
    body = {"type": "Query", "entities": [{"type": "Building"}], "ordering": {"orderBy": ["name;desc"]},
            "temporalQ": {"timerel": "after", "timeAt": "1970-01-01T00:00:00Z"}}  # fmt: skip
    assert [e["id"] for e in ok(te.via_post(body))] == [f"urn:ngsi-ld:Building:{i}" for i in (3, 2, 1)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_021_23_created_at_selects_instances_by_when_they_were_written(te: Temporal) -> None:
    """timeproperty=createdAt reads the non-numeric history by write time, whatever its observedAt: an
    instance observed in 2020 but written now is after a timeAt of an hour ago, and the instances written
    after a write are only the later ones."""
    eid = "urn:ngsi-ld:Building:c1"
    start = _now()
    te.put({"id": eid, "type": _t("Building"),
            _t("name"): {"type": "Property", "value": "old", "observedAt": "2020-01-01T00:00:00Z"}})  # fmt: skip
    mid = _now()
    _upsert(te, {"id": eid, "type": _t("Building"), _t("name"): {"type": "Property", "value": "new"}})
    body = ok(te.retrieve(eid, timeproperty="createdAt", timerel="after", timeAt=start))
    old, new = body["name"]
    assert (old["value"], new["value"]) == ("old", "new") and old["observedAt"] == "2020-01-01T00:00:00Z"
    assert _at(start) < _at(old["createdAt"]) < _at(mid) < _at(new["createdAt"]) and "observedAt" not in new
    got = ok(te.retrieve(eid, timeproperty="createdAt", timerel="after", timeAt=mid))["name"]
    assert [i["value"] for i in got] == ["new"]
    # the instance observed in 2020 is not createdAt before 2021; by observedAt it is
    before = {"timerel": "before", "timeAt": "2021-01-01T00:00:00Z"}
    assert ok(te.retrieve(eid, timeproperty="createdAt", **before)) == {"id": eid, "type": "Building"}
    assert [i["value"] for i in ok(te.retrieve(eid, **before))["name"]] == ["old"]
    listed = ok(te.temporal(type="Building", timeproperty="createdAt", timerel="after", timeAt=mid))
    assert [e["id"] for e in listed] == [eid]
    values = ok(te.retrieve(eid, timeproperty="createdAt", options="temporalValues"))["name"]["values"]
    assert [v[0] for v in values] == ["old", "new"] and values[1][1] == new["createdAt"]
    # an instance keeps its instanceId whichever time it is read by (ok() leaves instanceId out)
    by_created = te.retrieve(eid, timeproperty="createdAt", timerel="after", timeAt=start).json()["name"]
    by_observed = te.retrieve(eid, timerel="after", timeAt="2019-01-01T00:00:00Z").json()["name"]
    ids = [i["instanceId"] for i in by_created]
    assert [i["instanceId"] for i in by_observed] == ids and len(set(ids)) == 2
    counts = {
        "options": "aggregatedValues",
        "aggrMethods": "totalCount,distinctCount",
        "aggrPeriodDuration": "PT0S",
    }
    got = ok(te.retrieve(eid, timeproperty="createdAt", timerel="after", timeAt=start, **counts))["name"]
    assert (got["totalCount"][0][0], got["distinctCount"][0][0]) == (2, 2)


def _upsert(te: Temporal, *items: dict[str, Any]) -> None:
    with te.world.ctx.db.transaction() as s:
        o = accounts.get_org(s, te.org)
        entity_service.import_entities(s, o, accounts.get_workspace(s, o, "farm"), list(items), upsert=True)


def test_021_23_created_at_of_numeric_instances_is_refused(te: Temporal) -> None:
    """The time-series store keeps each point's observedAt and value, not when it was written: a createdAt
    read that would include a numeric attribute is a 400 naming timeproperty, not a 200 without it."""
    _timed_building(te, 1)
    after_1970 = {"timerel": "after", "timeAt": "1970-01-01T00:00:00Z", "timeproperty": "createdAt"}
    r = te.temporal(type="Building", orderBy="name", **after_1970)
    detail = problem(r, 400, "BadRequestData")["detail"]
    assert "timeproperty" in detail and "numeric" in detail and "speed" in detail
    problem(te.retrieve("urn:ngsi-ld:Building:1", **after_1970), 400, "BadRequestData")
    r = te.temporal(type="Building", attrs="name", **after_1970)
    assert [e["id"] for e in ok(r)] == ["urn:ngsi-ld:Building:1"]
    body = ok(te.retrieve("urn:ngsi-ld:Building:1", attrs="name", **after_1970))
    ((inst,),) = [body["name"]]
    assert inst["value"] == "n1" and "createdAt" in inst
    r = te.temporal(
        type="Building", timeproperty="modifiedAt", timerel="after", timeAt="1970-01-01T00:00:00Z"
    )
    assert "timeproperty" in problem(r, 400, "BadRequestData")["detail"]


def _building(i: int) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Building:{i}",
        "type": _t("Building"),
        _t("name"): {"type": "Property", "value": f"n{i}"},
    }


def test_021_23_malformed_order_by_is_bad_request_data(te: Temporal) -> None:
    te.put(_building(1))
    r = te.temporal(type="Building", orderBy="name;sideways", timerel="after", timeAt="1970-01-01T00:00:00Z")
    assert "orderBy" in problem(r, 400, "BadRequestData")["detail"]


def test_021_24_query_without_the_minimal_parameters(te: Temporal) -> None:
    r = te.temporal(id="urn:ngsi-ld:Entity:01,urn:ngsi-ld:Entity:02", **JULY)
    problem(r, 400, "BadRequestData")


def test_021_25_query_all_temporal_entities_with_the_local_flag(te: Temporal) -> None:
    """The suite compares against 021_06's expectation (vehicle A only) though its setup creates A and B and
    the query selects every entity: here A is checked as the suite writes it, and B must be there too."""
    a, b = _two(te, "021-06")
    got = by_id(te.temporal(local="true", **JULY))
    assert got[a] == entity(a, "Vehicle", VEHICLE_08) and got[b] == entity(b, "Vehicle", VEHICLE_09)
