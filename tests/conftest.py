"""Fixtures: the same suite runs on SQLite (always) and PostgreSQL (the local server).

PostgreSQL tests skip when no server answers on 127.0.0.1:5432, unless SENSORHUB_REQUIRE_SERVICES=1
(CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Base, Database
from sensorhub.migrate import upgrade
from tests.builders import World

PG_ADMIN_URL = os.environ.get(
    "SENSORHUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SENSORHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("SENSORHUB_REQUIRE_SERVICES") == "1"
# SENSORHUB_TEST_REDIS=1: the postgresql backend also runs with Redis (bus + shared rate limits).
TEST_WITH_REDIS = os.environ.get("SENSORHUB_TEST_REDIS") == "1"


def service_unavailable(what: str, err: Exception) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (SENSORHUB_REQUIRE_SERVICES=1) but unavailable: {err}")
    pytest.skip(f"{what} unavailable: {err}")


@contextmanager
def pg_databases() -> Iterator[Callable[[bool], str]]:
    """Factory of fresh PostgreSQL databases next to PG_ADMIN_URL's (migrated to head when asked), all
    dropped at the end; skips (fails in CI) when PostgreSQL does not answer."""
    names: list[str] = []
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as e:
        service_unavailable("PostgreSQL", e)

    def make(migrated: bool = True) -> str:
        name = f"sensorhub_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        if migrated:
            db = Database(Settings(database_url=url, data_dir=Path("/tmp")))
            upgrade(db)
            db.dispose()
        return url

    try:
        yield make
    finally:
        with admin.connect() as c:
            for name in names:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped at the end."""
    with pg_databases() as make:
        yield make(True)


@pytest.fixture
def fresh_pg() -> Iterator[Callable[[bool], str]]:
    """Factory of empty PostgreSQL databases (migrated to head when asked); all dropped at the end."""
    with pg_databases() as make:
        yield make


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test (migrating per test would be slow)."""
    d = tmp_path_factory.mktemp("sqlite-template")
    settings = Settings(data_dir=d)
    db = Database(settings)
    upgrade(db)
    db.dispose()
    return d / "sensorhub.db"


def _truncate_pg(url: str) -> None:
    eng = create_engine(url)
    with eng.begin() as c:
        tables = [t.name for t in Base.metadata.sorted_tables]
        extra = (
            c.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        names = sorted(set(tables) | {t for t in extra if not t.startswith("measurements_")})
        if names:
            c.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))
    eng.dispose()


# PostgreSQL (or Redis) deployments must set one shared secret (Settings.check_secret_key).
TEST_SECRET_KEY = "test-secret-key-shared-by-every-host-0123456789"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, data_dir / "sensorhub.db")
        return Settings(data_dir=data_dir, env="test")
    url: str = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    if TEST_WITH_REDIS:
        redis_url: str = request.getfixturevalue("redis_url")
        # A prefix per test: channels and rate-limit keys never collide across tests or parallel runs.
        return Settings(
            data_dir=data_dir,
            database_url=url,
            env="test",
            redis_url=redis_url,
            redis_prefix=f"sensorhub-test-{uuid.uuid4().hex[:10]}:",
            secret_key=TEST_SECRET_KEY,
        )
    return Settings(data_dir=data_dir, database_url=url, env="test", secret_key=TEST_SECRET_KEY)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis of this machine (SENSORHUB_TEST_REDIS_URL), skipped or failed when it does not answer."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as e:
        service_unavailable("Redis", e)
    return REDIS_URL


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    c = AppContext.build(settings)
    yield c
    c.db.dispose()


@pytest.fixture
def app(settings: Settings, ctx: AppContext) -> FastAPI:
    return create_app(settings, ctx)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def world(ctx: AppContext) -> World:
    return World(ctx)


@pytest.fixture
def make_client(app: FastAPI) -> Iterator[object]:
    """Extra independent clients (separate cookie jars) for multi-user tests."""
    clients: list[TestClient] = []

    def make() -> TestClient:
        c = TestClient(app, base_url="http://testserver")
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _rate_windows_do_not_roll_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the rate-limit clock to the middle of a 5-minute window, so that a test counting requests
    never straddles a window boundary (which would reset its count and make it flaky)."""
    import time as _time

    # A window in the near future (not the past): Redis keys expire at their window's end.
    base = (int(_time.time()) // 3600 + 1) * 3600 + 150.0
    monkeypatch.setattr("sensorhub.auth.ratelimit.clock", lambda: base)


@pytest.fixture
def clock() -> Iterator[object]:
    """The server's clock (``sensorhub.db.CLOCK``): ``clock.advance(timedelta(days=7))`` lets days pass."""
    from sensorhub.db import CLOCK

    CLOCK.reset()
    yield CLOCK
    CLOCK.reset()
