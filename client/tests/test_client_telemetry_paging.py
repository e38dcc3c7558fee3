"""devices() and sensors() read every page of the limit/offset routes, sync and async."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sdk_fakes import BASE, TOKEN, FakeServer

import sensorhub_client as sc


def offset_route(rows: list[dict[str, object]], max_limit: int = 1000):
    """A handler answering like the server: ``limit`` (default 100, at most ``max_limit``) from ``offset``."""

    def handler(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params.get("limit", "100"))
        offset = int(request.url.params.get("offset", "0"))
        if not 1 <= limit <= max_limit:
            return httpx.Response(400, json={"status": 400, "error": "Bad Request", "message": "limit"})
        return httpx.Response(200, json=rows[offset : offset + limit])

    return handler


def devices(n: int) -> list[dict[str, object]]:
    return [{"id": f"urn:ngsi-ld:Device:{i}", "attributes": {}} for i in range(n)]


def offsets(server: FakeServer) -> list[tuple[str, str]]:
    return [(r.url.params["limit"], r.url.params["offset"]) for r in server.requests]


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 1001, 2345])
def test_devices_returns_every_device_across_pages(server: FakeServer, client: sc.Client, n: int) -> None:
    rows = devices(n)
    server.add("GET", "/api/devices", offset_route(rows))
    assert client.devices() == rows
    pages = n // 1000 + 1
    assert offsets(server) == [("1000", str(1000 * i)) for i in range(pages)]


def test_more_than_the_old_first_page_of_100(server: FakeServer, client: sc.Client) -> None:
    rows = devices(250)
    server.add("GET", "/api/devices", offset_route(rows))
    assert client.latest(page_size=100) == rows
    assert offsets(server) == [("100", "0"), ("100", "100"), ("100", "200")]


def test_sensors_returns_every_sensor_across_pages(server: FakeServer, client: sc.Client) -> None:
    rows = [{"id": f"d.a{i}", "entity_id": "d", "attribute": f"a{i}"} for i in range(1500)]
    server.add("GET", "/api/sensors", offset_route(rows))
    assert client.sensors() == rows
    assert len(server.requests) == 2


def test_page_size_is_checked_before_any_request(server: FakeServer, client: sc.Client) -> None:
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="page_size"):
            client.devices(page_size=bad)
    assert server.requests == []


def test_a_server_ignoring_offset_is_not_read_forever(server: FakeServer, client: sc.Client) -> None:
    rows = devices(10)
    server.add("GET", "/api/sensors", lambda r: httpx.Response(200, json=rows))
    with pytest.raises(sc.SensorhubError, match="same page"):
        client.sensors(page_size=10)
    assert len(server.requests) == 2


def test_async_devices_and_sensors_read_every_page(server: FakeServer) -> None:
    device_rows = devices(2001)
    sensor_rows = [{"id": f"d.a{i}"} for i in range(1000)]
    server.add("GET", "/api/devices", offset_route(device_rows))
    server.add("GET", "/api/sensors", offset_route(sensor_rows))

    async def main() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        async with sc.AsyncClient(base_url=BASE, token=TOKEN, transport=server.async_transport()) as c:
            return await c.devices(), await c.sensors()

    got_devices, got_sensors = asyncio.run(main())
    assert got_devices == device_rows
    assert got_sensors == sensor_rows
    assert [(r.url.path, r.url.params["offset"]) for r in server.requests] == [
        ("/api/devices", "0"),
        ("/api/devices", "1000"),
        ("/api/devices", "2000"),
        ("/api/sensors", "0"),
        ("/api/sensors", "1000"),
    ]
