"""InfluxDB line protocol (``/api/v2/write``, ``/write``) on both backends: influxdb-client and
Telegraf-style bodies write unmodified, errors come in InfluxDB's shape with the line number, and a
refused request stores nothing."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorhub.timeseries import lineproto
from sensorhub.timeseries.ingest import Limits
from tests.builders import World, bearer

DEV = "urn:ngsi-ld:Device:lp-1"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def setup(world: World, devices: tuple[str, ...] = (DEV,), **pat: Any) -> str:
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    for d in devices:
        world.entity("acme", "main", d)
    return world.pat("a@acme.test", **pat)


def token_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def data(client: TestClient, token: str, device: str = DEV, **params: Any) -> dict[str, Any]:
    params.setdefault("start_time", z(T0 - timedelta(days=1)))
    params.setdefault("end_time", z(T0 + timedelta(days=1)))
    r = client.get(f"/api/timeseries/v2/entities/{device}/data", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    """The test's app behind a real HTTP server (uvicorn in a thread), for real client libraries. Its
    lifespan is the one the ``client`` fixture runs (tests use both), so uvicorn runs none."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def test_influxdb_client_writes_are_queryable_through_timeseries_v2(
    live: str, client: TestClient, world: World
) -> None:
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    token = setup(world)
    with InfluxDBClient(url=live, token=token, org="acme") as ic:
        w = ic.write_api(write_options=SYNCHRONOUS)
        points = [
            Point("weather")
            .tag("device", DEV)
            .field("temperature", 20.0 + i)
            .field("humidity", 40 + i)
            .time(T0 + timedelta(minutes=i), WritePrecision.S)
            for i in range(5)
        ]
        w.write(bucket="main", record=points, write_precision=WritePrecision.S)
        # Telegraf-style: the measurement alone for a field named "value", a string as a property.
        w.write(bucket="main", record=f'co2,device={DEV} value=415i,status="ok" {T0_NS}')
    body = data(client, token)
    assert body["timestamps"][:1] == [z(T0)]
    assert body["attributes"]["weather_temperature"] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert body["attributes"]["weather_humidity"] == [40.0, 41.0, 42.0, 43.0, 44.0]
    assert body["attributes"]["co2"][0] == 415.0
    r = client.get(f"/ngsi-ld/v1/entities/{DEV}", headers=bearer(token))
    assert r.json()["co2_status"]["value"] == "ok"


TELEGRAF = "\n".join(
    [
        "# Telegraf's cpu input: one series per cpu tag; host is the tag Telegraf adds to every metric",
        f"cpu,cpu=cpu0,host={DEV} usage_user=12.5,usage_idle=80 {T0_NS}",
        f"cpu,cpu=cpu1,host={DEV} usage_user=7.25,usage_idle=90 {T0_NS}",
        "",
        f"cpu,cpu=cpu0,host={DEV} usage_user=13.5,usage_idle=79 {T0_NS + 60_000_000_000}",
        f"mem,host={DEV} used_percent=41.5 {T0_NS}",
    ]
)


def test_telegraf_gzip_body_with_tags_as_topics(client: TestClient, world: World) -> None:
    token = setup(world)
    r = client.post(
        "/api/v2/write?org=acme&bucket=main",
        content=gzip.compress(TELEGRAF.encode()),
        headers={**token_header(token), "Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )
    assert r.status_code == 204, r.text
    assert r.headers["X-Sensorhub-Accepted"] == "7"
    assert r.headers["X-Sensorhub-On-Conflict"] == "ignore"
    # A line without other tags is on the default topic, which every family reads by default.
    assert data(client, token)["attributes"] == {"mem_used_percent": [41.5]}
    cpu0 = data(client, token, topic="cpu=cpu0")["attributes"]
    assert cpu0 == {"cpu_usage_idle": [80.0, 79.0], "cpu_usage_user": [12.5, 13.5]}
    assert data(client, token, topic="cpu=cpu1")["attributes"]["cpu_usage_user"] == [7.25]
    # The same body again: first write wins, and the answer says so.
    r = client.post("/api/v2/write?org=acme&bucket=main", content=TELEGRAF, headers=token_header(token))
    assert (r.status_code, r.headers["X-Sensorhub-Accepted"], r.headers["X-Sensorhub-Duplicates"]) == (
        204,
        "0",
        "7",
    )


def test_v1_write_with_db_and_precision(client: TestClient, world: World) -> None:
    token = setup(world)
    body = f"temperature,entity_id={DEV},topic=env value=21.5 {int(T0.timestamp())}"
    r = client.post("/write?db=main&precision=s", content=body, headers=token_header(token))
    assert r.status_code == 204, r.text
    assert data(client, token, topic="env")["attributes"] == {"temperature": [21.5]}
    r = client.post("/write?db=main&rp=week", content=body, headers=token_header(token))
    assert r.status_code == 400 and "retention policy" in r.json()["error"]


BAD_LINES = [
    (f"weather,device={DEV} temperature=", "Failed to parse"),
    ("weather temperature=1", "no tag names the device"),
    (f"weather,device={DEV} temp.c=1", "not a valid attribute name"),
    (f"weather,device={DEV} temperature=1 99999999999999999999", "timestamp"),
    ("weather,device=urn:ngsi-ld:Device:nope temperature=1", "not found"),
]


def test_a_bad_line_is_refused_with_its_number_and_nothing_is_stored(
    client: TestClient, world: World
) -> None:
    token = setup(world)
    good = f"weather,device={DEV} temperature=20 {T0_NS}"
    for line, expect in BAD_LINES:
        body = "\n".join(["# header", good, line, good.replace("=20 ", "=21 ")])
        r = client.post("/api/v2/write?org=acme&bucket=main", content=body, headers=token_header(token))
        assert r.status_code in (400, 404), r.text
        err = r.json()
        assert set(err) == {"code", "message"}
        assert err["code"] == ("not found" if r.status_code == 404 else "invalid")
        assert err["message"].startswith("line 3"), err
        assert expect in err["message"]
    assert data(client, token)["attributes"] == {}


def test_refusals_in_influxdb_shape(client: TestClient, world: World) -> None:
    read_only = setup(world, scopes=["timeseries"])
    line = f"weather,device={DEV} temperature=20"
    r = client.post("/api/v2/write?org=acme&bucket=main", content=line, headers=token_header(read_only))
    assert r.status_code == 403 and r.json()["code"] == "forbidden" and "ingest" in r.json()["message"]
    r = client.post("/api/v2/write?org=acme&bucket=main", content=line)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    token = world.pat("a@acme.test", name="writer")
    r = client.post("/api/v2/write?org=other&bucket=main", content=line, headers=token_header(token))
    assert r.status_code == 404 and r.json()["code"] == "not found"
    r = client.post("/api/v2/write?bucket=main&precision=h", content=line, headers=token_header(token))
    assert r.status_code == 400 and "precision" in r.json()["message"]
    r = client.post("/api/v2/write?bucket=main&u=x&p=secret", content=line, headers=token_header(token))
    assert r.status_code == 400 and "'p'" in r.json()["message"] and "secret" not in r.text
    r = client.post(
        "/api/v2/write",
        content=b"\x1f\x8b not gzip",
        headers={**token_header(token), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 415 and r.json()["code"] == "unsupported media type"
    r = client.post(
        "/api/v2/write", content="weather,device=\xff x=1".encode("latin-1"), headers=token_header(token)
    )
    assert r.status_code == 400 and "UTF-8" in r.json()["message"]


def test_a_gzip_bomb_stops_at_the_body_limit() -> None:
    from sensorhub.errors import PayloadTooLarge
    from sensorhub.kit.bodies import _Gunzip

    g = _Gunzip(1 << 20)
    with pytest.raises(PayloadTooLarge):
        g.feed(gzip.compress(b"0" * (64 << 20)))  # 64 MiB in about 64 KiB
    assert g.size <= (1 << 20) + 64 * 1024


def test_parser_mapping_of_escapes_types_and_precision() -> None:
    body = "\n".join(
        [
            f'm,device=d1,site=a\\,b\\ c f=1.5,i=-3i,u=7u,b=t,s="q \\"x\\"" {T0_NS + 1999}',
            f"m,device=d1,site=a\\,b\\ c f=2.5 {T0_NS + 5000}",
            "m,device=d2 value=1",
        ]
    )
    d1, d2 = lineproto.parse(body.encode(), "ns", 123, Limits())
    assert (d1.device, d1.first_line, d2.device, d2.first_line) == ("d1", 1, "d2", 3)
    topic = "site=a,b c"
    assert sorted(d1.prepared.numeric) == [(topic, "m_f"), (topic, "m_i"), (topic, "m_u")]
    f = d1.prepared.numeric[topic, "m_f"]
    t0_us = T0_NS // 1000
    assert f.ts.tolist() == [t0_us + 1, t0_us + 5] and f.array.tolist() == [1.5, 2.5]
    assert d1.prepared.numeric[topic, "m_i"].array.tolist() == [-3.0]
    assert d1.prepared.states == {"m_b": (t0_us + 1, True, None), "m_s": (t0_us + 1, 'q "x"', None)}
    assert d2.prepared.numeric["default", "m"].ts.tolist() == [123]  # no timestamp: now
    (w,) = lineproto.parse(b"m,device=d1 value=1 2", "h", 0, Limits())
    assert w.prepared.record_ts.tolist() == [2 * 3_600_000_000]
    with pytest.raises(Exception, match="at most 2 lines"):
        lineproto.parse(b"m,device=d value=1\n" * 3, "ns", 0, Limits(max_records=2))
