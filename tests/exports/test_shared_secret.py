"""One shared SENSORHUB_SECRET_KEY: a deployment several hosts may serve (PostgreSQL and/or Redis)
refuses to start without it, so an export link signed on one host is accepted on every other; the
embedded default (SQLite, no Redis) still needs nothing and generates its own secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sensorhub.app import create_app
from sensorhub.cli import app as cli
from sensorhub.config import SECRET_KEY_FILE, Settings, SharedSecretMissing
from sensorhub.context import AppContext
from tests.builders import World
from tests.conftest import TEST_SECRET_KEY, _truncate_pg
from tests.exports.conftest import STATION, download, export, ingest, minutes

PG = "postgresql://nobody@127.0.0.1:1/unused"  # never connected to: the check comes first


@pytest.fixture(autouse=True)
def _no_secret_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SENSORHUB_SECRET_KEY", "SENSORHUB_DATABASE_URL", "SENSORHUB_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SENSORHUB_DATA_DIR", "/nonexistent-unused")


@pytest.mark.parametrize(
    ("overrides", "uses"),
    [
        ({"database_url": PG}, "a PostgreSQL database"),
        ({"redis_url": "redis://127.0.0.1:1/0"}, "Redis"),
        ({"database_url": PG, "redis_url": "redis://127.0.0.1:1/0"}, "a PostgreSQL database"),
    ],
)
def test_a_multi_host_deployment_without_a_secret_is_refused(
    tmp_path: Path, overrides: dict[str, str], uses: str
) -> None:
    settings = Settings(data_dir=tmp_path, **overrides)  # type: ignore[arg-type]
    assert settings.serves_several_hosts
    with pytest.raises(SharedSecretMissing) as info:
        settings.resolved_secret_key
    message = str(info.value)
    assert f"uses {uses}" in message and "SENSORHUB_SECRET_KEY" in message and "every host" in message
    assert not (tmp_path / SECRET_KEY_FILE).exists()  # no per-host secret was generated
    with pytest.raises(SharedSecretMissing):
        create_app(settings, AppContext.build(settings))


def test_the_refusal_names_the_secret_this_host_generated_before(tmp_path: Path) -> None:
    """A host moved from SQLite to PostgreSQL keeps its old links valid by exporting its old secret."""
    Settings(data_dir=tmp_path).resolved_secret_key  # the embedded mode generates one
    with pytest.raises(SharedSecretMissing, match=r"SENSORHUB_SECRET_KEY=\$\(cat .*secret\.key\)"):
        Settings(data_dir=tmp_path, database_url=PG).resolved_secret_key


def test_sensorhub_serve_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path)], env={"SENSORHUB_DATABASE_URL": PG})
    assert r.exit_code == 2
    assert "SENSORHUB_SECRET_KEY is not set" in r.output and "PostgreSQL" in r.output


def test_exports_cleanup_refuses_with_the_same_message(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        cli, ["exports", "cleanup", "--data-dir", str(tmp_path)], env={"SENSORHUB_DATABASE_URL": PG}
    )
    assert r.exit_code == 2 and "SENSORHUB_SECRET_KEY is not set" in r.output


def test_with_the_secret_set_a_multi_host_deployment_uses_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=PG, secret_key=TEST_SECRET_KEY)
    assert settings.resolved_secret_key == TEST_SECRET_KEY
    assert not (tmp_path / SECRET_KEY_FILE).exists()


def test_the_embedded_default_still_needs_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert not settings.serves_several_hosts
    ctx = AppContext.build(settings)
    from sensorhub.migrate import upgrade

    upgrade(ctx.db)
    with TestClient(create_app(settings, ctx)) as c:
        assert c.get("/readyz").status_code == 200
    ctx.db.dispose()
    generated = (tmp_path / "data" / SECRET_KEY_FILE).read_text().strip()
    assert len(generated) >= 48 and Settings(data_dir=tmp_path / "data").resolved_secret_key == generated


def test_an_export_link_signed_on_one_host_downloads_on_another(pg_url: str, tmp_path: Path) -> None:
    """Two hosts, one PostgreSQL database and one export folder, the same secret: host B serves what
    host A signed."""
    _truncate_pg(pg_url)
    shared_exports = tmp_path / "exports"

    def host(name: str) -> tuple[Settings, AppContext, TestClient]:
        settings = Settings(
            data_dir=tmp_path / name,
            database_url=pg_url,
            export_store=str(shared_exports),
            secret_key=TEST_SECRET_KEY,
        )
        ctx = AppContext.build(settings)
        return settings, ctx, TestClient(create_app(settings, ctx))

    _, ctx_a, client_a = host("a")
    _, ctx_b, client_b = host("b")
    try:
        world = World(ctx_a)
        world.org("acme")
        world.user("ana@acme.test", "acme", "member")
        station = world.entity("acme", "main", STATION, "WeatherObserved")
        ingest(world, station, "temperature", minutes(10), [1.0] * 10)
        made = export(client_a, world.pat("ana@acme.test", ["export"]), [(STATION, "temperature")], "csv")
        assert made.status_code == 200, made.text
        assert download(client_b, made.json()["download_url"]).status_code == 200
    finally:
        ctx_a.db.dispose()
        ctx_b.db.dispose()
