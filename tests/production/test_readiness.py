"""/readyz reports every dependency: database, Redis, the export store (local folder or S3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sensorhub.api import health
from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.migrate import upgrade
from tests.conftest import TEST_SECRET_KEY
from tests.production.conftest import free_port


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _readyz(settings: Settings) -> tuple[int, dict[str, object]]:
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    health._s3_checked.clear()
    with TestClient(create_app(settings, ctx)) as c:
        r = c.get("/readyz")
    ctx.db.dispose()
    return r.status_code, r.json()


def test_readyz_local_export_store(tmp_path: Path) -> None:
    code, body = _readyz(Settings(data_dir=tmp_path, env="test"))
    assert code == 200 and body["status"] == "ok"
    assert body["checks"]["export_store"] == {"status": "ok", "kind": "local"}  # type: ignore[index]
    assert "redis" not in body["checks"]  # type: ignore[operator]


def test_readyz_s3_export_store(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="exports")
    code, body = _readyz(
        Settings(
            data_dir=tmp_path, env="test", export_store="s3://exports/sensorhub", s3_endpoint_url=s3_endpoint
        )
    )
    assert code == 200 and body["checks"]["export_store"]["status"] == "ok", body  # type: ignore[index]
    # A missing bucket degrades readiness (exports fail) without taking the worker out of rotation.
    code, body = _readyz(
        Settings(data_dir=tmp_path, env="test", export_store="s3://missing/x", s3_endpoint_url=s3_endpoint)
    )
    assert code == 200 and body["status"] == "degraded", body
    assert body["checks"]["export_store"]["status"] == "degraded"  # type: ignore[index]


def test_readyz_is_503_without_the_database(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        env="test",
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/x",
        secret_key=TEST_SECRET_KEY,
    )
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["database"]["status"] == "error"
        assert c.get("/healthz").status_code == 200  # liveness: the process is fine, do not restart it
    ctx.db.dispose()
