"""Without pandas the client still works (plain results); without pyarrow it uses JSON."""

from __future__ import annotations

import sys

import httpx
import pytest

import sensorhub_client as sc

STATION = "urn:ngsi-ld:WeatherObserved:station-1"
PATH = f"/api/timeseries/v2/entities/{STATION}/data"
ANSWER = {
    "entity_id": STATION,
    "start_time": "2026-01-01T00:00:00Z",
    "end_time": "2026-01-01T02:00:00Z",
    "bucket_seconds": 3600,
    "aggregation": "avg",
    "timestamps": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
    "attributes": {"temperature": [1.0, 2.0]},
}


def test_without_pandas_timeseries_returns_the_plain_result(client, server, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    server.add("GET", PATH, lambda r: httpx.Response(200, json=ANSWER))
    result = client.timeseries(STATION, ["temperature"], start="2026-01-01", end="2026-01-02")
    assert isinstance(result, sc.Timeseries)
    assert result.attributes == {"temperature": [1.0, 2.0]}
    assert server.requests[0].headers["accept"] == "application/json"
    with pytest.raises(ImportError, match=r"pip install 'sensorhub-client\[pandas\]'"):
        result.to_frame()


def test_without_pandas_data_frame_says_what_to_install(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"sensorhub-client\[pandas\]"):
        client.data_frame()


def test_without_pyarrow_frames_come_over_json(client, server, monkeypatch):
    pytest.importorskip("pandas")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    server.add("GET", PATH, lambda r: httpx.Response(200, json=ANSWER))
    df = client.timeseries(STATION, ["temperature"], start="2026-01-01", end="2026-01-02")
    assert df["temperature"].tolist() == [1.0, 2.0]
    assert server.requests[0].headers["accept"] == "application/json"
