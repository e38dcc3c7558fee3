"""Exports end to end on both backends: create, download without a token, read back with pyarrow and
pandas; signed-URL refusals; the row cap; grant windows; bad input; listing; inline CSV; cleanup."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from sensorhub.entities.models import Entity
from sensorhub.export import signing
from sensorhub.export.service import cleanup_expired
from tests.builders import World, bearer
from tests.exports.conftest import (
    OTHER,
    STATION,
    T0,
    download,
    export,
    ingest,
    minutes,
    parquet_table,
    read,
    z,
)

ERROR_KEYS = {"timestamp", "path", "status", "error", "message", "requestId", "errorId", "traceId"}


def files_in(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_downloads_without_token_and_reads_back(
    client: TestClient, world: World, station: tuple[Entity, Entity], fmt: str
) -> None:
    s1, s2 = station
    times = minutes(120)
    temps = [20.0 + i / 8 for i in range(120)]
    hums = [50.0 + i for i in range(0, 120, 2)]
    ingest(world, s1, "temperature", times, temps, unit="CEL")
    ingest(world, s2, "humidity", times[::2], hums, unit="P1")
    token = world.pat("ana@acme.test", ["export"])

    r = export(client, token, [(STATION, "temperature"), (OTHER, "humidity")], fmt)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == fmt and body["status"] == "ready"
    assert body["rows"] == 120 and body["truncated"] is False and body["row_cap"] == 10_000
    assert body["columns"] == ["timestamp", f"{STATION}.temperature", f"{OTHER}.humidity"]
    assert body["units"] == {f"{STATION}.temperature": "CEL", f"{OTHER}.humidity": "P1"}
    assert 3590 <= body["expires_in"] <= 3600
    url = body["download_url"]
    assert url.startswith("http://testserver/api/datahub/exports/") and "signature=" in url

    got = download(client, url)
    assert got.status_code == 200, got.text
    if fmt == "parquet":
        assert got.headers["content-type"] == "application/vnd.apache.parquet"
    else:
        assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"].startswith(
        f'attachment; filename="sensorhub-export-20260101T000000Z-20260131T000000Z.{fmt}"'
    )
    df = read(got.content, fmt)
    assert len(df) == 120
    assert list(df.columns) == body["columns"]
    assert str(df["timestamp"].dt.tz) == "UTC"
    assert df["timestamp"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert df["timestamp"].iloc[-1] == pd.Timestamp("2026-01-01T01:59:00Z")
    assert df[f"{STATION}.temperature"].tolist() == temps
    hum = df[f"{OTHER}.humidity"]
    assert hum.iloc[::2].tolist() == hums and hum.iloc[1::2].isna().all()
    if fmt == "parquet":
        t = parquet_table(got.content)
        assert t.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
        md = t.schema.field(f"{STATION}.temperature").metadata
        assert (
            md[b"unit"] == b"CEL"
            and md[b"entity_id"] == STATION.encode()
            and md[b"attribute"] == b"temperature"
        )


def test_tampered_and_expired_links_are_refused(
    client: TestClient, world: World, station: tuple[Entity, Entity], exports_dir: Path
) -> None:
    ingest(world, station[0], "temperature", minutes(10), [1.0] * 10)
    token = world.pat("ana@acme.test", ["export"])
    body = export(client, token, [(STATION, "temperature")]).json()
    url = urlparse(body["download_url"])
    q = {k: v[0] for k, v in parse_qs(url.query).items()}

    def get(**changes: str) -> object:
        return download(client, f"{url.path}?{urlencode({**q, **changes})}")

    assert get().status_code == 200  # type: ignore[attr-defined]
    sig = q["signature"]
    tampered = get(signature=("A" if sig[0] != "A" else "B") + sig[1:])
    assert tampered.status_code == 403  # type: ignore[attr-defined]
    err = tampered.json()  # type: ignore[attr-defined]
    assert ERROR_KEYS <= set(err) and "signature does not match" in err["message"]
    # Extending the expiry breaks the signature.
    assert get(expires=str(int(q["expires"]) + 3600)).status_code == 403  # type: ignore[attr-defined]
    # Another export's id with this signature.
    other = f"/api/datahub/exports/00000000-0000-0000-0000-000000000000/download?{url.query}"
    assert download(client, other).status_code == 403
    assert download(client, url.path).status_code == 403  # no signature at all
    # A correctly signed link whose time has passed: 410 with a clear message.
    secret = world.ctx.settings.resolved_secret_key
    past = int(time.time()) - 5
    r = get(expires=str(past), signature=signing.sign(secret, body["id"], past))
    assert r.status_code == 410  # type: ignore[attr-defined]
    assert "expired" in r.json()["message"] and ERROR_KEYS <= set(r.json())  # type: ignore[attr-defined]


def test_expired_export_is_refused_cleaned_and_listed_as_expired(
    client: TestClient, world: World, station: tuple[Entity, Entity], exports_dir: Path
) -> None:
    ingest(world, station[0], "temperature", minutes(10), [1.0] * 10)
    token = world.pat("ana@acme.test", ["export"])
    keep = export(client, token, [(STATION, "temperature")], "csv").json()
    world.ctx.settings.export_url_ttl_seconds = 1
    short = export(client, token, [(STATION, "temperature")]).json()
    assert short["expires_in"] <= 1
    assert len(files_in(exports_dir)) == 2
    time.sleep(1.2)
    r = download(client, short["download_url"])
    assert r.status_code == 410, r.text
    assert (
        cleanup_expired(
            world.ctx.db,
            client.app.state.export_store,
            stale_after_seconds=world.ctx.settings.export_url_ttl_seconds,
        )
        == 1
    )  # type: ignore[attr-defined]
    assert files_in(exports_dir) == [f"{keep['id']}.csv"]
    listed = {e["id"]: e for e in client.get("/api/datahub/exports", headers=bearer(token)).json()}
    assert listed[short["id"]]["status"] == "expired" and listed[short["id"]]["download_url"] is None
    assert listed[keep["id"]]["status"] == "ready"
    assert download(client, listed[keep["id"]]["download_url"]).status_code == 200


def test_pat_cap_is_enforced_and_flagged_keys_get_more(
    client: TestClient, world: World, station: tuple[Entity, Entity]
) -> None:
    n = 10_050
    times = [T0 + timedelta(seconds=i) for i in range(n)]
    ingest(world, station[0], "temperature", times, [float(i) for i in range(n)])
    pat = world.pat("ana@acme.test", ["export"])
    r = export(client, pat, [(STATION, "temperature")], "parquet")
    body = r.json()
    assert body["rows"] == 10_000 and body["truncated"] is True and body["row_cap"] == 10_000
    t = parquet_table(download(client, body["download_url"]).content)
    assert t.num_rows == 10_000
    assert t.column(f"{STATION}.temperature").to_pylist() == [float(i) for i in range(10_000)]

    csv_body = export(client, pat, [(STATION, "temperature")], "csv").json()
    assert csv_body["rows"] == 10_000 and csv_body["truncated"] is True
    assert len(read(download(client, csv_body["download_url"]).content, "csv")) == 10_000

    key = world.api_key("acme", ["export"], export_row_cap=50_000)
    body = export(client, key, [(STATION, "temperature")]).json()
    assert body["rows"] == n and body["truncated"] is False and body["row_cap"] == 50_000
    assert parquet_table(download(client, body["download_url"]).content).num_rows == n

    # Exactly at the cap: not truncated.
    exact = world.api_key("acme", ["export"], name="exact", export_row_cap=n)
    body = export(client, exact, [(STATION, "temperature")]).json()
    assert body["rows"] == n and body["truncated"] is False
    small = world.api_key("acme", ["export"], name="small", export_row_cap=n - 1)
    body = export(client, small, [(STATION, "temperature")]).json()
    assert body["rows"] == n - 1 and body["truncated"] is True


def test_grant_time_window_clamps_rows(
    client: TestClient, world: World, station: tuple[Entity, Entity]
) -> None:
    ingest(world, station[0], "temperature", minutes(100), [float(i) for i in range(100)])
    ingest(world, station[1], "temperature", minutes(100), [float(-i) for i in range(100)])
    # bob may read station-1 from minute 10 to 20 and station-2 from minute 50 on.
    world.user("bob@acme.test", "acme", "member", grant_org=False)
    world.grant(
        "bob@acme.test",
        "acme",
        entity=STATION,
        time_start=T0 + timedelta(minutes=10),
        time_end=T0 + timedelta(minutes=20),
    )
    world.grant("bob@acme.test", "acme", entity=OTHER, time_start=T0 + timedelta(minutes=50))
    token = world.pat("bob@acme.test", ["export"])
    body = export(client, token, [(STATION, "temperature"), (OTHER, "temperature")], "csv").json()
    df = read(download(client, body["download_url"]).content, "csv")
    assert body["rows"] == len(df) == 10 + 50
    a = df[f"{STATION}.temperature"].dropna().tolist()
    b = df[f"{OTHER}.temperature"].dropna().tolist()
    assert a == [float(i) for i in range(10, 20)]
    assert b == [float(-i) for i in range(50, 100)]
    assert df["timestamp"].min() == pd.Timestamp("2026-01-01T00:10:00Z")

    # The token's own time window narrows further.
    narrow = world.pat(
        "bob@acme.test",
        ["export"],
        name="narrow",
        time_start=T0 + timedelta(minutes=15),
        time_end=T0 + timedelta(minutes=60),
    )
    body = export(client, narrow, [(STATION, "temperature"), (OTHER, "temperature")], "parquet").json()
    df = read(download(client, body["download_url"]).content, "parquet")
    assert df[f"{STATION}.temperature"].dropna().tolist() == [float(i) for i in range(15, 20)]
    assert df[f"{OTHER}.temperature"].dropna().tolist() == [float(-i) for i in range(50, 60)]


def test_bad_input_is_refused_and_writes_nothing(
    client: TestClient, world: World, station: tuple[Entity, Entity], exports_dir: Path
) -> None:
    ingest(world, station[0], "temperature", minutes(10), [1.0] * 10)
    world.org("rival")
    world.entity("rival", "main", "urn:ngsi-ld:Device:secret")
    token = world.pat("ana@acme.test", ["export"])

    def refused(
        status: int, needle: str, series: list[tuple[str, str]], fmt: str = "parquet", **kw: object
    ) -> None:
        r = export(client, token, series, fmt, **kw)  # type: ignore[arg-type]
        assert r.status_code == status, r.text
        assert needle in r.json()["message"], r.json()["message"]
        assert ERROR_KEYS <= set(r.json())

    refused(404, f"entity '{STATION}' has no series 'pressure'", [(STATION, "pressure")])
    refused(404, "entity 'urn:ngsi-ld:Device:nope' not found", [("urn:ngsi-ld:Device:nope", "temperature")])
    # Another tenant's entity: the very same answer as an unknown one.
    refused(
        404, "entity 'urn:ngsi-ld:Device:secret' not found", [("urn:ngsi-ld:Device:secret", "temperature")]
    )
    refused(400, "series is empty", [])
    refused(400, "unknown format 'xlsx'", [(STATION, "temperature")], "xlsx")
    refused(400, "must be after start_time", [(STATION, "temperature")], start=T0 + timedelta(days=2), end=T0)
    refused(400, "listed twice", [(STATION, "temperature"), (STATION, "temperature")])
    refused(400, "bucket 'hourly' is not understood", [(STATION, "temperature")], bucket="hourly")
    refused(400, "unknown aggregation 'hourly'", [(STATION, "temperature")], aggregation="hourly")
    refused(
        400, "'aggregation' applies to bucketed exports only", [(STATION, "temperature")], aggregation="avg"
    )
    refused(
        400, "unknown aggregation 'median'", [(STATION, "temperature")], bucket="1h", aggregation="median"
    )
    # The older form (bucket in 'aggregation', function in 'function') names its own fields.
    refused(400, "unknown function 'median'", [(STATION, "temperature")], aggregation="1h", function="median")
    refused(
        400,
        "start_time 'yesterday' is not a valid ISO 8601",
        [(STATION, "temperature")],
        start_time="yesterday",
    )
    # A token without the export scope.
    r = export(client, world.pat("ana@acme.test", ["timeseries"], name="ts-only"), [(STATION, "temperature")])
    assert r.status_code == 403 and "'export' scope" in r.json()["message"]
    assert files_in(exports_dir) == []
    assert client.get("/api/datahub/exports", headers=bearer(token)).json() == []


def test_listing_shows_only_the_callers_exports(
    client: TestClient, world: World, station: tuple[Entity, Entity]
) -> None:
    ingest(world, station[0], "temperature", minutes(10), [1.0] * 10)
    mine = world.pat("ana@acme.test", ["export"])
    other = world.pat("ana@acme.test", ["export"], name="other")
    a = export(client, mine, [(STATION, "temperature")], "csv").json()
    b = export(client, mine, [(STATION, "temperature")], "parquet").json()
    c = export(client, other, [(STATION, "temperature")]).json()
    listed = client.get("/api/datahub/exports", headers=bearer(mine)).json()
    assert [e["id"] for e in listed] == [b["id"], a["id"]]
    first = listed[0]
    assert first["status"] == "ready" and first["format"] == "parquet" and first["rows"] == 10
    assert first["truncated"] is False and first["expires_at"] and first["created_at"]
    assert download(client, first["download_url"]).status_code == 200
    assert [e["id"] for e in client.get("/api/datahub/exports", headers=bearer(other)).json()] == [c["id"]]
    assert client.get("/api/datahub/exports").status_code == 401


def test_inline_csv_streams_without_a_file(
    client: TestClient, world: World, station: tuple[Entity, Entity], exports_dir: Path
) -> None:
    n = 10_020
    ingest(
        world,
        station[0],
        "temperature",
        [T0 + timedelta(seconds=i) for i in range(n)],
        [i / 4 for i in range(n)],
    )
    token = world.pat("ana@acme.test", ["export"])
    r = client.post(
        "/api/datahub/export",
        json={
            "start_time": z(T0),
            "end_time": z(T0 + timedelta(days=1)),
            "series": [{"entity_id": STATION, "attribute": "temperature"}],
        },
        headers={**bearer(token), "Accept": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-export-rows"] == "10000" and r.headers["x-export-truncated"] == "true"
    assert r.headers["content-disposition"].startswith('attachment; filename="sensorhub-export-')
    df = pd.read_csv(io.BytesIO(r.content), parse_dates=["timestamp"])
    assert len(df) == 10_000 and df[f"{STATION}.temperature"].iloc[-1] == 9_999 / 4
    assert r.text.splitlines()[1] == '"2026-01-01T00:00:00.000000Z",0'
    assert files_in(exports_dir) == []
    # Asking for Parquet inline is refused.
    r = client.post(
        "/api/datahub/export",
        json={
            "start_time": z(T0),
            "end_time": z(T0 + timedelta(days=1)),
            "format": "parquet",
            "series": [{"entity_id": STATION, "attribute": "temperature"}],
        },
        headers={**bearer(token), "Accept": "text/csv"},
    )
    assert r.status_code == 406


def test_inline_csv_beyond_the_prefetch_window(
    client: TestClient, world: World, station: tuple[Entity, Entity], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorhub.export import service

    monkeypatch.setattr(service, "INLINE_PREFETCH_ROWS", 100)
    n = 1000
    ingest(
        world,
        station[0],
        "temperature",
        [T0 + timedelta(seconds=i) for i in range(n)],
        [float(i) for i in range(n)],
    )
    key = world.api_key("acme", ["export"])
    r = client.post(
        "/api/datahub/export",
        json={
            "start_time": z(T0),
            "end_time": z(T0 + timedelta(days=1)),
            "format": "csv",
            "series": [{"entity_id": STATION, "attribute": "temperature"}],
        },
        headers={**bearer(key), "Accept": "text/csv"},
    )
    assert r.headers["x-export-rows"] == "1000" and r.headers["x-export-truncated"] == "false"
    df = pd.read_csv(io.BytesIO(r.content))
    assert df[f"{STATION}.temperature"].tolist() == [float(i) for i in range(n)]


def test_bucketed_export(client: TestClient, world: World, station: tuple[Entity, Entity]) -> None:
    times = minutes(180)
    ingest(world, station[0], "temperature", times, [float(i) for i in range(180)], unit="CEL")
    token = world.pat("ana@acme.test", ["export"])
    body = export(client, token, [(STATION, "temperature")], "csv", bucket="1h").json()
    assert body["bucket"] == "1h" and body["aggregation"] == "avg" and body["rows"] == 3
    assert "function" not in body
    content = download(client, body["download_url"]).content
    assert content.decode().splitlines()[1] == '"2026-01-01T00:00:00Z",29.5'
    df = read(content, "csv")
    assert df[f"{STATION}.temperature"].tolist() == [29.5, 89.5, 149.5]
    body = export(client, token, [(STATION, "temperature")], "parquet", bucket="1h", aggregation="max").json()
    df = read(download(client, body["download_url"]).content, "parquet")
    assert df[f"{STATION}.temperature"].tolist() == [59.0, 119.0, 179.0]
    assert np.array_equal(df["timestamp"].dt.hour.to_numpy(), [0, 1, 2])


def test_export_of_backfilled_data(client: TestClient, world: World, station: tuple[Entity, Entity]) -> None:
    """Data ingested over HTTP (backfill route) comes out unchanged."""
    key = world.api_key("acme", ["ingest", "export"])
    points = [
        {"timestamp": z(t), "data": {"temperature": 10 + i * 0.5, "pressure": 1000 + i}}
        for i, t in enumerate(minutes(30))
    ]
    r = client.post(f"/v3/devices/{STATION}/backfill", json=points, headers=bearer(key))
    assert r.status_code == 200, r.text
    body = export(client, key, [(STATION, "pressure"), (STATION, "temperature")], "parquet").json()
    df = read(download(client, body["download_url"]).content, "parquet")
    assert df[f"{STATION}.temperature"].tolist() == [10 + i * 0.5 for i in range(30)]
    assert df[f"{STATION}.pressure"].tolist() == [1000.0 + i for i in range(30)]


def test_the_server_deletes_expired_files_in_the_background(
    client: TestClient, world: World, station: tuple[Entity, Entity], exports_dir: Path
) -> None:
    from sensorhub.app import create_app

    ingest(world, station[0], "temperature", minutes(5), [1.0] * 5)
    token = world.pat("ana@acme.test", ["export"])
    world.ctx.settings.export_url_ttl_seconds = 1
    export(client, token, [(STATION, "temperature")])
    assert len(files_in(exports_dir)) == 1
    time.sleep(1.1)
    # A server starting up (its startup hook launches the periodic cleanup) removes the expired file.
    with TestClient(create_app(world.ctx.settings, world.ctx)):
        deadline = time.monotonic() + 10
        while files_in(exports_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert files_in(exports_dir) == []


def test_download_supports_head_and_ranges(
    client: TestClient, world: World, station: tuple[Entity, Entity]
) -> None:
    """Remote Parquet readers (DuckDB httpfs, fsspec) send HEAD, then ranged GETs for the footer."""
    ingest(world, station[0], "temperature", minutes(50), [float(i) for i in range(50)])
    token = world.pat("ana@acme.test", ["export"])
    url = export(client, token, [(STATION, "temperature")]).json()["download_url"]
    fresh = TestClient(client.app)
    full = fresh.get(url).content
    head = fresh.head(url)
    assert (
        head.status_code == 200 and int(head.headers["content-length"]) == len(full) and head.content == b""
    )
    tail = fresh.get(url, headers={"Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content == full[-8:] and tail.content.endswith(b"PAR1")
