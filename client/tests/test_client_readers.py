"""Latest telemetry, LEAF data rows, grants, token introspection and Akenza asset pages."""

from __future__ import annotations

import httpx
import pytest
from sdk_fakes import BASE

DEVICES = [
    {
        "id": "urn:ngsi-ld:Device:d1",
        "name": "d1",
        "latest": {"temperature": {"value": 21.5, "unit": "CEL", "observed_at": "2026-01-01T00:00:00Z"}},
    }
]


def test_devices_and_latest_read_the_same_route(client, server):
    server.add("GET", "/api/devices", lambda r: httpx.Response(200, json=DEVICES))
    assert client.devices() == DEVICES
    assert client.latest() == DEVICES


def test_one_device_and_sensors(client, server):
    server.add("GET", "/api/devices/urn:ngsi-ld:Device:d1", lambda r: httpx.Response(200, json=DEVICES[0]))
    server.add("GET", "/api/sensors", lambda r: httpx.Response(200, json=[{"id": "s1", "unit": "CEL"}]))
    server.add("GET", "/api/sensors/s1", lambda r: httpx.Response(200, json={"id": "s1", "unit": "CEL"}))
    assert client.device("urn:ngsi-ld:Device:d1")["name"] == "d1"
    assert client.sensors() == [{"id": "s1", "unit": "CEL"}]
    assert client.sensor("s1") == {"id": "s1", "unit": "CEL"}


def test_managements_and_whoami(client, server):
    grants = [
        {
            "id": "g1",
            "organisation": "WUR",
            "department": "SSB",
            "entity": None,
            "time_start": None,
            "time_end": None,
        }
    ]
    me = {"id": "t1", "name": "notebook", "scopes": ["timeseries"], "expires_at": "2027-01-01T00:00:00Z"}
    server.add("GET", "/api/managements", lambda r: httpx.Response(200, json=grants))
    server.add("GET", "/api/tokens/self", lambda r: httpx.Response(200, json=me))
    assert client.managements() == grants
    assert client.whoami() == me
    assert client.token_info() == me


def test_recent_sends_the_limit(client, server):
    server.add("GET", "/api/data/recent", lambda r: httpx.Response(200, json=[]))
    client.recent()
    client.recent(limit=5)
    assert [r.url.params["limit"] for r in server.requests] == ["50", "5"]


def rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "time": f"2026-01-01T00:{i:02d}:00Z",
            "entity": "R1",
            "metric": "temperature",
            "value": float(i),
            "tags": {"unit": "celsius"},
        }
        for i in range(start, start + n)
    ]


def leaf_server(total: int):
    """``/api/data`` with a cursor in the next link while rows remain."""

    def handler(request):
        limit = int(request.url.params["limit"])
        cursor = int(request.url.params.get("cursor", "0"))
        page = rows(min(limit, total - cursor), cursor)
        headers = {}
        if cursor + limit < total:
            headers["Link"] = f'<{BASE}/api/data?limit={limit}&cursor={cursor + limit}>; rel="next"'
        return httpx.Response(200, json=page, headers=headers)

    return handler


def test_data_follows_the_cursor_to_the_last_row(client, server):
    server.add("GET", "/api/data", leaf_server(25))
    got = list(
        client.data(
            organisation="WUR",
            department="SSB",
            metric="temperature",
            start="2024-01-01",
            end="2024-02-01T00:00:00+01:00",
            page_size=10,
        )
    )
    assert [r["value"] for r in got] == [float(i) for i in range(25)]
    first = server.requests[0].url.params
    assert first["organisation"] == "WUR"
    assert first["department"] == "SSB"
    assert first["metric"] == "temperature"
    assert first["from"] == "2024-01-01T00:00:00Z"
    assert first["to"] == "2024-01-31T23:00:00Z"
    assert first["limit"] == "10"
    assert "entity" not in first
    assert len(server.requests) == 3


def test_data_limit_caps_the_total_and_stops_fetching(client, server):
    server.add("GET", "/api/data", leaf_server(100))
    got = list(client.data(limit=15, page_size=10))
    assert len(got) == 15
    assert len(server.requests) == 2


def test_data_frame_has_utc_times_values_and_units(client, server):
    pd = pytest.importorskip("pandas")
    server.add("GET", "/api/data", leaf_server(3))
    df = client.data_frame(entity="R1")
    assert list(df.columns) == ["time", "entity", "metric", "value", "unit", "tags"]
    assert str(df["time"].dt.tz) == "UTC"
    assert df["time"].iloc[1] == pd.Timestamp("2026-01-01T00:01:00Z")
    assert df["value"].dtype == "float64"
    assert df["unit"].tolist() == ["celsius"] * 3
    assert server.requests[0].url.params["entity"] == "R1"


def test_empty_data_frame_keeps_its_columns(client, server):
    pytest.importorskip("pandas")
    server.add("GET", "/api/data", lambda r: httpx.Response(200, json=[]))
    df = client.data_frame()
    assert df.empty
    assert list(df.columns) == ["time", "entity", "metric", "value", "unit", "tags"]


def spring_pages(total: int, report_last: bool = True):
    def handler(request):
        page = int(request.url.params["page"])
        size = int(request.url.params["size"])
        items = [{"id": f"a{i}", "type": "DEVICE"} for i in range(page * size, min(total, (page + 1) * size))]
        pages = -(-total // size)
        body = {
            "content": items,
            "pageable": {"pageNumber": page, "pageSize": size},
            "totalPages": pages,
            "totalElements": total,
            "number": page,
            "size": size,
            "numberOfElements": len(items),
            "first": page == 0,
            "sort": {"sorted": False},
            "empty": not items,
        }
        if report_last:
            body["last"] = page >= pages - 1
        return httpx.Response(200, json=body)

    return handler


@pytest.mark.parametrize("report_last", [True, False])
def test_assets_walk_spring_pages_from_zero(client, server, report_last):
    server.add("GET", "/v3/assets", spring_pages(5, report_last))
    got = list(client.assets(workspace_id="ws1", type="DEVICE", size=2))
    assert [a["id"] for a in got] == ["a0", "a1", "a2", "a3", "a4"]
    assert [r.url.params["page"] for r in server.requests] == ["0", "1", "2"]
    first = server.requests[0].url.params
    assert first["workspaceId"] == "ws1"
    assert first["type"] == "DEVICE"
    assert first["size"] == "2"


def test_no_assets_is_one_request(client, server):
    server.add("GET", "/v3/assets", spring_pages(0))
    assert list(client.assets()) == []
    assert len(server.requests) == 1
