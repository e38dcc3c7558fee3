"""Time series come back as UTC-indexed DataFrames whether the server answers in JSON or Arrow."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import httpx
import pytest
from sdk_fakes import body_of

import sensorhub_client as sc

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

STATION = "urn:ngsi-ld:WeatherObserved:station-1"
PATH = f"/api/timeseries/v2/entities/{STATION}/data"
ARROW = "application/vnd.apache.arrow.stream"
STAMPS = ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]
VALUES = {"temperature": [1.5, None, 3.0], "humidity": [80.0, 81.0, 82.5]}


def json_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "entity_id": STATION,
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-01T03:00:00Z",
            "bucket_seconds": 3600,
            "aggregation": "avg",
            "timestamps": STAMPS,
            "attributes": VALUES,
            "units": {"temperature": "CEL", "humidity": "P1"},
        },
    )


def arrow_bytes(bucket: str = "3600") -> bytes:
    """An Arrow IPC stream shaped like the server's: units and bucket size in the schema metadata."""
    fields = [pa.field("timestamp", pa.timestamp("us", tz="UTC"))]
    fields += [pa.field(name, pa.float64()) for name in VALUES]
    units = json.dumps({"temperature": "CEL", "humidity": "P1"})
    schema = pa.schema(fields, metadata={"bucket_seconds": bucket, "units": units})
    stamps = [datetime.fromisoformat(s) for s in STAMPS]
    table = pa.Table.from_pydict({"timestamp": stamps, **VALUES}, schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrow_answer(request: httpx.Request) -> httpx.Response:
    assert ARROW in request.headers["accept"]
    return httpx.Response(200, content=arrow_bytes(), headers={"Content-Type": ARROW})


def _check_frame(df):
    assert isinstance(df.index, pd.DatetimeIndex)
    assert df.index.name == "timestamp"
    assert str(df.index.tz) == "UTC"
    assert list(df.index) == [pd.Timestamp(s) for s in STAMPS]
    assert list(df.columns) == ["temperature", "humidity"]
    assert all(str(dtype) == "float64" for dtype in df.dtypes)
    assert df["temperature"].isna().tolist() == [False, True, False]
    assert df["humidity"].tolist() == [80.0, 81.0, 82.5]


def test_json_answer_becomes_a_utc_frame_with_one_column_per_attribute(client, server):
    server.add("GET", PATH, json_answer)
    df = client.timeseries(
        STATION, ["temperature", "humidity"], start="2026-01-01T00:00:00Z", end="2026-01-01T03:00:00Z"
    )
    _check_frame(df)
    assert df.attrs["bucket_seconds"] == 3600
    assert df.attrs["aggregation"] == "avg"
    assert df.attrs["entity_id"] == STATION


def test_arrow_is_requested_when_pyarrow_is_installed_and_read_into_the_same_frame(client, server):
    server.add("GET", PATH, arrow_answer)
    df = client.timeseries(
        STATION, ["temperature", "humidity"], start="2026-01-01T00:00:00Z", end="2026-01-01T03:00:00Z"
    )
    _check_frame(df)
    assert df.attrs["units"] == {"temperature": "CEL", "humidity": "P1"}
    assert df.attrs["bucket_seconds"] == 3600

    server.add("GET", PATH, json_answer)
    from_json = client.timeseries(STATION, ["temperature", "humidity"], start="2026-01-01", end="2026-01-02")
    pd.testing.assert_frame_equal(df, from_json, check_freq=False)
    assert df.attrs == from_json.attrs


def test_raw_arrow_data_has_no_bucket_size(client, server):
    server.add(
        "GET",
        PATH,
        lambda r: httpx.Response(200, content=arrow_bytes(bucket=""), headers={"Content-Type": ARROW}),
    )
    df = client.timeseries(STATION, start="2026-01-01", end="2026-01-02")
    assert df.attrs["bucket_seconds"] is None
    assert df.attrs["entity_id"] == STATION


def test_a_server_answering_json_to_an_arrow_request_still_works(client, server):
    def handler(request):
        assert request.headers["accept"].startswith(ARROW)
        return json_answer(request)

    server.add("GET", PATH, handler)
    _check_frame(client.timeseries(STATION, start="2026-01-01", end="2026-01-02"))


def test_parameters_follow_the_api(client, server):
    server.add("GET", PATH, json_answer)
    client.timeseries(
        STATION,
        ["temperature", "humidity"],
        start="2026-01-01T01:00:00+01:00",
        end=datetime(2026, 1, 31, 12, 30, tzinfo=timezone(timedelta(hours=-5))),
        resolution=200,
        aggregation="max",
    )
    params = server.requests[0].url.params
    assert params["start_time"] == "2026-01-01T00:00:00Z"
    assert params["end_time"] == "2026-01-31T17:30:00Z"
    assert params.get_list("attribute") == ["temperature", "humidity"]
    assert params["resolution"] == "200"
    assert params["aggregation"] == "max"


def test_a_single_attribute_string_is_not_split_into_letters(client, server):
    server.add("GET", PATH, json_answer)
    client.timeseries(STATION, "temperature", start="2026-01-01", end="2026-01-02")
    assert server.requests[0].url.params.get_list("attribute") == ["temperature"]


def test_no_attributes_means_all_and_sends_none(client, server):
    server.add("GET", PATH, json_answer)
    client.timeseries(STATION, start="2026-01-01", end="2026-01-02")
    assert "attribute" not in server.requests[0].url.params
    assert "resolution" not in server.requests[0].url.params


@pytest.mark.parametrize(
    "naive",
    ["2026-01-01T00:00:00", datetime(2026, 1, 1), "2026-01-01 00:00"],
)
def test_naive_times_are_rejected_before_any_request(client, server, naive):
    server.add("GET", PATH, json_answer)
    with pytest.raises(ValueError, match="time zone"):
        client.timeseries(STATION, start=naive, end="2026-01-02T00:00:00Z")
    assert server.requests == []


def test_garbage_times_are_rejected_with_the_parameter_name(client):
    with pytest.raises(ValueError, match="end 'yesterday' is not an ISO 8601 time"):
        client.timeseries(STATION, start="2026-01-01T00:00:00Z", end="yesterday")


@pytest.mark.parametrize("day", ["2026-01-01", date(2026, 1, 1)])
def test_a_bare_date_means_midnight_utc(client, server, day):
    server.add("GET", PATH, json_answer)
    client.timeseries(STATION, start=day, end=datetime(2026, 1, 2, tzinfo=UTC))
    params = server.requests[0].url.params
    assert params["start_time"] == "2026-01-01T00:00:00Z"
    assert params["end_time"] == "2026-01-02T00:00:00Z"


def test_pandas_timestamps_are_accepted(client, server):
    server.add("GET", PATH, json_answer)
    client.timeseries(
        STATION,
        start=pd.Timestamp("2026-01-01 01:00", tz="Europe/Amsterdam"),
        end=pd.Timestamp("2026-01-02", tz="UTC"),
    )
    assert server.requests[0].url.params["start_time"] == "2026-01-01T00:00:00Z"


def test_as_frame_false_gives_plain_python_and_asks_for_json(client, server):
    server.add("GET", PATH, json_answer)
    result = client.timeseries(STATION, start="2026-01-01", end="2026-01-02", as_frame=False)
    assert isinstance(result, sc.Timeseries)
    assert server.requests[0].headers["accept"] == "application/json"
    assert result.entity_id == STATION
    assert result.bucket_seconds == 3600
    assert result.timestamps[1] == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert result.attributes["temperature"] == [1.5, None, 3.0]
    _check_frame(result.to_frame())


def test_an_empty_range_gives_an_empty_frame_with_the_right_shape(client, server):
    server.add(
        "GET",
        PATH,
        lambda r: httpx.Response(
            200,
            json={
                "entity_id": STATION,
                "bucket_seconds": None,
                "aggregation": None,
                "timestamps": [],
                "attributes": {"temperature": []},
            },
        ),
    )
    df = client.timeseries(STATION, ["temperature"], start="2026-01-01", end="2026-01-02")
    assert df.empty
    assert list(df.columns) == ["temperature"]
    assert str(df.index.tz) == "UTC"


QUERY_ANSWER = {
    "start_time": "2026-01-01T00:00:00Z",
    "end_time": "2026-01-01T02:00:00Z",
    "bucket_seconds": 3600,
    "timestamps": ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"],
    "series": {
        f"{STATION}.temperature": {
            "entity_id": STATION,
            "attribute": "temperature",
            "unit": "CEL",
            "values": [1.0, 2.0],
        },
        "urn:ngsi-ld:Device:d1.battery": {
            "entity_id": "urn:ngsi-ld:Device:d1",
            "attribute": "battery",
            "unit": "P1",
            "values": [None, 90.0],
        },
    },
}


def test_query_aligns_series_by_name_with_units(client, server):
    server.add("POST", "/api/timeseries/v2/query", lambda r: httpx.Response(200, json=QUERY_ANSWER))
    df = client.query(
        [
            {"entity_id": STATION, "attribute": "temperature", "aggregation": "max"},
            ("urn:ngsi-ld:Device:d1", "battery"),
        ],
        start="2026-01-01T00:00:00Z",
        end="2026-01-01T02:00:00Z",
        resolution=2,
        aggregation="min",
        fill="previous",
    )
    assert body_of(server.requests[0]) == {
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-01T02:00:00Z",
        "resolution": 2,
        "fill": "previous",
        "aggregation": "min",
        "series": [
            {"entity_id": STATION, "attribute": "temperature", "aggregation": "max"},
            {"entity_id": "urn:ngsi-ld:Device:d1", "attribute": "battery"},
        ],
    }
    assert list(df.columns) == [f"{STATION}.temperature", "urn:ngsi-ld:Device:d1.battery"]
    assert df.index.name == "timestamp"
    assert str(df.index.tz) == "UTC"
    assert df.attrs["units"] == {f"{STATION}.temperature": "CEL", "urn:ngsi-ld:Device:d1.battery": "P1"}
    assert df["urn:ngsi-ld:Device:d1.battery"].isna().tolist() == [True, False]


def test_query_as_plain_python(client, server):
    server.add("POST", "/api/timeseries/v2/query", lambda r: httpx.Response(200, json=QUERY_ANSWER))
    result = client.query([(STATION, "temperature")], start="2026-01-01", end="2026-01-02", as_frame=False)
    assert isinstance(result, sc.QueryResult)
    assert result.series[f"{STATION}.temperature"].unit == "CEL"
    assert "fill" not in body_of(server.requests[0])


def test_query_needs_well_formed_series(client):
    with pytest.raises(ValueError, match="at least one series"):
        client.query([], start="2026-01-01", end="2026-01-02")
    with pytest.raises(ValueError, match="entity_id and an attribute"):
        client.query([{"entity_id": STATION}], start="2026-01-01", end="2026-01-02")
    with pytest.raises(ValueError, match="tuple"):
        client.query(["temperature"], start="2026-01-01", end="2026-01-02")
