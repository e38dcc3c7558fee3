"""Gateways (many devices per request, all or nothing, errors by index) and corrections (overwrite,
range delete) on both backends; rollups stay exactly what a recomputation from the raw points gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from sensorhub.timeseries.models import ROLLUP_LEVELS
from sensorhub.timeseries.rollups import rollup_delta
from tests.builders import World, bearer, login

A = "urn:ngsi-ld:Device:gw-a"
B = "urn:ngsi-ld:Device:gw-b"
T0 = datetime(2025, 6, 1, tzinfo=UTC)


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def setup(world: World) -> str:
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    for d in (A, B):
        world.entity("acme", "main", d)
    return world.pat("a@acme.test")


def values(client: TestClient, token: str, device: str, **params: Any) -> list[float]:
    params.setdefault("start_time", z(T0 - timedelta(days=2)))
    params.setdefault("end_time", z(T0 + timedelta(days=3)))
    r = client.get(f"/api/timeseries/v2/entities/{device}/data", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    return list(r.json()["attributes"].get("t", []))


def test_gateway_writes_many_devices_all_or_nothing(client: TestClient, world: World) -> None:
    token = setup(world)
    good = [
        {"device": A, "timestamp": z(T0), "data": {"t": 1.0}},
        {"device": B, "timestamp": z(T0), "topic": "env", "data": {"t": 2.0}},
        {"device": A, "timestamp": z(T0 + timedelta(minutes=1)), "data": {"t": 3.0}},
    ]
    bad = [
        *good,
        {"device": B, "timestamp": "yesterday", "data": {"t": 4.0}},
        {"timestamp": z(T0), "data": {"t": 5.0}},
        {"device": A, "data": {"t": float("nan")}},
    ]
    r = client.post("/api/gateway/ingest", content=json.dumps(bad), headers=bearer(token))
    assert r.status_code == 400, r.text
    body = r.json()
    assert [e["index"] for e in body["errors"]] == [3, 4, 5]
    assert "timestamp" in body["errors"][0]["message"] and "device" in body["errors"][1]["message"]
    assert "NaN" in body["errors"][2]["message"]
    assert body["message"].startswith("3 of 6 records refused, nothing stored")
    assert values(client, token, A) == [] and values(client, token, B, topic="env") == []
    # An unknown device refuses each of its records, by index.
    r = client.post(
        "/api/gateway/ingest",
        json=[*good, {"device": "urn:ngsi-ld:Device:nope", "data": {"t": 1}}],
        headers=bearer(token),
    )
    assert r.status_code == 404 and [e["index"] for e in r.json()["errors"]] == [3]
    r = client.post("/api/gateway/ingest", json=good, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0, "devices": 2}
    assert values(client, token, A) == [1.0, 3.0]
    assert values(client, token, B) == [] and values(client, token, B, topic="env") == [2.0]
    r = client.post("/api/gateway/ingest", json={"device": A, "data": {"t": 1}}, headers=bearer(token))
    assert r.status_code == 400 and "list" in r.json()["message"]


def _stored(world: World, device: str) -> tuple[np.ndarray, np.ndarray, dict[str, list[tuple[Any, ...]]]]:
    """Raw points and every rollup row of the device's series ``t``."""
    with world.ctx.db.session() as s:
        conn = s.connection()
        sid = conn.exec_driver_sql(
            "SELECT s.id FROM series s JOIN entities e ON e.pk = s.entity_pk "
            f"WHERE e.entity_id = '{device}' AND s.attribute = 't'"
        ).scalar_one()
        raw = conn.exec_driver_sql(
            f"SELECT ts, value FROM measurements WHERE series_id = {sid} ORDER BY ts"
        ).all()
        rollups = {
            table: [
                tuple(r)
                for r in conn.exec_driver_sql(
                    f'SELECT bucket_start, "count", "sum", "min", "max", first_ts, "first", last_ts, "last", sumsq '
                    f"FROM {table} WHERE series_id = {sid} ORDER BY bucket_start"
                )
            ]
            for _w, table in ROLLUP_LEVELS
        }
        last = conn.exec_driver_sql(f"SELECT last_ts, last_value FROM series WHERE id = {sid}").one()
    ts = np.array([r[0] for r in raw], np.int64)
    vals = np.array([r[1] for r in raw], np.float64)
    rollups["last"] = [tuple(last)]
    return ts, vals, rollups


def assert_rollups_exact(world: World, device: str) -> None:
    ts, vals, rollups = _stored(world, device)
    for width, table in ROLLUP_LEVELS:
        d = rollup_delta(ts, vals, width)
        want = [tuple(row) for row in zip(*(a.tolist() for a in d.arrays()), strict=True)]
        got = rollups[table]
        assert len(got) == len(want), table
        for g, w in zip(got, want, strict=True):
            assert g[:2] == w[:2] and g[5] == w[5] and g[7] == w[7], (table, g, w)
            assert np.allclose((*g[2:5], g[6], g[8], g[9]), (*w[2:5], w[6], w[8], w[9])), (table, g, w)
    expect_last = [(int(ts[-1]), float(vals[-1]))] if len(ts) else [(None, None)]
    assert rollups["last"] == expect_last


def test_overwrite_and_range_delete_keep_rollups_exact(client: TestClient, world: World) -> None:
    token = setup(world)
    # Three days of 10-minute points, so that minute, hour and day buckets all get touched.
    body = [{"timestamp": z(T0 + timedelta(minutes=10 * i)), "data": {"t": float(i)}} for i in range(3 * 144)]
    assert client.post(f"/v3/devices/{A}/backfill", json=body, headers=bearer(token)).status_code == 200
    # Default: first write wins, and the answer says so.
    fix = [
        {"timestamp": z(T0 + timedelta(minutes=10 * i)), "data": {"t": -100.0 - i}} for i in (0, 7, 200, 431)
    ]
    r = client.post(f"/v3/devices/{A}/backfill", json=fix, headers=bearer(token))
    assert r.json() == {"accepted": 0, "duplicates": 4} and r.headers["X-Sensorhub-On-Conflict"] == "ignore"
    # Overwrite: the new values replace the stored ones (a new point lands too); min, max, first and
    # last of every touched bucket are recomputed.
    fix.append({"timestamp": z(T0 + timedelta(days=5)), "data": {"t": 7.5}})
    r = client.post(f"/v3/devices/{A}/backfill?on_conflict=overwrite", json=fix, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0, "overwritten": 4}
    ts, vals, _ = _stored(world, A)
    assert vals[0] == -100.0 and vals[431] == -531.0 and len(ts) == 3 * 144 + 1
    assert_rollups_exact(world, A)
    r = client.get(
        f"/api/timeseries/v2/entities/{A}/data",
        params={
            "start_time": z(T0),
            "end_time": z(T0 + timedelta(days=3)),
            "resolution": 3,
            "aggregation": "min",
        },
        headers=bearer(token),
    )
    assert r.json()["attributes"]["t"][0] == -107.0  # the day rollup saw the overwrite
    r = client.post(f"/v3/devices/{A}/backfill?on_conflict=replace", json=fix, headers=bearer(token))
    assert r.status_code == 400 and "on_conflict" in r.json()["message"]

    # Range delete: a session of an owner/admin, audited; edges cut through hour and day buckets.
    params = {
        "attribute": "t",
        "start_time": z(T0 + timedelta(hours=5, minutes=30)),
        "end_time": z(T0 + timedelta(days=5, minutes=1)),
    }
    url = f"/api/orgs/acme/entities/{A}/data"
    r = client.delete(url, params=params, headers=bearer(token))
    assert r.status_code == 403, r.text  # a token never deletes data
    world.user("owner@acme.test", "acme", "owner")
    csrf = login(client, "owner@acme.test")
    r = client.delete(url, params=params, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == 3 * 144 - 33 + 1
    ts, vals, _ = _stored(world, A)
    assert len(ts) == 33 and vals[-1] == 32.0
    assert_rollups_exact(world, A)
    events = client.get("/api/orgs/acme/audit-events", headers={"X-CSRF-Token": csrf}).json()
    assert [e["details"]["deleted"] for e in events if e["action"] == "timeseries.delete_range"] == [400]
