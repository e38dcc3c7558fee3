"""Hostile input on the time-series routes (issue 10): out-of-range timestamps, oversized ingests, lock
timeouts and unbounded integers each get a 4xx/503 naming what to change, never a 500, never a partial
write."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from sensorhub.config import Settings
from tests.builders import World, bearer
from tests.timeseries.test_api import DEV, T0, get_data, post, setup_org, z


def stored_points(world: World) -> int:
    with world.ctx.db.session() as s:
        return int(s.execute(text("SELECT count(*) FROM measurements")).scalar_one())


def series_count(world: World) -> int:
    with world.ctx.db.session() as s:
        return int(s.execute(text("SELECT count(*) FROM series")).scalar_one())


# --- #6: the supported time range -------------------------------------------------------------------


def test_points_at_the_edges_of_the_time_range_are_stored_and_read(client: TestClient, world: World) -> None:
    token = setup_org(world)
    first, last = "1900-01-01T00:00:00Z", "2199-12-31T23:59:59.999999Z"
    r = post(
        client, token, DEV, [{"timestamp": first, "data": {"t": 1}}, {"timestamp": last, "data": {"t": 2}}]
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0}
    body = get_data(client, token, start_time="1900-01-01", end_time="2200-01-01T00:00:00Z").json()
    assert body["timestamps"] == ["1900-01-01T00:00:00.000000Z", last]  # one precision per response
    # Downsampled over the whole range (7-day multiples): bucket arithmetic stays inside int64.
    agg = get_data(client, token, start_time="1900-01-01", end_time="2200-01-01", resolution=1).json()
    assert agg["bucket_seconds"] is not None and agg["attributes"]["t"] == [1.0, 2.0]
    for route in ("/api/devices", "/api/sensors", "/api/data/recent", "/api/data"):
        assert client.get(route, headers=bearer(token)).status_code == 200, route
    r = client.get("/api/data", params={"from": "1900-01-01", "to": "2200-01-01"}, headers=bearer(token))
    assert [row["time"] for row in r.json()] == ["1900-01-01T00:00:00.000000Z", last]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("start_time", "1899-12-31T23:59:59.999999Z"),
        ("end_time", "2200-01-01T00:00:00.000001Z"),
        ("end_time", "9999-12-31T23:59:59.999999Z"),
        ("start_time", "0001-01-01T00:00:00+01:00"),
    ],
)
def test_read_bounds_outside_the_time_range_are_400_naming_them(
    client: TestClient, world: World, param: str, value: str
) -> None:
    token = setup_org(world)
    r = get_data(client, token, **{param: value})
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(f"{param} '{value}' is outside the supported time range")
    body = {"start_time": z(T0), "end_time": z(T0), "series": [{"entity_id": DEV, "attribute": "t"}]}
    r = client.post("/api/timeseries/v2/query", json={**body, param: value}, headers=bearer(token))
    assert r.status_code == 400 and param in r.json()["message"], r.text
    leaf_param = "from" if param == "start_time" else "to"
    r = client.get("/api/data", params={leaf_param: value}, headers=bearer(token))
    assert r.status_code == 400 and r.json()["message"].startswith(f"{leaf_param} '"), r.text


def test_out_of_range_point_in_a_valid_bulk_stores_nothing(client: TestClient, world: World) -> None:
    token = setup_org(world)
    records = [
        {"timestamp": z(T0), "data": {"t": 1}},
        {"timestamp": "9999-12-31T23:59:59.999999Z", "data": {"t": 2}},
    ]
    r = post(client, token, DEV, records)
    assert r.status_code == 400
    assert r.json()["message"].startswith("record 1: timestamp 9999-12-31T23:59:59.999999Z is outside")
    assert stored_points(world) == 0 and series_count(world) == 0


# --- #7: what one request may create ----------------------------------------------------------------


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lower ingest limits (read from the environment when the app's settings are built)."""
    monkeypatch.setenv("SENSORHUB_INGEST_MAX_RECORDS", "50")
    monkeypatch.setenv("SENSORHUB_INGEST_MAX_ATTRIBUTES", "8")
    monkeypatch.setenv("SENSORHUB_INGEST_MAX_NEW_SERIES", "4")
    monkeypatch.setenv("SENSORHUB_INGEST_MAX_BODY_BYTES", "20000")


def test_defaults_of_the_ingest_limits() -> None:
    s = Settings()
    assert (s.ingest_max_records, s.ingest_max_attributes, s.ingest_max_new_series) == (100_000, 500, 100)
    assert s.ingest_max_body_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        ([{"timestamp": z(T0), "data": {"t": i}} for i in range(51)], "SENSORHUB_INGEST_MAX_RECORDS"),
        ([{"data": {f"k{i}": 1 for i in range(9)}}], "SENSORHUB_INGEST_MAX_ATTRIBUTES"),
        ([{"data": {f"k{i}": "text" for i in range(9)}}], "SENSORHUB_INGEST_MAX_ATTRIBUTES"),
        ([{"data": {f"k{i}": 1}} for i in range(9)], "SENSORHUB_INGEST_MAX_ATTRIBUTES"),
        ([{"data": {f"k{i}": 1 for i in range(5)}}], "SENSORHUB_INGEST_MAX_NEW_SERIES"),
        ([{"data": {"t": 1, "note": "x" * 25_000}}], "SENSORHUB_INGEST_MAX_BODY_BYTES"),
    ],
)
def test_an_oversized_backfill_is_413_naming_the_limit_and_stores_nothing(
    small_limits: None, client: TestClient, world: World, body: Any, setting: str
) -> None:
    token = setup_org(world)
    r = post(client, token, DEV, body)
    assert r.status_code == 413, r.text
    assert setting in r.json()["message"]
    assert stored_points(world) == 0 and series_count(world) == 0
    assert client.get(f"/api/devices/{DEV}", headers=bearer(token)).json()["attributes"] == {}


def test_the_reviewers_25000_key_backfill_is_refused_at_once(client: TestClient, world: World) -> None:
    """The request that held the write lock for 73 s: now a 413 before any transaction is opened."""
    token = setup_org(world)
    started = time.monotonic()
    r = post(client, token, DEV, {"timestamp": z(T0), "data": {f"k{i}": i for i in range(25_000)}})
    assert r.status_code == 413 and "SENSORHUB_INGEST_MAX_ATTRIBUTES" in r.json()["message"]
    assert time.monotonic() - started < 5
    assert series_count(world) == 0


def test_a_backfill_spread_over_centuries_is_413_and_stores_nothing(client: TestClient, world: World) -> None:
    """One month is one PostgreSQL partition: 1900-2199 in one request would create 3,600 tables."""
    token = setup_org(world)
    spread = [
        {"timestamp": f"{1900 + i // 12}-{1 + i % 12:02d}-01T00:00:00Z", "data": {"t": 1}} for i in range(601)
    ]
    r = post(client, token, DEV, spread)
    assert r.status_code == 413 and "SENSORHUB_INGEST_MAX_MONTHS" in r.json()["message"], r.text
    assert stored_points(world) == 0 and series_count(world) == 0
    assert post(client, token, DEV, spread[:600]).status_code == 200


def test_new_series_limit_counts_only_new_ones(small_limits: None, client: TestClient, world: World) -> None:
    token = setup_org(world)
    assert post(client, token, DEV, {"data": {f"k{i}": 1 for i in range(4)}}).status_code == 200
    # 4 existing + 4 new: within both limits.
    r = post(client, token, DEV, {"data": {f"k{i}": 2 for i in range(8)}})
    assert r.status_code == 200, r.text
    assert series_count(world) == 8


def test_a_chunked_body_over_the_limit_is_413(small_limits: None, client: TestClient, world: World) -> None:
    token = setup_org(world)

    def chunks() -> Iterator[bytes]:
        yield b'[{"data":{"t":1}}'
        for _ in range(2000):
            yield b',{"data":{"t":1}}'
        yield b"]"

    r = client.post(
        f"/v3/devices/{DEV}/backfill",
        content=chunks(),
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "SENSORHUB_INGEST_MAX_BODY_BYTES" in r.json()["message"]
    assert stored_points(world) == 0


# --- #7: a lock wait that times out is 503 + Retry-After -----------------------------------------


@pytest.fixture
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENSORHUB_DB_LOCK_TIMEOUT_SECONDS", "0.3")


@pytest.fixture
def held_lock(short_lock_timeout: None, settings: Settings, world: World) -> Iterator[Any]:
    """Another process's write in progress: on SQLite a connection holding the write lock (BEGIN
    IMMEDIATE), on PostgreSQL one holding every series row and the entities table locked.
    Yields a function that takes the lock (after the test's setup wrote what it needs)."""
    held: list[Any] = []

    def take() -> None:
        if settings.resolved_database_url.startswith("sqlite"):
            con = sqlite3.connect(settings.data_dir / "sensorhub.db", isolation_level=None)
            con.execute("BEGIN IMMEDIATE")
            held.append(con)
        else:
            eng = create_engine(settings.resolved_database_url)
            conn = eng.connect()
            conn.execute(text("SELECT id FROM series FOR UPDATE"))
            conn.execute(text("LOCK TABLE entities IN EXCLUSIVE MODE"))
            held.append((eng, conn))

    yield take
    for h in held:
        if isinstance(h, sqlite3.Connection):
            h.rollback()
            h.close()
        else:
            eng, conn = h
            conn.rollback()
            conn.close()
            eng.dispose()


def test_backfill_while_another_writer_holds_the_lock_is_503_with_retry_after(
    held_lock: Any, client: TestClient, world: World
) -> None:
    token = setup_org(world)
    assert post(client, token, DEV, {"timestamp": z(T0), "data": {"t": 1}}).status_code == 200
    held_lock()
    started = time.monotonic()
    r = post(client, token, DEV, {"timestamp": z(T0.replace(hour=1)), "data": {"t": 2}})
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1"
    assert "busy" in r.json()["message"] and r.json()["status"] == 503
    assert time.monotonic() - started < 5
    assert stored_points(world) == 1


# --- #9: integers beyond what the database can bind --------------------------------------------------

HUGE = [str(2**63), "1e30", "9" * 400]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    ("route", "param"),
    [
        ("/api/devices", "offset"),
        ("/api/devices", "limit"),
        ("/api/sensors", "offset"),
        ("/api/sensors", "limit"),
        ("/api/data/recent", "limit"),
        ("/api/data", "limit"),
        (f"/api/timeseries/v2/entities/{DEV}/data", "resolution"),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"])  # the parameter check runs before any query
def test_unbindable_integers_are_400_naming_the_parameter(
    client: TestClient, world: World, route: str, param: str, value: str
) -> None:
    token = setup_org(world)
    params = {param: value}
    if "timeseries" in route:
        params |= {"start_time": z(T0), "end_time": z(T0.replace(hour=1))}
    r = client.get(route, params=params, headers=bearer(token))
    assert r.status_code == 400, r.text
    assert f"query parameter '{param}'" in r.json()["message"]


def test_offsets_at_the_bound_still_answer(client: TestClient, world: World) -> None:
    token = setup_org(world)
    assert post(client, token, DEV, {"data": {"t": 1}}).status_code == 200
    for route in ("/api/devices", "/api/sensors"):
        r = client.get(route, params={"offset": 1_000_000, "limit": 1000}, headers=bearer(token))
        assert r.status_code == 200 and r.json() == [], r.text
        r = client.get(route, params={"offset": 1_000_001}, headers=bearer(token))
        assert r.status_code == 400 and "offset" in r.json()["message"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_query_sizes_are_bounded(client: TestClient, world: World) -> None:
    token = setup_org(world)
    window = {"start_time": z(T0), "end_time": z(T0.replace(hour=1))}
    r = get_data(client, token, attribute=[f"a{i}" for i in range(101)], **window)
    assert r.status_code == 400 and "at most 100 attribute parameters" in r.json()["message"]
    one = {"entity_id": DEV, "attribute": "t"}
    for body, what in (
        ({**window, "series": [one], "resolution": 2**63}, "resolution"),
        ({**window, "series": [one], "resolution": 0}, "resolution"),
        ({**window, "series": [one] * 101}, "series"),
        ({**window, "series": [{"entity_id": DEV, "attribute": "a" * 201}]}, "attribute"),
    ):
        r = client.post("/api/timeseries/v2/query", json=body, headers=bearer(token))
        assert r.status_code == 400 and what in r.json()["message"], r.text
    import base64

    cursor = base64.urlsafe_b64encode(f'[{2**70},"a","b"]'.encode()).decode()
    r = client.get("/api/data", params={"cursor": cursor}, headers=bearer(token))
    assert r.status_code == 400 and "cursor" in r.json()["message"]
