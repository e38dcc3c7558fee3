"""Akenza's topic kept and read back through Akenza's device data API, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from sensorhub.timeseries.rollups import aggregate_points
from tests.builders import World, bearer

DEV = "urn:ngsi-ld:Device:ak-1"
T0 = datetime(2025, 9, 1, tzinfo=UTC)


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_topics_round_trip_through_the_device_data_api(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    world.entity("acme", "main", DEV)
    h = bearer(world.pat("a@acme.test"))
    env = [
        {
            "timestamp": z(T0 + timedelta(minutes=7 * i)),
            "topic": "env",
            "data": {"temperature": 20 + i % 5, "rh": i},
        }
        for i in range(300)
    ]
    default = [{"timestamp": z(T0 + timedelta(minutes=i)), "data": {"temperature": -1.0}} for i in range(3)]
    for body in (env, default):
        assert client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=h).status_code == 200
    # The same attribute on two topics: two series; the other families read the default topic.
    r = client.get(f"/api/sensors/{DEV}.temperature", headers=h)
    assert r.json()["value"] == -1.0
    assert client.get(f"/v3/devices/{DEV}/query/topics", headers=h).json() == ["default", "env"]

    url = f"/v3/devices/{DEV}/query"
    r = client.post(url, json={"topic": "env", "limit": 2}, headers=h)
    assert r.status_code == 200, r.text
    newest = r.json()
    assert [x["timestamp"] for x in newest] == [
        z(T0 + timedelta(minutes=7 * 299)),
        z(T0 + timedelta(minutes=7 * 298)),
    ]
    assert newest[0] == {
        "deviceId": DEV,
        "akenzaDeviceId": DEV,
        "topic": "env",
        "timestamp": z(T0 + timedelta(minutes=7 * 299)),
        "data": {"rh": 299.0, "temperature": 24.0},
    }
    window = {"gte": z(T0 + timedelta(minutes=7)), "lt": z(T0 + timedelta(minutes=7 * 10))}
    r = client.post(
        url, json={"topic": "env", "timestamp": window, "skip": 2, "limit": 3, "sort": "ASC"}, headers=h
    )
    assert [x["data"]["rh"] for x in r.json()] == [3.0, 4.0, 5.0]
    r = client.post(url, json={"timestamp": {"gt": z(T0)}}, headers=h)
    assert [x["data"] for x in r.json()] == [{"temperature": -1.0}] * 2
    r = client.post(url, json={"topic": "env", "limit": 0}, headers=h)
    assert r.status_code == 400 and "limit" in r.json()["message"]
    r = client.post(url, json={"topic": "env", "order": "ASC"}, headers=h)
    assert r.status_code == 400 and "order" in r.json()["message"]

    r = client.get(f"/v3/devices/{DEV}/query/latest-sample", headers=h)
    assert r.json()["topic"] == "env" and r.json()["data"] == {"rh": 299.0, "temperature": 24.0}
    r = client.get(f"/v3/devices/{DEV}/query/latest-sample", params={"topic": "default"}, headers=h)
    assert r.json()["timestamp"] == z(T0 + timedelta(minutes=2)) and r.json()["data"] == {"temperature": -1.0}
    r = client.get(f"/v3/devices/{DEV}/query/latest-sample", params={"topic": "nope"}, headers=h)
    assert r.status_code == 404

    # Aggregates: exactly what the raw points give.
    ts = np.array([int((T0 + timedelta(minutes=7 * i)).timestamp() * 1e6) for i in range(300)], np.int64)
    vals = np.array([20.0 + i % 5 for i in range(300)])
    interval = {"from": z(T0 + timedelta(minutes=30)), "to": z(T0 + timedelta(hours=30))}
    inside = (ts >= ts[0] + 30 * 60_000_000) & (ts < ts[0] + 30 * 3_600_000_000)
    for acc, agg in (
        ("AVG", "avg"),
        ("MIN", "min"),
        ("MAX", "max"),
        ("SUM", "sum"),
        ("COUNT", "count"),
        ("FIRST", "first"),
        ("LAST", "last"),
    ):
        body: dict[str, Any] = {
            "topic": "env",
            "dataKey": "temperature",
            "accumulator": acc,
            "interval": interval,
            "bucketInterval": "PT2H",
        }
        r = client.post(f"/v3/devices/{DEV}/query/aggregated/hourly/time-series", json=body, headers=h)
        assert r.status_code == 200, r.text
        want_ts, want = aggregate_points(ts[inside], vals[inside], 2 * 3_600_000_000, agg)
        assert r.json()["dataPoints"] == want.tolist(), acc
        assert len(r.json()["timestamps"]) == len(want_ts)
        r = client.post(f"/v3/devices/{DEV}/query/raw/kpi", json=body, headers=h)
        kpi = aggregate_points(ts[inside], vals[inside], 10**15, agg)[1][0]
        assert abs(r.json()["kpi"] - kpi) < 1e-9, acc
        assert r.json() == {"deviceId": DEV, "topic": "env", "dataKey": "temperature", "kpi": r.json()["kpi"]}
    body["accumulator"] = "MATCHED_COUNT"
    r = client.post(f"/v3/devices/{DEV}/query/raw/kpi", json=body, headers=h)
    assert r.status_code == 400 and "MATCHED_COUNT" in r.json()["message"]
    body.update(accumulator="MAX", bucketInterval="PT15M")
    r = client.post(f"/v3/devices/{DEV}/query/aggregated/hourly/time-series", json=body, headers=h)
    assert r.status_code == 400 and "whole hours" in r.json()["message"]
    r = client.post(f"/v3/devices/{DEV}/query/raw/time-series", json=body, headers=h)
    assert r.status_code == 200 and max(r.json()["dataPoints"]) == 24.0
