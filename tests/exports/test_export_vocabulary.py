"""One vocabulary with time series v2: ``aggregation`` is the function per bucket, ``bucket`` the width.

The older export form (the bucket in ``aggregation``, the function in ``function``) is still read, since
a bucket label is never a function name; a request mixing both forms is a 400 naming the current fields.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorhub.entities.models import Entity
from sensorhub.export.models import Export
from tests.builders import World, bearer
from tests.exports.conftest import STATION, download, export, ingest, minutes

SERIES = [(STATION, "temperature")]


@pytest.fixture
def token(world: World, station: tuple[Entity, Entity]) -> str:
    ingest(world, station[0], "temperature", minutes(180), [float(i) for i in range(180)], unit="CEL")
    return world.pat("ana@acme.test", ["export"])


def file_of(client: TestClient, token: str, **body: Any) -> tuple[dict[str, Any], bytes]:
    r = export(client, token, SERIES, "csv", **body)
    assert r.status_code == 200, r.text
    return r.json(), download(client, r.json()["download_url"]).content


@pytest.mark.parametrize(
    ("older", "current"),
    [
        ({"aggregation": "1h", "function": "max"}, {"bucket": "1h", "aggregation": "max"}),
        ({"aggregation": "15m"}, {"bucket": "15m"}),
        ({"aggregation": "raw"}, {}),
        ({"aggregation": "1H", "function": "FIRST"}, {"bucket": "1h", "aggregation": "first"}),
    ],
)
def test_the_older_form_gives_the_same_file_and_answers_in_the_current_vocabulary(
    client: TestClient, token: str, older: dict[str, str], current: dict[str, str]
) -> None:
    old_body, old_file = file_of(client, token, **older)
    new_body, new_file = file_of(client, token, **current)
    assert old_file == new_file
    for body in (old_body, new_body):
        assert "function" not in body
        assert (body["bucket"], body["aggregation"]) == (new_body["bucket"], new_body["aggregation"])
    if current:
        assert new_body["bucket"] == current["bucket"].lower()
        assert new_body["aggregation"] == current.get("aggregation", "avg")
    else:
        assert (new_body["bucket"], new_body["aggregation"]) == ("raw", None)


@pytest.mark.parametrize(
    "mixed",
    [
        {"bucket": "1h", "function": "max"},
        {"bucket": "1h", "aggregation": "1h"},
        {"aggregation": "max", "function": "min"},
    ],
)
def test_mixing_the_two_forms_is_a_400_naming_the_current_fields(
    client: TestClient, token: str, mixed: dict[str, str]
) -> None:
    r = export(client, token, SERIES, "csv", **mixed)
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert "send the bucket in 'bucket' and the function in 'aggregation'" in message


def test_the_function_alone_never_silently_exports_raw_points(client: TestClient, token: str) -> None:
    for body in ({"aggregation": "max"}, {"function": "max"}):
        r = export(client, token, SERIES, "csv", **body)
        assert r.status_code == 400 and "applies to bucketed exports only" in r.json()["message"]


def test_inline_csv_and_parquet_metadata_use_the_current_names(client: TestClient, token: str) -> None:
    inline = client.post(
        "/api/datahub/export",
        json={
            "start_time": "2026-01-01T00:00:00Z",
            "end_time": "2026-01-02T00:00:00Z",
            "series": [{"entity_id": STATION, "attribute": "temperature"}],
            "bucket": "1h",
            "aggregation": "min",
        },
        headers={**bearer(token), "Accept": "text/csv"},
    )
    assert inline.status_code == 200, inline.text
    assert inline.text.splitlines()[1:] == [
        '"2026-01-01T00:00:00Z",0',
        '"2026-01-01T01:00:00Z",60',
        '"2026-01-01T02:00:00Z",120',
    ]
    r = export(client, token, SERIES, "parquet", bucket="1h", aggregation="min")
    meta = pq.read_table(io.BytesIO(download(client, r.json()["download_url"]).content)).schema.metadata
    summary = json.loads(meta[b"sensorhub.export"])
    assert (summary["bucket"], summary["aggregation"]) == ("1h", "min") and "function" not in summary


def test_exports_recorded_in_the_older_form_list_in_the_current_vocabulary(
    client: TestClient, world: World, token: str
) -> None:
    made = export(client, token, SERIES, "csv", bucket="1h", aggregation="max").json()
    with world.ctx.db.transaction() as s:
        e = s.get(Export, made["id"])
        assert e is not None
        request = {k: v for k, v in (e.request or {}).items() if k not in ("bucket", "aggregation")}
        e.request = {**request, "aggregation": "1h", "function": "max"}  # as recorded before the rename
    listed = client.get("/api/datahub/exports", headers=bearer(token)).json()
    assert [(x["bucket"], x["aggregation"]) for x in listed] == [("1h", "max")]


def test_the_openapi_document_describes_the_current_vocabulary(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    request = schemas["ExportRequest"]["properties"]
    assert (
        "function" in request["aggregation"]["description"] or "avg" in request["aggregation"]["description"]
    )
    assert "bucket width" in request["bucket"]["description"]
    assert request["function"].get("deprecated") is True
    out = schemas["ExportOut"]["properties"]
    assert {"bucket", "aggregation"} <= set(out) and "function" not in out
