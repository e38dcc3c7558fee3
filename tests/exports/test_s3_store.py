"""The S3 export store against a real S3-compatible server on loopback (moto in server mode)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from sensorhub.db import utcnow
from sensorhub.entities.models import Entity
from sensorhub.export.service import cleanup_expired
from sensorhub.export.stores import S3Store, store_from_settings
from tests.builders import World, bearer
from tests.exports.conftest import STATION, export, ingest, minutes, read, revoke_token

BUCKET = "sensorhub-exports"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> object:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    c = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    existing = [b["Name"] for b in c.list_buckets().get("Buckets", [])]
    if BUCKET not in existing:
        c.create_bucket(Bucket=BUCKET)
    for obj in c.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        c.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return c


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_s3_presigned_download(
    client: TestClient,
    world: World,
    station: tuple[Entity, Entity],
    s3_endpoint: str,
    s3_client: object,
    fmt: str,
) -> None:
    settings = world.ctx.settings
    settings.export_store = f"s3://{BUCKET}/exports/acme"
    settings.s3_endpoint_url = s3_endpoint
    store = store_from_settings(settings)
    assert isinstance(store, S3Store)
    client.app.state.export_store = store  # type: ignore[attr-defined]

    values = [float(i) / 3 for i in range(500)]
    ingest(world, station[0], "temperature", minutes(500), values, unit="CEL")
    token = world.pat("ana@acme.test", ["export"])
    r = export(client, token, [(STATION, "temperature")], fmt)
    assert r.status_code == 200, r.text
    body = r.json()
    url = body["download_url"]
    # Our own signed URL: the server checks the credential, then redirects to a presigned URL that
    # lives one minute (S3 cannot revoke a presigned URL; a short one is as close as it gets).
    assert url.startswith(f"http://testserver/api/datahub/exports/{body['id']}/download?")
    fresh = TestClient(client.app)
    hop = fresh.get(url, follow_redirects=False)
    assert hop.status_code == 307 and hop.headers["cache-control"] == "no-store"
    presigned = hop.headers["location"]
    assert presigned.startswith(f"{s3_endpoint}/{BUCKET}/exports/acme/{body['id']}.{fmt}?")
    assert "X-Amz-Signature=" in presigned and "X-Amz-Expires=60&" in presigned + "&"

    # The presigned URL alone: no token, no AWS credentials. HEAD gets its own presigned URL.
    got = httpx.get(presigned)
    assert got.status_code == 200, got.text
    head = fresh.head(url, follow_redirects=False)
    assert head.status_code == 307
    assert httpx.head(head.headers["location"]).status_code == 200
    assert got.headers["content-disposition"].startswith('attachment; filename="sensorhub-export-')
    df = read(got.content, fmt)
    assert df[f"{STATION}.temperature"].tolist() == values

    # Nothing is left in the local staging folder.
    staging = settings.data_dir / "exports" / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []

    listed = client.get("/api/datahub/exports", headers=bearer(token)).json()
    assert listed[0]["id"] == body["id"] and listed[0]["download_url"].startswith("http://testserver/")

    # Revoking the token that made the export stops the link at once (before any redirect).
    revoke_token(world, token)
    refused = fresh.get(url, follow_redirects=False)
    assert refused.status_code == 403 and "was revoked" in refused.json()["message"]

    # Cleanup deletes the object once the export has expired.
    key = f"exports/acme/{body['id']}.{fmt}"
    assert s3_client.head_object(Bucket=BUCKET, Key=key)  # type: ignore[attr-defined]
    assert (
        cleanup_expired(world.ctx.db, store, stale_after_seconds=world.ctx.settings.export_url_ttl_seconds)
        == 0
    )
    assert (
        cleanup_expired(
            world.ctx.db, store, stale_after_seconds=3600, now=lambda: utcnow() + timedelta(hours=2)
        )
        == 1
    )
    objects = s3_client.list_objects_v2(Bucket=BUCKET).get("Contents", [])  # type: ignore[attr-defined]
    assert [o["Key"] for o in objects] == []
