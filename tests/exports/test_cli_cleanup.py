"""``sensorhub exports cleanup`` deletes the files of expired exports, on both backends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sensorhub.cli import app as cli
from sensorhub.entities.models import Entity
from tests.builders import World, bearer
from tests.exports.conftest import STATION, export, ingest, minutes


def test_cli_cleanup(
    client: TestClient,
    world: World,
    station: tuple[Entity, Entity],
    exports_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = world.ctx.settings
    monkeypatch.setenv("SENSORHUB_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("SENSORHUB_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("SENSORHUB_SECRET_KEY", settings.resolved_secret_key)  # as on every host
    ingest(world, station[0], "temperature", minutes(5), [1.0] * 5)
    token = world.pat("ana@acme.test", ["export"])
    settings.export_url_ttl_seconds = 1
    body = export(client, token, [(STATION, "temperature")]).json()
    assert [p.name for p in exports_dir.iterdir()] == [f"{body['id']}.parquet"]
    time.sleep(1.1)
    r = CliRunner().invoke(cli, ["exports", "cleanup", "--data-dir", str(settings.data_dir)])
    assert r.exit_code == 0, r.output
    assert "deleted 1 expired export file(s)" in r.output
    assert list(exports_dir.iterdir()) == []
    listed = client.get("/api/datahub/exports", headers=bearer(token)).json()
    assert listed[0]["status"] == "expired"
    r = CliRunner().invoke(cli, ["exports", "cleanup", "--data-dir", str(settings.data_dir)])
    assert "deleted 0 expired export file(s)" in r.output
