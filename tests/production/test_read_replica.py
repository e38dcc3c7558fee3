"""Read replica (SENSORHUB_DATABASE_REPLICA_URL): a real PostgreSQL primary and a streaming replica of
it, both started here (tests/pg_cluster.py). Data reads come from the replica while it is close enough;
credentials, their revocation and every write use the primary; a replica that lags past the bound or is
down leaves the reads to the primary.

Lag is made on purpose by pausing the replica's replay (``pg_wal_replay_pause()``): what the primary
commits meanwhile is not on the replica until replay resumes."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database
from sensorhub.migrate import upgrade
from tests.builders import World, bearer, login
from tests.conftest import TEST_SECRET_KEY, service_unavailable
from tests.pg_cluster import Cluster, Unavailable, primary_and_replica

DEV = "urn:ngsi-ld:Device:replica-1"
OWNER = "owner@example.com"
JANUARY = {"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-02-01T00:00:00Z"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    try:
        with primary_and_replica() as c:
            yield c
    except Unavailable as e:
        service_unavailable("PostgreSQL binaries (initdb, pg_basebackup)", e)


@pytest.fixture
def make_server(cluster: Cluster, tmp_path: Path) -> Iterator[Any]:
    """A database of its own on the primary (migrated, replicated), and apps over it with the replica
    configured: ``make(max_lag=…)`` → (client, context)."""
    name = f"sensorhub_{uuid.uuid4().hex[:8]}"
    cluster.primary.sql(f'CREATE DATABASE "{name}"')
    primary_url, replica_url = cluster.url(cluster.primary, name), cluster.url(cluster.replica, name)
    db = Database(Settings(database_url=primary_url, data_dir=tmp_path))
    upgrade(db)
    db.dispose()
    cluster.wait_replayed()
    opened: list[tuple[TestClient, AppContext]] = []

    def make(max_lag: float = 3600.0) -> tuple[TestClient, AppContext]:
        settings = Settings(
            data_dir=tmp_path,
            env="test",
            secret_key=TEST_SECRET_KEY,
            database_url=primary_url,
            database_replica_url=replica_url,
            database_replica_max_lag_seconds=max_lag,
            database_replica_check_seconds=0,  # every read checks: the tests change the lag at will
            embedded_worker=False,
        )
        ctx = AppContext.build(settings)
        client = TestClient(create_app(settings, ctx), base_url="http://testserver")
        client.__enter__()
        opened.append((client, ctx))
        return client, ctx

    try:
        yield make
    finally:
        cluster.resume_replay()
        for client, ctx in opened:
            client.__exit__(None, None, None)
            ctx.db.dispose()
        cluster.primary.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(ctx: AppContext, cluster: Cluster) -> str:
    """An owner with a token and a device with one point, replicated; the token."""
    w = World(ctx)
    w.org("acme")
    w.user(OWNER, "acme", "owner")
    w.entity("acme", "main", DEV)
    token = w.pat(OWNER)
    return token


def backfill(client: TestClient, token: str, ts: str, value: float) -> None:
    r = client.post(
        f"/v3/devices/{DEV}/backfill",
        json=[{"timestamp": ts, "data": {"temperature": value}}],
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text


def values(client: TestClient, token: str) -> list[float]:
    """The device's temperatures of January 2026, as a client reads them."""
    r = client.get(
        f"/api/timeseries/v2/entities/{DEV}/data",
        params=JANUARY,
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["attributes"].get("temperature", []))


def exported_rows(client: TestClient, token: str) -> int:
    body = {**JANUARY, "series": [{"entity_id": DEV, "attribute": "temperature"}], "format": "csv"}
    r = client.post("/api/datahub/export", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    return int(r.json()["rows"])


def entity_status(client: TestClient, token: str, entity_id: str) -> int:
    return client.get(f"/ngsi-ld/v1/entities/{entity_id}", headers=bearer(token)).status_code


def test_reads_come_from_the_replica_and_writes_go_to_the_primary(make_server: Any, cluster: Cluster) -> None:
    client, ctx = make_server()
    token = seed(ctx, cluster)
    backfill(client, token, "2026-01-01T00:00:00Z", 1.0)
    cluster.wait_replayed()
    assert values(client, token) == [1.0]

    cluster.pause_replay()
    backfill(client, token, "2026-01-01T00:01:00Z", 2.0)  # accepted: written on the primary
    World(ctx).entity("acme", "main", "urn:ngsi-ld:Device:replica-2")
    # The replica has not replayed them yet, and the reads are served there: neither is seen yet.
    assert values(client, token) == [1.0]
    assert (
        exported_rows(client, token) == 1
    )  # the export's record is written on the primary, its data read here
    assert entity_status(client, token, "urn:ngsi-ld:Device:replica-2") == 404
    assert entity_status(client, token, DEV) == 200
    # ... while the primary has both.
    name = ctx.settings.resolved_database_url.rsplit("/", 1)[1]
    assert cluster.primary.sql("SELECT count(*) FROM measurements", name) == "2"
    assert cluster.replica.sql("SELECT count(*) FROM measurements", name) == "1"

    cluster.resume_replay()
    cluster.wait_replayed()
    assert values(client, token) == [1.0, 2.0]
    assert exported_rows(client, token) == 2
    assert entity_status(client, token, "urn:ngsi-ld:Device:replica-2") == 200
    ready = client.get("/readyz").json()["checks"]["database_replica"]
    # In use and within its bound; not necessarily 0: the export job may still write on the primary.
    assert ready["status"] == "ok" and ready["in_use"] is True
    assert 0 <= ready["lag_seconds"] < ready["max_lag_seconds"]


def test_tokens_are_checked_on_the_primary_however_far_the_replica_lags(
    make_server: Any, cluster: Cluster
) -> None:
    client, ctx = make_server()
    seed(ctx, cluster)
    cluster.wait_replayed()
    login(client, OWNER)
    cluster.pause_replay()

    # A token made while the replica cannot know it works at once ...
    made = client.post("/api/tokens", json={"name": "fresh", "scopes": ["timeseries", "entities"]})
    assert made.status_code == 201, made.text
    fresh = made.json()["token"]
    assert values(client, fresh) == []
    assert entity_status(client, fresh, DEV) == 200
    # ... and once revoked is refused at once, though the replica still holds it as active.
    assert client.delete(f"/api/tokens/{made.json()['id']}").status_code == 200
    for path in (f"/api/timeseries/v2/entities/{DEV}/data", f"/ngsi-ld/v1/entities/{DEV}"):
        r = client.get(path, params=JANUARY, headers=bearer(fresh))
        assert r.status_code == 401, (path, r.text)
    name = ctx.settings.resolved_database_url.rsplit("/", 1)[1]
    digest_count = "SELECT count(*) FROM credentials WHERE name = 'fresh'"
    assert cluster.replica.sql(digest_count, name) == "0"  # the replica has not even seen it


def test_reads_fall_back_to_the_primary_past_the_lag_bound(
    make_server: Any, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    client, ctx = make_server(max_lag=1.0)
    token = seed(ctx, cluster)
    backfill(client, token, "2026-01-01T00:00:00Z", 1.0)
    cluster.wait_replayed()
    assert values(client, token) == [1.0]

    caplog.set_level(logging.INFO, logger="sensorhub.replica")
    cluster.pause_replay()
    backfill(client, token, "2026-01-01T00:01:00Z", 2.0)
    replica = ctx.db.replica
    assert replica is not None
    deadline = time.monotonic() + 30
    while replica.check().usable:  # until the unreplayed write is older than the bound
        assert time.monotonic() < deadline, "the replica never counted as lagging"
        time.sleep(0.1)
    # Past the bound, the primary answers: the write is read back at once.
    assert values(client, token) == [1.0, 2.0]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    check = ready.json()["checks"]["database_replica"]
    assert check["in_use"] is False and check["lag_seconds"] > 1.0 and check["reason"].startswith("lagging")
    assert any("reads go to the primary: lagging" in r.getMessage() for r in caplog.records)

    cluster.resume_replay()
    cluster.wait_replayed()
    assert values(client, token) == [1.0, 2.0]
    assert replica.check().usable
    assert any("read replica in use" in r.getMessage() for r in caplog.records)


def test_reads_fall_back_to_the_primary_when_the_replica_is_down(
    make_server: Any, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    client, ctx = make_server()
    token = seed(ctx, cluster)
    backfill(client, token, "2026-01-01T00:00:00Z", 1.0)
    cluster.wait_replayed()
    assert values(client, token) == [1.0]
    caplog.set_level(logging.WARNING, logger="sensorhub.replica")
    cluster.replica.stop()
    try:
        backfill(client, token, "2026-01-01T00:01:00Z", 2.0)
        assert values(client, token) == [1.0, 2.0]
        assert entity_status(client, token, DEV) == 200
        check = client.get("/readyz").json()["checks"]["database_replica"]
        assert check["in_use"] is False and check["reason"].startswith("unreachable")
        assert any("reads go to the primary: unreachable" in r.getMessage() for r in caplog.records)
        assert "postgres@" not in caplog.text  # the connection URL is never logged
    finally:
        cluster.replica.start()


def test_a_replica_needs_a_postgresql_primary(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both must be postgresql:// URLs"):
        Database(Settings(data_dir=tmp_path, database_replica_url="postgresql://u@127.0.0.1:1/db"))
