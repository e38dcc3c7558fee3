"""Exports: the server writes a file, the client fetches it from the signed URL without the token."""

from __future__ import annotations

import io
import warnings

import httpx
import pytest
from sdk_fakes import body_of, error_response

import sensorhub_client as sc

STATION = "urn:ngsi-ld:WeatherObserved:station-1"
CSV = (
    "timestamp,entity_id,attribute,value\n"
    "2026-01-01T00:00:00Z,urn:e,temperature,1.5\n"
    "2026-01-01T01:00:00Z,urn:e,temperature,2.5\n"
)


def export_answer(url: str, fmt: str = "csv", rows: int = 2, truncated: bool = False):
    def handler(request):
        return httpx.Response(
            200,
            json={
                "download_url": url,
                "expires_in": 900,
                "format": fmt,
                "rows": rows,
                "truncated": truncated,
            },
        )

    return handler


def test_export_sends_the_documented_body_and_returns_the_result(client, server):
    server.add("POST", "/api/datahub/export", export_answer("/api/datahub/downloads/f1?sig=x", "parquet"))
    result = client.export(
        [{"entity_id": STATION, "attribute": "temperature"}],
        start="2026-01-01T00:00:00Z",
        end="2026-01-31T00:00:00Z",
        bucket="1h",
        aggregation="avg",
    )
    assert body_of(server.requests[0]) == {
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-31T00:00:00Z",
        "series": [{"entity_id": STATION, "attribute": "temperature"}],
        "format": "parquet",
        "bucket": "1h",
        "aggregation": "avg",
    }
    assert isinstance(result, sc.ExportResult)
    assert result.format == "parquet"
    assert result.rows == 2
    assert result.expires_in == 900
    assert result.truncated is False
    assert result.download_url == "/api/datahub/downloads/f1?sig=x"


def test_download_from_a_relative_url_writes_the_file(client, server, tmp_path):
    server.add(
        "POST", "/api/datahub/export", export_answer("/api/datahub/downloads/f1.csv?expires=9&sig=abc")
    )
    server.add("GET", "/api/datahub/downloads/f1.csv", lambda r: httpx.Response(200, text=CSV))
    result = client.export([(STATION, "temperature")], start="2026-01-01", end="2026-01-02", format="csv")
    path = result.download(tmp_path / "out.csv")
    assert path == tmp_path / "out.csv"
    assert path.read_text() == CSV
    get = server.requests[-1]
    assert get.url.params["sig"] == "abc"
    assert "authorization" not in get.headers
    assert not (tmp_path / "out.csv.part").exists()


def test_download_into_a_directory_names_the_file(client, server, tmp_path):
    server.add("POST", "/api/datahub/export", export_answer("/dl/f1?sig=abc"))
    server.add("GET", "/dl/f1", lambda r: httpx.Response(200, text=CSV))
    path = client.export(
        [(STATION, "temperature")], start="2026-01-01", end="2026-01-02", format="csv"
    ).download(tmp_path)
    assert path == tmp_path / "export.csv"
    assert path.read_text() == CSV


def test_download_from_an_absolute_presigned_url_on_another_host(client, server, tmp_path):
    url = "https://bucket.s3.example.com/exports/f1.csv?X-Amz-Signature=deadbeef"
    server.add("POST", "/api/datahub/export", export_answer(url))
    server.add("GET", "/exports/f1.csv", lambda r: httpx.Response(200, text=CSV))
    client.export([(STATION, "temperature")], start="2026-01-01", end="2026-01-02", format="csv").download(
        tmp_path / "f.csv"
    )
    get = server.requests[-1]
    assert get.url.host == "bucket.s3.example.com"
    assert "authorization" not in get.headers


def test_an_expired_link_is_a_typed_error_and_leaves_no_partial_file(client, server, tmp_path):
    server.add("POST", "/api/datahub/export", export_answer("/dl/f1?sig=old"))
    server.add(
        "GET", "/dl/f1", lambda r: error_response(403, "Forbidden", "download link expired", path="/dl/f1")
    )
    result = client.export([(STATION, "temperature")], start="2026-01-01", end="2026-01-02", format="csv")
    with pytest.raises(sc.PermissionDenied, match="download link expired"):
        result.download(tmp_path / "f.csv")
    assert list(tmp_path.iterdir()) == []


def test_csv_export_to_frame_parses_times_as_utc(client, server):
    pd = pytest.importorskip("pandas")
    server.add("POST", "/api/datahub/export", export_answer("/dl/f1?sig=abc"))
    server.add("GET", "/dl/f1", lambda r: httpx.Response(200, text=CSV))
    df = client.export(
        [(STATION, "temperature")], start="2026-01-01", end="2026-01-02", format="csv"
    ).to_frame()
    assert df["value"].tolist() == [1.5, 2.5]
    assert df["timestamp"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert str(df["timestamp"].dt.tz) == "UTC"


def test_parquet_export_to_frame(client, server):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"], utc=True),
            "entity_id": ["urn:e", "urn:e"],
            "attribute": ["temperature", "temperature"],
            "value": [1.5, 2.5],
        }
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    server.add("POST", "/api/datahub/export", export_answer("/dl/f1.parquet?sig=abc", "parquet"))
    server.add("GET", "/dl/f1.parquet", lambda r: httpx.Response(200, content=buffer.getvalue()))
    df = client.export([(STATION, "temperature")], start="2026-01-01", end="2026-01-02").to_frame()
    assert df["value"].tolist() == [1.5, 2.5]
    assert str(df["timestamp"].dt.tz) == "UTC"


def test_a_truncated_export_warns(client, server):
    server.add("POST", "/api/datahub/export", export_answer("/dl/f1?sig=abc", rows=10000, truncated=True))
    with pytest.warns(UserWarning, match="truncated at 10000 rows"):
        result = client.export([(STATION, "temperature")], start="2025-01-01", end="2026-01-01")
    assert result.truncated is True


def test_a_complete_export_does_not_warn(client, server):
    server.add("POST", "/api/datahub/export", export_answer("/dl/f1?sig=abc"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client.export([(STATION, "temperature")], start="2025-01-01", end="2026-01-01")


def test_export_is_not_blindly_repeated_after_a_server_error(client, server, sleeps):
    server.add("POST", "/api/datahub/export", lambda r: error_response(503, "Service Unavailable", "busy"))
    with pytest.raises(sc.ServerError):
        client.export([(STATION, "temperature")], start="2025-01-01", end="2026-01-01")
    assert len(server.requests) == 1


def test_export_format_is_checked_locally(client):
    with pytest.raises(ValueError, match="parquet' or 'csv"):
        client.export([(STATION, "temperature")], start="2025-01-01", end="2026-01-01", format="xlsx")
