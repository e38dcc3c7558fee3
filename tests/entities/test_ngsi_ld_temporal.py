"""The NGSI-LD temporal API on both backends: representations against values computed by hand, window
clamping, paging, scopes, bad input. The scenarios follow the ETSI NGSI-LD test suite's temporal
consumption cases (020_xx retrieve, 021_xx query: after/before/between, lastN, aggregated values), with
data put in through sensorhub's own ingest instead of the temporal provision API (tokens cannot write)."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import World, bearer
from tests.entities.helpers import problem

TE = "/ngsi-ld/v1/temporal/entities"
VEH = "urn:ngsi-ld:Vehicle:v1"
BUS = "urn:ngsi-ld:Bus:b1"
T0 = datetime(2020, 8, 1, 12, 0, tzinfo=UTC)


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def backfill(
    client: TestClient, token: str, device: str, points: list[tuple[datetime, dict[str, Any]]]
) -> None:
    body = [{"timestamp": z(t), "data": d} for t, d in points]
    for i in range(0, len(body), 5000):
        r = client.post(f"/v3/devices/{device}/backfill", json=body[i : i + 5000], headers=bearer(token))
        assert r.status_code == 200, r.text


# speed every 2 minutes from 12:00 to 12:58 (30 points): 0, 3, 6, …; fuel every 10 minutes.
SPEEDS = [float((i * 3) % 50) for i in range(30)]


@pytest.fixture
def fleet(client: TestClient, world: World) -> dict[str, str]:
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    world.entity("acme", "main", VEH, "Vehicle", brandName="Mercedes")
    world.entity("acme", "main", BUS, "Bus")
    ingest = world.pat("o@acme.test", ["ingest"], name="ingest")
    backfill(
        client,
        ingest,
        VEH,
        [
            (T0 + timedelta(minutes=2 * i), {"speed": {"value": v, "unit": "KMH"}})
            for i, v in enumerate(SPEEDS)
        ]
        + [(T0 + timedelta(minutes=10 * i), {"fuel": 50.0 - i}) for i in range(6)],
    )
    backfill(client, ingest, BUS, [(T0 + timedelta(minutes=5 * i), {"speed": 10.0 + i}) for i in range(12)])
    return {
        "read": world.pat("o@acme.test", ["entities", "timeseries"], name="read"),
        "ts_only": world.pat("o@acme.test", ["timeseries"], name="ts"),
        "ent_only": world.pat("o@acme.test", ["entities"], name="ent"),
    }


def test_retrieve_normalized_between(client: TestClient, fleet: dict[str, str]) -> None:
    """020_01 / 021_01_03: instances with observedAt, only those in [timeAt, endTimeAt)."""
    r = client.get(
        f"{TE}/{VEH}",
        params={
            "timerel": "between",
            "timeAt": z(T0 + timedelta(minutes=4)),
            "endTimeAt": z(T0 + timedelta(minutes=10)),
            "attrs": "speed",
        },
        headers=bearer(fleet["read"]),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "ngsi-ld-core-context" in r.headers["link"]
    body = r.json()
    assert body["id"] == VEH and body["type"] == "Vehicle" and set(body) == {"id", "type", "speed"}
    assert [(i["value"], i["observedAt"]) for i in body["speed"]] == [
        (6.0, "2020-08-01T12:04:00Z"),
        (9.0, "2020-08-01T12:06:00Z"),
        (12.0, "2020-08-01T12:08:00Z"),
    ]
    assert all(i["type"] == "Property" and i["unitCode"] == "KMH" and i["instanceId"] for i in body["speed"])


def test_query_after_before_between_and_ld(client: TestClient, fleet: dict[str, str]) -> None:
    """021_01: after (strictly after timeAt), before (strictly before), between; JSON-LD carries @context."""
    h = bearer(fleet["read"])
    after = client.get(
        TE,
        params={
            "type": "Vehicle",
            "attrs": "fuel",
            "timerel": "after",
            "timeAt": z(T0 + timedelta(minutes=30)),
        },
        headers=h,
    )
    assert after.status_code == 200, after.text
    assert [i["value"] for i in after.json()[0]["fuel"]] == [46.0, 45.0]
    before = client.get(
        TE,
        params={
            "type": "Vehicle",
            "attrs": "fuel",
            "timerel": "before",
            "timeAt": z(T0 + timedelta(minutes=20)),
        },
        headers=h,
    )
    assert [i["value"] for i in before.json()[0]["fuel"]] == [50.0, 49.0]
    ld = client.get(
        TE,
        params={
            "type": "Vehicle,Bus",
            "attrs": "speed",
            "timerel": "between",
            "timeAt": z(T0),
            "endTimeAt": z(T0 + timedelta(minutes=5)),
        },
        headers={**h, "Accept": "application/ld+json"},
    )
    assert ld.headers["content-type"].startswith("application/ld+json")
    got = {e["id"]: [i["value"] for i in e["speed"]] for e in ld.json()}
    assert got == {BUS: [10.0], VEH: [0.0, 3.0, 6.0]}
    assert all("@context" in e for e in ld.json())
    # The POST form with temporalQ (both paths: 1.8's /temporal/entityOperations and the older one).
    for path in ("/ngsi-ld/v1/temporalEntityOperations/query", "/ngsi-ld/v1/temporal/entityOperations/query"):
        r = client.post(
            path,
            json={
                "type": "Query",
                "entities": [{"type": "Bus"}],
                "attrs": ["speed"],
                "temporalQ": {"timerel": "before", "timeAt": z(T0 + timedelta(minutes=10))},
            },
            headers=h,
        )
        assert r.status_code == 200, r.text
        assert [i["value"] for i in r.json()[0]["speed"]] == [10.0, 11.0]


def test_temporal_values_and_last_n(client: TestClient, fleet: dict[str, str]) -> None:
    h = bearer(fleet["read"])
    r = client.get(
        f"{TE}/{VEH}", params={"options": "temporalValues", "attrs": "fuel", "lastN": "3"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["fuel"] == {
        "type": "Property",
        "values": [
            [47.0, "2020-08-01T12:30:00Z"],
            [46.0, "2020-08-01T12:40:00Z"],
            [45.0, "2020-08-01T12:50:00Z"],
        ],
    }
    r = client.get(f"{TE}/{VEH}", params={"lastN": "2"}, headers=h)
    assert [i["value"] for i in r.json()["speed"]] == SPEEDS[-2:]
    assert [i["value"] for i in r.json()["fuel"]] == [46.0, 45.0]


def _by_hand(values: list[float]) -> dict[str, float]:
    return {
        "totalCount": float(len(values)),
        "distinctCount": float(len(set(values))),
        "sum": sum(values),
        "avg": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "sumsq": sum(v * v for v in values),
    }


METHODS = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"


def test_aggregated_values_match_hand_computed(client: TestClient, fleet: dict[str, str]) -> None:
    """5744-style: every aggrMethod per PT20M period, against Python's own arithmetic."""
    r = client.get(
        f"{TE}/{VEH}",
        params={
            "options": "aggregatedValues",
            "aggrMethods": METHODS,
            "aggrPeriodDuration": "PT20M",
            "attrs": "speed",
            "timerel": "between",
            "timeAt": z(T0),
            "endTimeAt": z(T0 + timedelta(hours=1)),
        },
        headers=bearer(fleet["read"]),
    )
    assert r.status_code == 200, r.text
    speed = r.json()["speed"]
    assert speed["type"] == "Property"
    for m in METHODS.split(","):
        assert [row[1:] for row in speed[m]] == [
            [z(T0 + timedelta(minutes=20 * k)), z(T0 + timedelta(minutes=20 * (k + 1)))] for k in range(3)
        ]
        for k, row in enumerate(speed[m]):
            want = _by_hand(SPEEDS[10 * k : 10 * (k + 1)])[m]
            assert row[0] == pytest.approx(want, rel=1e-9, abs=1e-9), (m, k)
    # PT0S (the default): one period over the whole range.
    r = client.get(
        f"{TE}/{VEH}",
        params={
            "options": "aggregatedValues",
            "aggrMethods": "avg,max",
            "attrs": "fuel",
            "timerel": "after",
            "timeAt": z(T0 - timedelta(days=1)),
        },
        headers=bearer(fleet["read"]),
    )
    assert r.json()["fuel"]["avg"] == [[47.5, z(T0 - timedelta(days=1)), z(T0 + timedelta(minutes=50))]]
    assert r.json()["fuel"]["max"][0][0] == 50.0


def test_daily_and_monthly_periods_over_rollups(client: TestClient, world: World) -> None:
    """P1D and P1M periods (calendar months) over 10-minute data crossing month ends, from the rollups."""
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    world.entity("acme", "main", VEH, "Vehicle")
    start = datetime(2024, 1, 30, tzinfo=UTC)
    pts = [(start + timedelta(minutes=10 * i), float(i % 7)) for i in range(6 * 24 * 33)]  # to 2024-03-03
    backfill(
        client, world.pat("o@acme.test", ["ingest"], name="ingest"), VEH, [(t, {"speed": v}) for t, v in pts]
    )
    h = bearer(world.pat("o@acme.test", ["entities", "timeseries"]))
    common = {
        "options": "aggregatedValues",
        "aggrMethods": "totalCount,sum,stddev",
        "timerel": "between",
        "timeAt": "2024-01-30T00:00:00Z",
        "endTimeAt": "2024-03-03T00:00:00Z",
    }
    r = client.get(f"{TE}/{VEH}", params={**common, "aggrPeriodDuration": "P1M"}, headers=h)
    assert r.status_code == 200, r.text
    rows = r.json()["speed"]["totalCount"]
    # Periods start at timeAt, each boundary counted from it: Jan 30 → Feb 29 (clipped; 2024 is a leap year) → Mar 30.
    assert [row[1:] for row in rows] == [
        ["2024-01-30T00:00:00Z", "2024-02-29T00:00:00Z"],
        ["2024-02-29T00:00:00Z", "2024-03-30T00:00:00Z"],
    ]
    cut = datetime(2024, 2, 29, tzinfo=UTC)
    first = [v for t, v in pts if t < cut]
    second = [v for t, v in pts if t >= cut]
    assert [row[0] for row in rows] == [len(first), len(second)]
    sd = r.json()["speed"]["stddev"]
    assert sd[0][0] == pytest.approx(statistics.stdev(first)) and sd[1][0] == pytest.approx(
        statistics.stdev(second)
    )
    r = client.get(f"{TE}/{VEH}", params={**common, "aggrPeriodDuration": "P1D"}, headers=h)
    sums = r.json()["speed"]["sum"]
    assert len(sums) == 33
    day = [v for t, v in pts if datetime(2024, 2, 10, tzinfo=UTC) <= t < datetime(2024, 2, 11, tzinfo=UTC)]
    assert sums[11] == [sum(day), "2024-02-10T00:00:00Z", "2024-02-11T00:00:00Z"]


def test_token_time_window_clamps_every_instant(
    client: TestClient, world: World, fleet: dict[str, str]
) -> None:
    """A PAT limited to [12:10, 12:30) sees only those instances, in every representation."""
    tok = world.pat(
        "o@acme.test",
        ["entities", "timeseries"],
        name="window",
        time_start=T0 + timedelta(minutes=10),
        time_end=T0 + timedelta(minutes=30),
    )
    h = bearer(tok)
    r = client.get(f"{TE}/{VEH}", params={"attrs": "fuel"}, headers=h)
    assert [i["observedAt"] for i in r.json()["fuel"]] == ["2020-08-01T12:10:00Z", "2020-08-01T12:20:00Z"]
    r = client.get(f"{TE}/{VEH}", params={"attrs": "speed", "lastN": "100"}, headers=h)
    assert [i["value"] for i in r.json()["speed"]] == SPEEDS[5:15]
    r = client.get(
        f"{TE}/{VEH}",
        params={
            "attrs": "speed",
            "options": "aggregatedValues",
            "aggrMethods": "totalCount,sum,max",
            "timerel": "between",
            "timeAt": z(T0),
            "endTimeAt": z(T0 + timedelta(hours=1)),
        },
        headers=h,
    )
    sp = r.json()["speed"]
    assert (
        sp["totalCount"][0][0] == 10
        and sp["sum"][0][0] == sum(SPEEDS[5:15])
        and sp["max"][0][0] == max(SPEEDS[5:15])
    )
    r = client.get(
        TE,
        params={"type": "Vehicle", "timerel": "before", "timeAt": z(T0 + timedelta(minutes=10))},
        headers=h,
    )
    # Nothing readable before 12:10: the temporal query selects no entity (5.7.4.4).
    assert r.status_code == 200 and r.json() == []


def test_more_instances_than_a_page_is_206_with_content_range(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    world.entity("acme", "main", VEH, "Vehicle")
    backfill(
        client,
        world.pat("o@acme.test", ["ingest"], name="ingest"),
        VEH,
        [(T0 + timedelta(seconds=i), {"speed": float(i)}) for i in range(1500)],
    )
    h = bearer(world.pat("o@acme.test", ["entities", "timeseries"]))
    r = client.get(
        f"{TE}/{VEH}", params={"timerel": "after", "timeAt": z(T0 - timedelta(seconds=1))}, headers=h
    )
    assert r.status_code == 206, r.text
    assert len(r.json()["speed"]) == 1000
    last = r.json()["speed"][-1]["observedAt"]
    assert r.headers["content-range"] == f"date-time {z(T0 - timedelta(seconds=1))}-{last}/*"
    r2 = client.get(f"{TE}/{VEH}", params={"timerel": "after", "timeAt": last}, headers=h)
    assert r2.status_code == 200 and [i["value"] for i in r2.json()["speed"]] == [
        float(i) for i in range(1000, 1500)
    ]
    r3 = client.get(f"{TE}/{VEH}", params={"lastN": "1200"}, headers=h)
    assert r3.status_code == 206 and len(r3.json()["speed"]) == 1000
    assert r3.json()["speed"][-1]["value"] == 1499.0
    assert r3.headers["content-range"].endswith("/1200")


def test_scopes_and_tenancy(client: TestClient, world: World, fleet: dict[str, str]) -> None:
    assert (
        problem(client.get(f"{TE}/{VEH}", headers=bearer(fleet["ent_only"])), 403, "PermissionDenied")["code"]
        == "insufficient_scope"
    )
    body = problem(client.get(f"{TE}/{VEH}", headers=bearer(fleet["ts_only"])), 403, "PermissionDenied")
    assert "entities" in body["detail"]
    world.org("other")
    world.user("x@other.test", "other", "owner")
    stranger = world.pat("x@other.test", ["entities", "timeseries"])
    problem(client.get(f"{TE}/{VEH}", headers=bearer(stranger)), 404, "ResourceNotFound")
    r = client.get(TE, params={"type": "Vehicle"}, headers=bearer(stranger))
    assert r.status_code == 200 and r.json() == []
    problem(client.get(f"{TE}/{VEH}"), 401, "Unauthorized")
    problem(client.get(TE, params={"limit": "501"}, headers=bearer(fleet["read"])), 403, "TooManyResults")


BAD_INPUT: list[tuple[dict[str, str], str]] = [
    ({"timerel": "after"}, "timeAt"),
    ({"timerel": "during", "timeAt": "2020-01-01T00:00:00Z"}, "timerel"),
    ({"timeAt": "2020-01-01T00:00:00Z"}, "timerel"),
    ({"timerel": "between", "timeAt": "2020-01-01T00:00:00Z"}, "endTimeAt"),
    (
        {"timerel": "between", "timeAt": "2020-01-02T00:00:00Z", "endTimeAt": "2020-01-01T00:00:00Z"},
        "endTimeAt",
    ),
    ({"timerel": "after", "timeAt": "yesterday"}, "timeAt"),
    ({"timeproperty": "modifiedAt"}, "timeproperty"),
    ({"lastN": "0"}, "lastN"),
    ({"lastN": "1e30"}, "lastN"),
    ({"lastN": "99999999999"}, "lastN"),
    ({"options": "aggregatedValues"}, "aggrMethods"),
    ({"options": "aggregatedValues", "aggrMethods": "median"}, "aggrMethods"),
    ({"aggrMethods": "avg"}, "aggregatedValues"),
    (
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1X"},
        "aggrPeriodDuration",
    ),
    (
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "-PT1H"},
        "aggrPeriodDuration",
    ),
    (
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P0001-00-00"},
        "aggrPeriodDuration",
    ),
    (
        {
            "options": "aggregatedValues",
            "aggrMethods": "avg",
            "aggrPeriodDuration": "PT1S",
            "timerel": "between",
            "timeAt": "2020-01-01T00:00:00Z",
            "endTimeAt": "2021-01-01T00:00:00Z",
        },
        "aggrPeriodDuration",
    ),
    ({"options": "sysAttrs"}, "option"),
    ({"georel": "near;maxDistance==10"}, "georel"),
]


def test_bad_input_is_400_naming_it(client: TestClient, fleet: dict[str, str]) -> None:
    for params, name in BAD_INPUT:
        r = client.get(f"{TE}/{VEH}", params=params, headers=bearer(fleet["read"]))
        body = problem(r, 400, "BadRequestData")
        assert name in body["detail"], (params, body["detail"])


def test_csf_is_checked_then_refused_naming_it(client: TestClient, fleet: dict[str, str]) -> None:
    """A context source filter has the q grammar: malformed, 400 BadRequestData naming csf; well-formed,
    501 (sensorhub has no context sources) — on the temporal query by GET and by POST alike."""
    h = bearer(fleet["read"])
    post = "/ngsi-ld/v1/temporalEntityOperations/query"
    for csf, status, kind in (("))bad((", 400, "BadRequestData"), ("mode==inclusive", 501, "NotImplemented")):
        r = client.get(TE, params={"type": "Vehicle", "csf": csf}, headers=h)
        assert "csf" in problem(r, status, kind)["detail"]
        body = {"type": "Query", "entities": [{"type": "Vehicle"}], "csf": csf}
        assert "csf" in problem(client.post(post, json=body, headers=h), status, kind)["detail"]
    # expandValues is read on the temporal query as on /entities: it needs q.
    r = client.get(TE, params={"type": "Vehicle", "expandValues": "brandName"}, headers=h)
    assert "expandValues" in problem(r, 400, "BadRequestData")["detail"]
    r = client.get(
        TE, params={"type": "Vehicle", "q": "brandName==Mercedes", "expandValues": "brandName"}, headers=h
    )
    assert [e["id"] for e in r.json()] == [VEH]


def test_distinct_count_scan_is_bounded(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorhub.timeseries import temporal

    monkeypatch.setattr(temporal, "MAX_DISTINCT_SCAN", 20)
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    world.entity("acme", "main", VEH, "Vehicle")
    backfill(
        client,
        world.pat("o@acme.test", ["ingest"], name="ingest"),
        VEH,
        [(T0 + timedelta(minutes=i), {"speed": float(i % 3)}) for i in range(30)],
    )
    h = bearer(world.pat("o@acme.test", ["entities", "timeseries"]))
    p = {"options": "aggregatedValues", "aggrMethods": "distinctCount", "timerel": "between", "timeAt": z(T0)}
    ok = client.get(f"{TE}/{VEH}", params={**p, "endTimeAt": z(T0 + timedelta(minutes=15))}, headers=h)
    assert ok.status_code == 200 and ok.json()["speed"]["distinctCount"][0][0] == 3
    body = problem(
        client.get(f"{TE}/{VEH}", params={**p, "endTimeAt": z(T0 + timedelta(hours=1))}, headers=h),
        400,
        "BadRequestData",
    )
    assert "distinctCount" in body["detail"]


def test_sumsq_migration_backfills_existing_rollups(ctx: Any, world: World) -> None:
    """Data stored before the sum-of-squares migration (0006_sumsq) gets its sums of squares from the raw points."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from sensorhub.migrate import alembic_config, downgrade, upgrade
    from sensorhub.timeseries import service

    world.org("acme")
    e = world.entity("acme", "main", VEH, "Vehicle")
    with ctx.db.transaction() as s:
        sid = service.get_or_create_series(s, e, "speed", None).id
        service.bulk_insert(
            s, sid, [1_000_000 * 60 * i for i in range(0, 200, 7)], [float(i) for i in range(0, 200, 7)]
        )
    below = ScriptDirectory.from_config(alembic_config()).get_revision("0006_sumsq").down_revision
    assert isinstance(below, str)
    downgrade(ctx.db, below)
    upgrade(ctx.db)
    with ctx.db.session() as s:
        got = s.execute(text("SELECT sum(sumsq) FROM rollup_1d WHERE series_id = :s"), {"s": sid}).scalar()
        hours = (
            s.execute(
                text("SELECT sumsq FROM rollup_1h WHERE series_id = :s ORDER BY bucket_start"), {"s": sid}
            )
            .scalars()
            .all()
        )
    assert got == pytest.approx(sum(float(i) ** 2 for i in range(0, 200, 7)))
    assert hours[0] == pytest.approx(sum(float(i) ** 2 for i in range(0, 60, 7)))
    assert not math.isnan(got)


def test_entities_without_instances_in_the_range_drop_out_and_the_page_is_still_full(
    client: TestClient, world: World
) -> None:
    """5.7.4.4: with timerel, only entities with instances in the range are answered; the page is filled
    from the following entities, so limit=2 still gives two entities (and a next link while more exist)."""
    world.org("acme")
    world.user("o@acme.test", "acme", "owner")
    ingest = world.pat("o@acme.test", ["ingest"], name="ingest")
    for i in range(5):
        eid = f"urn:ngsi-ld:Vehicle:v{i}"
        world.entity("acme", "main", eid, "Vehicle")
        at = T0 if i % 2 else T0 - timedelta(days=30)  # v1 and v3 have data on T0; v0, v2, v4 a month before
        backfill(client, ingest, eid, [(at, {"speed": float(i)})])
    h = bearer(world.pat("o@acme.test", ["entities", "timeseries"]))
    p = {"type": "Vehicle", "timerel": "after", "timeAt": z(T0 - timedelta(days=1)), "limit": "1"}
    r = client.get(TE, params=p, headers=h)
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:v1"]
    r2 = client.get(r.links["next"]["url"], headers=h)
    assert [e["id"] for e in r2.json()] == ["urn:ngsi-ld:Vehicle:v3"]
    r = client.get(TE, params={**p, "limit": "2"}, headers=h)
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:v1", "urn:ngsi-ld:Vehicle:v3"]


def test_ingested_text_states_are_each_an_instance(
    client: TestClient, world: World, fleet: dict[str, str]
) -> None:
    """Every text observation a backfill carries is an instance of the attribute's history — not only
    the newest, which becomes the entity's state; one older than the state (a later backfill) too, and
    sending a request again adds nothing."""
    ingest = world.pat("o@acme.test", ["ingest"], name="ingest2")
    states = [
        (T0 + timedelta(minutes=m), {"status": s}) for m, s in ((1, "parked"), (3, "driving"), (5, "parked"))
    ]
    backfill(client, ingest, VEH, states)
    backfill(client, ingest, VEH, states)  # again: the same instances
    backfill(client, ingest, VEH, [(T0, {"status": "off"})])  # older than the state
    r = client.get(
        f"{TE}/{VEH}", params={"attrs": "status", "options": "temporalValues"}, headers=bearer(fleet["read"])
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {
        "type": "Property",
        "values": [["off", z(T0)], ["parked", z(T0 + timedelta(minutes=1))],
                   ["driving", z(T0 + timedelta(minutes=3))], ["parked", z(T0 + timedelta(minutes=5))]],
    }  # fmt: skip
    current = client.get(f"/ngsi-ld/v1/entities/{VEH}", headers=bearer(fleet["read"])).json()
    assert current["status"]["value"] == "parked"
    r = client.get(
        f"{TE}/{VEH}",
        params={
            "attrs": "status",
            "options": "aggregatedValues",
            "aggrMethods": "totalCount,distinctCount,sum",
        },
        headers=bearer(fleet["read"]),
    )
    assert r.status_code == 200, r.text
    assert {k: v[0][0] for k, v in r.json()["status"].items() if k != "type"} == {
        "totalCount": 4,
        "distinctCount": 3,
    }
