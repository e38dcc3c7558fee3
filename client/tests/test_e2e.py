"""The client against a real server: ``sensorhub demo`` seeds a data directory, ``sensorhub serve`` serves it.

Nothing is mocked here: real HTTP, the real auth pipeline, real paging, Arrow and exports. The module
needs the server package (installed in the project's venv); the light SDK-only install skips it.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import sensorhub_client as sc

pytest.importorskip("sensorhub.app", reason="the sensorhub server is not installed (SDK-only environment)")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "sensorhub-client.ipynb"
STATION = "urn:ngsi-ld:WeatherObserved:station-1"
JANUARY = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-31T00:00:00Z"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("sdk-demo")
    env = dict(os.environ, SENSORHUB_DATA_DIR=str(data))
    for name in (
        "SENSORHUB_DATABASE_URL",
        "SENSORHUB_REDIS_URL",
        "SENSORHUB_EXPORT_STORE",
        "SENSORHUB_TOKEN",
    ):
        env.pop(name, None)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    seeded = subprocess.run(
        [str(BIN / "sensorhub"), "demo", "--no-serve", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert seeded.returncode == 0, seeded.stderr
    token = re.search(r"token:\s+(\w+_pat_\w+)", seeded.stdout)
    password = re.search(r"password:\s+(\S+)", seeded.stdout)
    assert token and password, seeded.stdout
    server = subprocess.Popen(
        [str(BIN / "sensorhub"), "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield {"base": base, "token": token.group(1), "password": password.group(1)}
    finally:
        server.terminate()
        server.wait(20)


@pytest.fixture
def env(demo: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("SENSORHUB_URL", demo["base"])
    monkeypatch.setenv("SENSORHUB_TOKEN", demo["token"])
    return demo


@pytest.fixture
def c(env: dict[str, str]) -> Iterator[sc.Client]:
    with sc.Client() as client:
        yield client


def _limited_token(demo: dict[str, str], scopes: list[str]) -> str:
    """Mint a narrower PAT through the session-authenticated management API (as the web UI does)."""
    with httpx.Client(base_url=demo["base"]) as h:
        login = h.post("/api/auth/login", json={"email": "demo@example.com", "password": demo["password"]})
        login.raise_for_status()
        created = h.post(
            "/api/tokens",
            json={"name": f"sdk-e2e-{'-'.join(scopes)}", "scopes": scopes, "expires_in_days": 1},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
        created.raise_for_status()
        return str(created.json()["token"])


def test_the_three_lines_from_the_issue(env):
    c = sc.Client()
    parcels = list(c.entities(type="AgriParcel"))
    df = c.timeseries(STATION, attributes=["temperature"], resolution=200, **JANUARY)
    assert len(parcels) >= 5
    assert {p["type"] for p in parcels} == {"AgriParcel"}
    assert 100 <= len(df) <= 200
    assert list(df.columns) == ["temperature"]
    assert str(df.index.tz) == "UTC"
    assert df.index.min() >= pd.Timestamp(JANUARY["start"])
    assert df.index.max() < pd.Timestamp(JANUARY["end"])
    assert df.attrs["units"] == {"temperature": "CEL"}
    assert -40 < df["temperature"].min() < df["temperature"].max() < 50
    c.close()


def test_paging_follows_the_servers_next_links_to_every_entity(c):
    total = c.count_entities()
    ids = [e["id"] for e in c.entities(page_size=5)]
    assert len(ids) == total > 5
    assert len(set(ids)) == total
    assert [e["id"] for e in c.entities(page_size=500)] == ids


def test_arrow_and_json_answers_give_the_same_frame(c):
    arrow = c.timeseries(STATION, ["temperature", "relativeHumidity"], resolution=200, **JANUARY)
    plain = c.timeseries(
        STATION, ["temperature", "relativeHumidity"], resolution=200, as_frame=False, **JANUARY
    )
    from_json = plain.to_frame()
    pd.testing.assert_frame_equal(arrow, from_json, check_freq=False)
    assert arrow.attrs == from_json.attrs
    assert arrow.attrs["bucket_seconds"] == plain.bucket_seconds == 21600
    assert arrow.attrs["aggregation"] == plain.aggregation == "avg"


def test_raw_points_come_back_unaggregated(c):
    df = c.timeseries(STATION, "temperature", start="2026-01-01T00:00:00Z", end="2026-01-01T01:00:00Z")
    assert len(df) == 6  # a reading every 10 minutes
    assert df.attrs["bucket_seconds"] is None
    assert df.attrs["aggregation"] is None


def test_query_aligns_named_series(c):
    df = c.query(
        [
            (STATION, "temperature"),
            {"entity_id": "urn:ngsi-ld:WeatherObserved:station-2", "attribute": "temperature"},
        ],
        start="2026-01-01",
        end="2026-01-08",
        resolution=7 * 24,
    )
    assert list(df.columns) == [f"{STATION}.temperature", "urn:ngsi-ld:WeatherObserved:station-2.temperature"]
    assert len(df) == 7 * 24
    assert df.attrs["units"][f"{STATION}.temperature"] == "CEL"


def test_latest_values_grants_and_introspection(c):
    devices = c.devices()
    assert devices and devices == c.latest()
    assert c.devices(page_size=1) == devices  # one device per request, every page read
    one = c.device(devices[0]["id"])
    assert one["id"] == devices[0]["id"]
    sensors = c.sensors()
    assert len(sensors) > 2 and c.sensors(page_size=2) == sensors
    assert c.sensor(sensors[0]["id"])["id"] == sensors[0]["id"]
    assert c.managements()
    me = c.whoami()
    assert set(me["scopes"]) >= {"entities", "timeseries", "export", "telemetry", "ingest"}
    assert me == c.token_info()
    assert len(c.recent(limit=3)) == 3


def test_leaf_rows_page_through_the_cursor(c):
    rows = list(c.data(organisation="demo", department="farm", limit=2500, page_size=1000))
    assert len(rows) == 2500
    assert len({(r["time"], r["entity"], r["metric"]) for r in rows}) == 2500
    df = c.data_frame(
        organisation="demo", metric="temperature", start="2026-01-01", end="2026-01-01T01:00:00Z"
    )
    assert not df.empty
    assert set(df["metric"]) == {"temperature"}
    assert str(df["time"].dt.tz) == "UTC"
    assert df["time"].min() >= pd.Timestamp("2026-01-01T00:00:00Z")
    assert df["time"].max() < pd.Timestamp("2026-01-01T01:00:00Z")
    assert set(df["unit"]) == {"CEL"}


def test_assets_walk_every_spring_page(c):
    small = [a["id"] for a in c.assets(size=5)]
    assert len(small) == c.count_entities()
    assert [a["id"] for a in c.assets(size=100)] == small


def test_export_downloads_with_the_signature_alone(c, tmp_path):
    result = c.export([(STATION, "temperature")], **JANUARY, format="parquet")
    assert result.rows == 30 * 24 * 6
    assert result.truncated is False
    path = result.download(tmp_path)
    assert path.stat().st_size > 0
    df = result.to_frame()
    assert len(df) == result.rows
    assert str(df["timestamp"].dt.tz) == "UTC"
    # The URL alone is the credential: a plain GET without any token gets the file.
    url = httpx.URL(c.base_url).join(result.download_url)
    assert httpx.get(url).status_code == 200


def test_a_bucketed_export_names_bucket_and_aggregation_as_the_time_series_api_does(c):
    daily = c.export([(STATION, "temperature")], **JANUARY, format="csv", bucket="1d", aggregation="max")
    assert daily.rows == 30
    frame = daily.to_frame()
    raw = c.timeseries(STATION, "temperature", **JANUARY, resolution=100_000)
    expected = raw["temperature"].resample("1D").max()
    assert frame[f"{STATION}.temperature"].tolist() == expected.tolist()


def test_a_capped_export_warns(c):
    with pytest.warns(UserWarning, match="truncated at 10000 rows"):
        result = c.export([(STATION, "temperature")], start="2025-12-01", end="2026-11-01", format="csv")
    assert result.truncated is True
    assert len(result.to_frame()) == 10000


def test_backfill_is_idempotent_and_readable(c):
    index = pd.date_range("2020-01-01T00:00:00Z", periods=1200, freq="10min")
    frame = pd.DataFrame({"soilMoisture": [20.0 + i / 100 for i in range(1200)]}, index=index)
    progress = []
    first = c.backfill(
        "urn:ngsi-ld:Device:soil-01", frame, chunk_size=500, progress=lambda s, t: progress.append((s, t))
    )
    again = c.backfill("urn:ngsi-ld:Device:soil-01", frame, chunk_size=500)
    assert progress == [(500, 1200), (1000, 1200), (1200, 1200)]
    assert (first.accepted, first.duplicates, first.chunks) == (1200, 0, 3)
    assert (again.accepted, again.duplicates) == (0, 1200)
    back = c.timeseries(
        "urn:ngsi-ld:Device:soil-01",
        "soilMoisture",
        start=index[0],
        end=index[-1] + pd.Timedelta("10min"),
        resolution=5000,
    )
    assert back["soilMoisture"].tolist() == pytest.approx(frame["soilMoisture"].tolist())


def test_errors_from_the_real_server_are_typed(demo, c):
    with pytest.raises(sc.NotFound) as info:
        c.entity("urn:ngsi-ld:AgriParcel:does-not-exist")
    assert info.value.problem_type == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    assert info.value.request_id

    from sensorhub_client._auth import base62_checksum

    unknown = "shub_pat_" + "A" * 43
    unknown += base62_checksum(unknown)
    with sc.Client(demo["base"], unknown) as stranger, pytest.raises(sc.AuthenticationError):
        stranger.whoami()

    limited = _limited_token(demo, ["entities"])
    with sc.Client(demo["base"], limited) as narrow:
        assert narrow.count_entities(type="AgriParcel") >= 5
        with pytest.raises(sc.PermissionDenied) as denied:
            narrow.timeseries(STATION, "temperature", **JANUARY)
    assert denied.value.missing_scope == "timeseries"
    for text in (str(denied.value), repr(denied.value)):
        assert limited not in text


def test_debug_logs_of_real_http_traffic_never_show_the_token(env, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "sensorhub_client"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    with sc.Client() as client:
        client.whoami()
        list(client.entities(type="AgriParcel", page_size=5))
    assert any(r.name.startswith("httpcore") for r in caplog.records), "httpcore debug logging should be on"
    for record in caplog.records:
        assert env["token"] not in record.getMessage()


def test_async_client_against_the_server(env):
    async def main() -> tuple[int, int, int]:
        async with sc.AsyncClient() as ac:
            ids = [e["id"] async for e in ac.entities(page_size=7)]
            df = await ac.timeseries(STATION, ["temperature"], resolution=200, **JANUARY)
            return len(ids), await ac.count_entities(), len(df)

    n, total, points = asyncio.run(main())
    assert n == total
    assert 100 <= points <= 200


def test_the_example_notebook_runs_top_to_bottom(env):
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4
    namespace: dict[str, Any] = {}
    for number, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell["outputs"] == [] and cell["execution_count"] is None, "notebook outputs must be cleared"
        source = "".join(cell["source"])
        code = compile(source, f"{NOTEBOOK.name}[{number}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. a truncated export in the notebook would be a bug
            result = eval(code, namespace)  # our own notebook's cells, run the way Jupyter runs them
            if asyncio.iscoroutine(result):
                asyncio.run(result)
    assert len(namespace["parcels"]) >= 5
    assert not namespace["df"].empty
