"""The time-series HTTP API on both backends: backfill, v2 reads, query, telemetry, LEAF, isolation."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from tests.builders import World, bearer

DEV = "urn:ngsi-ld:Device:d1"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
ARROW = "application/vnd.apache.arrow.stream"


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def setup_org(
    world: World, org: str = "acme", email: str = "a@acme.test", devices: tuple[str, ...] = (DEV,)
) -> str:
    world.org(org)
    world.user(email, org, "member")
    for d in devices:
        world.entity(org, "main", d)
    return world.pat(email)


def minutes(n: int, start: datetime = T0, key: str = "temperature", f: Any = float) -> list[dict[str, Any]]:
    return [{"timestamp": z(start + timedelta(minutes=i)), "data": {key: f(i)}} for i in range(n)]


def post(client: TestClient, token: str, device: str, body: Any) -> Any:
    return client.post(f"/v3/devices/{device}/backfill", json=body, headers=bearer(token))


def get_data(client: TestClient, token: str, device: str = DEV, **params: Any) -> Any:
    params.setdefault("start_time", z(T0))
    params.setdefault("end_time", z(T0 + timedelta(days=1)))
    return client.get(f"/api/timeseries/v2/entities/{device}/data", params=params, headers=bearer(token))


# --- backfill ---------------------------------------------------------------------------------------


def test_backfill_single_bulk_idempotent_and_read_back(client: TestClient, world: World) -> None:
    token = setup_org(world)
    r = post(client, token, DEV, {"timestamp": z(T0), "data": {"temperature": 20.5}})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0}
    r = post(client, token, DEV, minutes(10))
    assert r.json() == {"accepted": 9, "duplicates": 1}  # T0 is already stored
    r = post(client, token, DEV, minutes(10))
    assert r.json() == {"accepted": 0, "duplicates": 10}
    body = get_data(client, token).json()
    assert body["bucket_seconds"] is None and body["entity_id"] == DEV
    assert body["timestamps"][:2] == ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]
    assert body["attributes"]["temperature"][:3] == [20.5, 1.0, 2.0]  # the first value of T0 was kept


def test_backfill_without_timestamp_means_now_and_units(client: TestClient, world: World) -> None:
    token = setup_org(world)
    r = post(client, token, DEV, {"data": {"humidity": {"value": 40, "unit": "P1"}}})
    assert r.status_code == 200, r.text
    sensors = client.get("/api/sensors", headers=bearer(token)).json()
    assert [(x["id"], x["value"], x["unit"]) for x in sensors] == [(f"{DEV}.humidity", 40.0, "P1")]
    seen = datetime.fromisoformat(sensors[0]["observedAt"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - seen).total_seconds()) < 60


def test_backfill_by_asset_id_and_new_attribute_becomes_series(client: TestClient, world: World) -> None:
    token = setup_org(world)
    e = world.entity("acme", "main", "urn:ngsi-ld:Device:d2")
    r = post(client, token, e.asset_id, {"timestamp": z(T0), "data": {"co2": 410}})
    assert r.json() == {"accepted": 1, "duplicates": 0}
    assert (
        client.get("/api/sensors/urn:ngsi-ld:Device:d2.co2", headers=bearer(token)).json()["value"] == 410.0
    )


def test_non_numeric_values_become_latest_state_properties(client: TestClient, world: World) -> None:
    token = setup_org(world)
    r = post(
        client,
        token,
        DEV,
        [
            {"timestamp": z(T0), "data": {"temperature": 1, "status": "ok", "door": True}},
            {"timestamp": z(T0 + timedelta(minutes=5)), "data": {"status": "alarm"}},
            {"timestamp": z(T0 + timedelta(minutes=1)), "data": {"status": "late"}},
        ],
    )
    assert r.json() == {"accepted": 5, "duplicates": 0}
    dev = client.get(f"/api/devices/{DEV}", headers=bearer(token)).json()
    assert dev["attributes"]["temperature"]["value"] == 1.0
    assert dev["attributes"]["status"] == {
        "value": "alarm",
        "unit": None,
        "observedAt": "2024-01-01T00:05:00Z",
    }
    assert dev["attributes"]["door"]["value"] is True
    # Only numeric attributes are time series.
    assert list(get_data(client, token).json()["attributes"]) == ["temperature"]


BAD_BODIES: list[tuple[str, str]] = [
    (
        '[{"data":{"t":1}},{"data":{"t":2}},{"data":{"t":3}},{"data":{"temperature":NaN}}]',
        "record 3: data.temperature is NaN",
    ),
    ('[{"data":{"t":1}},{"data":{"t":Infinity}}]', "record 1: data.t is infinite"),
    ('[{"data":{"t":1e400}}]', "record 0: data.t is infinite"),
    ('[{"data":{"t":1}},{"timestamp":"yesterday","data":{"t":2}}]', "record 1: timestamp 'yesterday'"),
    ('[{"timestamp":1704067200,"data":{"t":2}}]', "record 0: timestamp must be an ISO 8601 string"),
    ('[{"timestamp":"2024-13-01T00:00:00Z","data":{"t":2}}]', "record 0: timestamp"),
    ('[{"data":{"t":1}},{"topic":"x"}]', "record 1: data must be an object"),
    ('{"data":{}}', "record 0: data is empty"),
    ('{"data":{"t":null}}', "record 0: data.t is null"),
    ('{"data":{"t":1},"timstamp":"2024-01-01T00:00:00Z"}', "record 0: unknown field 'timstamp'"),
    ("[1]", "record 0: must be an object"),
    ('{"data":{"t":{"value":1,"unit":"CEL"}}},{"x":1}', "not valid JSON"),
    (
        '[{"data":{"t":{"value":1,"unit":"CEL"}}},{"data":{"t":{"value":2,"unit":"FAH"}}}]',
        "record 1: data.t.unit 'FAH'",
    ),
    ('[{"data":{"id":"x"}}]', "record 0: data key 'id' is a reserved NGSI-LD name"),
    ("[]", "empty"),
    # Attribute names follow one grammar (letters, digits, _ : / # @ -), in every shape of request.
    (
        '[{"data":{"t":1}},{"data":{"t\\"), __import__(\\"os\\")#":2}}]',
        "record 1: data key 't\"), __import__",
    ),
    ('[{"data":{"a b":1}}]', "record 0: data key 'a b' is not a valid attribute name"),
    ('[{"data":{"t.x":1}}]', "record 0: data key 't.x' is not a valid attribute name"),
    ('[{"data":{"1st":1}}]', "record 0: data key '1st' is not a valid attribute name"),
    ('[{"data":{"status\\n":"ok"}}]', "record 0: data key 'status\\n' is not a valid attribute name"),
    ('[{"data":{"t":1}},{"data":{"t":2}},{"data":{"x;y":2}}]', "record 2: data key 'x;y'"),
    ('{"data":{"%s":1}}' % ("k" * 201), "is not a valid attribute name: use 1-200 characters"),
    # The supported time range is [1900-01-01, 2200-01-01) UTC, in every timestamp form.
    ('[{"data":{"t":1}},{"timestamp":"9999-12-31T23:59:59.999999Z","data":{"t":2}}]', "record 1: timestamp"),
    (
        '[{"timestamp":"2200-01-01T00:00:00Z","data":{"t":2}}]',
        "record 0: timestamp 2200-01-01T00:00:00Z is outside",
    ),
    (
        '[{"timestamp":"1899-12-31T23:59:59.999Z","data":{"t":2}}]',
        "record 0: timestamp 1899-12-31T23:59:59.999Z is outside",
    ),
    (
        '[{"timestamp":"1899-12-31","data":{"t":2,"s":"x"}}]',
        "record 0: timestamp 1899-12-31T00:00:00Z is outside",
    ),
    (
        '[{"timestamp":"2200-01-01T01:30:00+01:00","data":{"t":2}}]',
        "record 0: timestamp 2200-01-01T00:30:00Z is outside",
    ),
    (
        '[{"timestamp":"0001-01-01T00:00:00+01:00","data":{"t":2}}]',
        "record 0: timestamp 0000-12-31T23:00:00.000000Z is outside",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD_BODIES)
def test_bad_backfill_is_400_naming_the_problem_and_stores_nothing(
    client: TestClient, world: World, raw: str, message: str
) -> None:
    token = setup_org(world)
    r = client.post(
        f"/v3/devices/{DEV}/backfill",
        content=raw,
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    assert client.get("/api/sensors", headers=bearer(token)).json() == []
    assert client.get(f"/api/devices/{DEV}", headers=bearer(token)).json()["attributes"] == {}


def test_backfill_unit_conflict_with_stored_unit(client: TestClient, world: World) -> None:
    token = setup_org(world)
    assert (
        post(client, token, DEV, {"timestamp": z(T0), "data": {"t": {"value": 1, "unit": "CEL"}}}).status_code
        == 200
    )
    r = post(
        client,
        token,
        DEV,
        [{"timestamp": z(T0 + timedelta(minutes=1)), "data": {"t": {"value": 2, "unit": "FAH"}}}],
    )
    assert r.status_code == 400 and "record 0: data.t.unit 'FAH'" in r.json()["message"]


def test_backfill_needs_ingest_scope_and_a_visible_device(client: TestClient, world: World) -> None:
    setup_org(world)
    read_only = world.pat("a@acme.test", ["timeseries"], name="ro")
    assert post(client, read_only, DEV, {"data": {"t": 1}}).status_code == 403
    token = world.pat("a@acme.test", name="rw")
    r = post(client, token, "urn:ngsi-ld:Device:nope", {"data": {"t": 1}})
    assert r.status_code == 404


# --- v2 reads ---------------------------------------------------------------------------------------


def test_resolution_raw_vs_aggregated_and_all_aggregations(client: TestClient, world: World) -> None:
    token = setup_org(world)
    assert post(client, token, DEV, minutes(1440))  # one day of 1-minute data, values 0..1439
    r = get_data(client, token, resolution=1440).json()
    assert r["bucket_seconds"] is None and len(r["timestamps"]) == 1440 and r["aggregation"] is None
    r = get_data(client, token, resolution=24).json()
    assert r["bucket_seconds"] == 3600 and len(r["timestamps"]) == 24 and r["aggregation"] == "avg"
    assert r["attributes"]["temperature"][0] == pytest.approx(29.5)
    expected = {
        "min": 60.0,
        "max": 119.0,
        "sum": sum(range(60, 120)),
        "count": 60.0,
        "first": 60.0,
        "last": 119.0,
        "avg": 89.5,
    }
    for agg, v in expected.items():
        r = get_data(client, token, resolution=24, aggregation=agg).json()
        assert r["attributes"]["temperature"][1] == pytest.approx(v), agg
    r = get_data(client, token, resolution=200).json()
    assert r["bucket_seconds"] == 600 and len(r["timestamps"]) == 144
    assert r["units"] == {"temperature": None}


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"end_time": z(T0)}, 400, "end_time must be after start_time"),
        ({"end_time": z(T0 - timedelta(hours=1))}, 400, "end_time must be after start_time"),
        ({"resolution": 0}, 400, "resolution"),
        ({"resolution": -5}, 400, "resolution"),
        ({"resolution": 100_001}, 400, "resolution"),
        ({"aggregation": "median"}, 400, "unknown aggregation 'median'"),
        ({"start_time": "not-a-time"}, 400, "start_time 'not-a-time'"),
        ({"attribute": "pressure"}, 404, "'pressure'"),
        ({"format": "xml"}, 400, "unknown format 'xml'"),
    ],
)
def test_bad_read_parameters(
    client: TestClient, world: World, params: dict[str, Any], status: int, message: str
) -> None:
    token = setup_org(world)
    post(client, token, DEV, minutes(5))
    r = get_data(client, token, **params)
    assert r.status_code == status, r.text
    assert message in r.json()["message"]


def test_offsets_and_multiple_attributes(client: TestClient, world: World) -> None:
    token = setup_org(world)
    post(client, token, DEV, minutes(10) + minutes(10, key="humidity", f=lambda i: 50.0 + i))
    r = get_data(
        client,
        token,
        start_time="2024-01-01T01:02:00+01:00",
        end_time="2024-01-01T00:05:00Z",
        attribute=["humidity", "temperature"],
    )
    body = r.json()
    assert body["start_time"] == "2024-01-01T00:02:00Z"
    assert body["timestamps"] == [f"2024-01-01T00:0{i}:00Z" for i in range(2, 5)]
    assert list(body["attributes"]) == ["humidity", "temperature"]
    assert body["attributes"]["humidity"] == [52.0, 53.0, 54.0]


def test_arrow_and_csv(client: TestClient, world: World) -> None:
    token = setup_org(world)
    post(client, token, DEV, [*minutes(3), {"timestamp": z(T0 + timedelta(minutes=1)), "data": {"rh": 7}}])
    r = client.get(
        f"/api/timeseries/v2/entities/{DEV}/data",
        params={"start_time": z(T0), "end_time": z(T0 + timedelta(hours=1))},
        headers={**bearer(token), "Accept": ARROW},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith(ARROW)
    tbl = pa.ipc.open_stream(r.content).read_all()
    assert tbl.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert tbl.column_names == ["timestamp", "rh", "temperature"]
    assert tbl["temperature"].to_pylist() == [0.0, 1.0, 2.0]
    assert tbl["rh"].to_pylist() == [None, 7.0, None]
    r = get_data(client, token, end_time=z(T0 + timedelta(hours=1)), format="csv")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["timestamp", "rh", "temperature"]
    assert rows[2] == ["2024-01-01T00:01:00Z", "7", "1"]
    assert rows[1][1] == ""


def test_query_aligned_axis_keyed_by_name_with_fill(client: TestClient, world: World) -> None:
    token = setup_org(world, devices=(DEV, "urn:ngsi-ld:Device:d2"))
    post(client, token, DEV, minutes(4))
    post(
        client,
        token,
        "urn:ngsi-ld:Device:d2",
        [
            {"timestamp": z(T0 + timedelta(minutes=1)), "data": {"rh": 5}},
            {"timestamp": z(T0 + timedelta(minutes=3)), "data": {"rh": 6}},
        ],
    )
    body = {
        "start_time": z(T0),
        "end_time": z(T0 + timedelta(hours=1)),
        "resolution": 100,
        "series": [
            {"entity_id": "urn:ngsi-ld:Device:d2", "attribute": "rh"},
            {"entity_id": DEV, "attribute": "temperature", "aggregation": "max"},
        ],
    }
    r = client.post("/api/timeseries/v2/query", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["bucket_seconds"] is None and len(out["timestamps"]) == 4
    assert out["series"]["urn:ngsi-ld:Device:d2.rh"]["values"] == [None, 5.0, None, 6.0]
    assert out["series"][f"{DEV}.temperature"]["values"] == [0.0, 1.0, 2.0, 3.0]
    out = client.post(
        "/api/timeseries/v2/query", json={**body, "fill": "previous"}, headers=bearer(token)
    ).json()
    assert out["series"]["urn:ngsi-ld:Device:d2.rh"]["values"] == [None, 5.0, 5.0, 6.0]
    out = client.post(
        "/api/timeseries/v2/query", json={**body, "resolution": 1}, headers=bearer(token)
    ).json()
    assert out["bucket_seconds"] == 3600
    assert out["series"][f"{DEV}.temperature"] == {
        "entity_id": DEV,
        "attribute": "temperature",
        "unit": None,
        "aggregation": "max",
        "values": [3.0],
    }
    r = client.post("/api/timeseries/v2/query", json=body, headers={**bearer(token), "Accept": ARROW})
    assert pa.ipc.open_stream(r.content).read_all().column_names == [
        "timestamp",
        "urn:ngsi-ld:Device:d2.rh",
        f"{DEV}.temperature",
    ]
    bad = {**body, "series": [{"entity_id": DEV, "attribute": "nope"}]}
    r = client.post("/api/timeseries/v2/query", json=bad, headers=bearer(token))
    assert r.status_code == 404 and "'nope'" in r.json()["message"]


# --- clamping to access windows ------------------------------------------------------------------------


def test_time_window_grant_clamps_every_read(client: TestClient, world: World) -> None:
    admin = setup_org(world)
    post(client, admin, DEV, minutes(60))
    world.user("r@acme.test", "acme", "member", grant_org=False)
    ws, we = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    world.grant("r@acme.test", "acme", time_start=ws, time_end=we)
    token = world.pat("r@acme.test", ["timeseries", "telemetry"])
    body = get_data(client, token, resolution=1000).json()
    assert body["timestamps"][0] == z(ws)  # time_start included
    assert body["timestamps"][-1] == z(we - timedelta(minutes=1))  # time_end excluded
    assert len(body["timestamps"]) == 10
    agg = get_data(client, token, resolution=1, aggregation="count").json()
    assert agg["attributes"]["temperature"] == [10.0]
    rows = client.get("/api/data", headers=bearer(token)).json()
    assert [r["time"] for r in rows] == [z(ws + timedelta(minutes=i)) for i in range(10)]
    dev = client.get(f"/api/devices/{DEV}", headers=bearer(token)).json()
    assert dev["attributes"]["temperature"] == {
        "value": 19.0,
        "unit": None,
        "observedAt": z(we - timedelta(minutes=1)),
    }
    recent = client.get("/api/data/recent", params={"limit": 3}, headers=bearer(token)).json()
    assert [r["value"] for r in recent] == [19.0, 18.0, 17.0]
    q = {
        "start_time": z(T0),
        "end_time": z(T0 + timedelta(hours=1)),
        "resolution": 1000,
        "fill": "previous",
        "series": [{"entity_id": DEV, "attribute": "temperature"}],
    }
    out = client.post("/api/timeseries/v2/query", json=q, headers=bearer(token)).json()
    assert out["timestamps"][0] == z(ws) and len(out["timestamps"]) == 10


# --- LEAF ----------------------------------------------------------------------------------------------


def test_leaf_data_paging_with_cursor(client: TestClient, world: World) -> None:
    token = setup_org(world, devices=("R2", "R1"))
    for d in ("R2", "R1"):
        post(
            client,
            token,
            d,
            [
                {"timestamp": z(T0 + timedelta(minutes=i)), "data": {"temperature": i, "humidity": -i}}
                for i in range(15)
            ],
        )
    seen: list[tuple[str, str, str]] = []
    url: str | None = "/api/data?organisation=Acme&department=main&limit=7&from=2024-01-01"
    pages = 0
    while url:
        r = client.get(url, headers=bearer(token))
        assert r.status_code == 200, r.text
        rows = r.json()
        assert len(rows) <= 7
        seen += [(x["time"], x["entity"], x["metric"]) for x in rows]
        link = r.headers.get("link")
        url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None  # type: ignore[union-attr]
        pages += 1
    assert pages == 9  # 60 rows / 7 per page
    assert len(seen) == 60 and seen == sorted(seen) and len(set(seen)) == 60
    assert seen[:4] == [
        ("2024-01-01T00:00:00Z", "R1", "humidity"),
        ("2024-01-01T00:00:00Z", "R1", "temperature"),
        ("2024-01-01T00:00:00Z", "R2", "humidity"),
        ("2024-01-01T00:00:00Z", "R2", "temperature"),
    ]
    rows = client.get(
        "/api/data",
        params={
            "entity": "R1",
            "metric": "temperature",
            "from": z(T0 + timedelta(minutes=3)),
            "to": z(T0 + timedelta(minutes=5)),
        },
        headers=bearer(token),
    ).json()
    assert rows == [
        {
            "time": "2024-01-01T00:03:00Z",
            "entity": "R1",
            "metric": "temperature",
            "value": 3.0,
            "tags": {"unit": None, "organisation": "acme", "department": "main"},
        },
        {
            "time": "2024-01-01T00:04:00Z",
            "entity": "R1",
            "metric": "temperature",
            "value": 4.0,
            "tags": {"unit": None, "organisation": "acme", "department": "main"},
        },
    ]
    assert client.get("/api/data", params={"limit": 10_001}, headers=bearer(token)).status_code == 400
    assert client.get("/api/data", params={"cursor": "garbage!"}, headers=bearer(token)).status_code == 400
    recent = client.get("/api/data/recent", params={"limit": 2}, headers=bearer(token)).json()
    assert [(x["entity"], x["metric"], x["time"]) for x in recent] == [
        ("R1", "humidity", "2024-01-01T00:14:00Z"),
        ("R1", "temperature", "2024-01-01T00:14:00Z"),
    ]
    assert client.get("/api/data/recent", params={"limit": 10_001}, headers=bearer(token)).status_code == 400


# --- tenancy -------------------------------------------------------------------------------------------


def test_cross_tenant_isolation(client: TestClient, world: World) -> None:
    token_a = setup_org(world, "alpha", "a@alpha.test", devices=("urn:a:1",))
    token_b = setup_org(world, "beta", "b@beta.test", devices=("urn:b:1",))
    post(client, token_a, "urn:a:1", minutes(5))
    post(client, token_b, "urn:b:1", minutes(5, key="secret"))
    assert get_data(client, token_a, "urn:b:1").status_code == 404
    assert post(client, token_a, "urn:b:1", {"data": {"x": 1}}).status_code == 404
    assert client.get("/api/devices/urn:b:1", headers=bearer(token_a)).status_code == 404
    assert client.get("/api/sensors/urn:b:1.secret", headers=bearer(token_a)).status_code == 404
    q = {
        "start_time": z(T0),
        "end_time": z(T0 + timedelta(hours=1)),
        "series": [{"entity_id": "urn:b:1", "attribute": "secret"}],
    }
    assert client.post("/api/timeseries/v2/query", json=q, headers=bearer(token_a)).status_code == 404
    assert {x["id"] for x in client.get("/api/devices", headers=bearer(token_a)).json()} == {"urn:a:1"}
    assert {x["entity_id"] for x in client.get("/api/sensors", headers=bearer(token_a)).json()} == {"urn:a:1"}
    assert {x["entity"] for x in client.get("/api/data", headers=bearer(token_a)).json()} == {"urn:a:1"}
    assert {x["entity"] for x in client.get("/api/data/recent", headers=bearer(token_a)).json()} == {
        "urn:a:1"
    }
    r = client.get("/api/data", params={"organisation": "beta"}, headers=bearer(token_a))
    assert r.status_code == 404
    # The unknown and the invisible look the same.
    assert get_data(client, token_a, "urn:b:1").json()["message"] == get_data(
        client, token_a, "urn:zzz"
    ).json()["message"].replace("urn:zzz", "urn:b:1")


def test_devices_paging_and_type_filter(client: TestClient, world: World) -> None:
    token = setup_org(world, devices=("d1", "d2", "d3"))
    world.entity("acme", "main", "w1", type_="Weather")
    world.entity("acme", "main", "idle")  # no series: not a device with telemetry
    for d in ("d1", "d2", "d3", "w1"):
        post(client, token, d, {"timestamp": z(T0), "data": {"v": 1}})
    all_ = client.get("/api/devices", headers=bearer(token)).json()
    assert [x["id"] for x in all_] == ["d1", "d2", "d3", "w1"]
    assert all_[0] == {
        "id": "d1",
        "type": "Device",
        "name": "d1",
        "workspace": "main",
        "attributes": {"v": {"value": 1.0, "unit": None, "observedAt": z(T0)}},
    }
    page = client.get("/api/devices", params={"limit": 2, "offset": 1}, headers=bearer(token)).json()
    assert [x["id"] for x in page] == ["d2", "d3"]
    assert [
        x["id"] for x in client.get("/api/devices", params={"type": "Weather"}, headers=bearer(token)).json()
    ] == ["w1"]
    assert client.get("/api/devices", params={"limit": 0}, headers=bearer(token)).status_code == 400


def test_backfill_timestamps_with_offsets_or_without_zone(client: TestClient, world: World) -> None:
    token = setup_org(world)
    r = post(
        client,
        token,
        DEV,
        [
            {"timestamp": "2024-01-01T01:00:00+01:00", "data": {"t": 1}},  # = 00:00Z
            {"timestamp": "2024-01-01T00:01:00", "data": {"t": 2}},  # no zone: UTC
            {"timestamp": "2024-01-01T00:02:00.250Z", "data": {"t": 3}},
        ],
    )
    assert r.json() == {"accepted": 3, "duplicates": 0}
    body = get_data(client, token).json()
    assert body["timestamps"] == [
        "2024-01-01T00:00:00.000Z",
        "2024-01-01T00:01:00.000Z",
        "2024-01-01T00:02:00.250Z",
    ]


def test_leaf_data_with_a_series_that_has_no_points_yet(client: TestClient, world: World) -> None:
    token = setup_org(world, devices=(DEV, "urn:empty"))
    post(client, token, DEV, minutes(3))
    from sensorhub.entities.models import Entity
    from sensorhub.timeseries.service import get_or_create_series

    with world.ctx.db.transaction() as s:
        e = s.query(Entity).filter_by(entity_id="urn:empty").one()
        get_or_create_series(s, e, "nothing", None)  # e.g. created by an importer, no points yet
    rows = client.get("/api/data", headers=bearer(token)).json()
    assert [r["value"] for r in rows] == [0.0, 1.0, 2.0]
    assert [r["entity"] for r in client.get("/api/data/recent", headers=bearer(token)).json()] == [DEV] * 3
    sensors = {x["id"]: x["value"] for x in client.get("/api/sensors", headers=bearer(token)).json()}
    assert sensors == {f"{DEV}.temperature": 2.0, "urn:empty.nothing": None}
