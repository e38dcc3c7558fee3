"""SQLite's one write lock is taken only by requests that write (issue 10): a login with a wrong
password, an unauthenticated or refused request never waits for it, and a request that does write and
cannot get it in time is a 503 with Retry-After, never a 500."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from sensorhub.accounts.models import Organisation
from sensorhub.config import Settings
from tests.builders import World, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's database-wide write lock


@pytest.fixture
def lock_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("SENSORHUB_DB_LOCK_TIMEOUT_SECONDS", "4")
    return 4.0


@pytest.fixture
def other_writer(lock_timeout: float, settings: Settings) -> Iterator[sqlite3.Connection]:
    """A connection of another process that will hold the write lock once it runs BEGIN IMMEDIATE."""
    con = sqlite3.connect(settings.data_dir / "sensorhub.db", isolation_level=None)
    yield con
    if con.in_transaction:
        con.rollback()
    con.close()


def test_failed_and_unauthenticated_requests_never_wait_for_the_write_lock(
    other_writer: sqlite3.Connection, lock_timeout: float, client: TestClient, world: World
) -> None:
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    other_writer.execute("BEGIN IMMEDIATE")
    for path, body in (
        ("/api/auth/login", {"email": "a@acme.test", "password": "wrong password"}),
        ("/api/auth/login", {"email": "nobody@acme.test", "password": "x"}),
        ("/api/tokens", {"name": "t", "scopes": ["timeseries"]}),  # no session
    ):
        started = time.monotonic()
        r = client.post(path, json=body)
        assert r.status_code == 401, r.text
        # Answered without waiting for the lock (a wait ends in a 503 after lock_timeout).
        assert time.monotonic() - started < lock_timeout - 1, path


def test_a_write_that_cannot_get_the_lock_is_503_and_works_once_it_is_free(
    other_writer: sqlite3.Connection, client: TestClient, world: World
) -> None:
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    login(client, "a@acme.test")
    other_writer.execute("BEGIN IMMEDIATE")
    # A successful login writes its session row: it waits for the lock, then says "retry".
    r = client.post("/api/auth/login", json={"email": "a@acme.test", "password": "correct-horse-battery"})
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1"
    r = client.post("/api/tokens", json={"name": "t", "scopes": ["timeseries"]})
    assert r.status_code == 503, r.text
    other_writer.rollback()
    r = client.post("/api/tokens", json={"name": "t", "scopes": ["timeseries"]})
    assert r.status_code == 201, r.text


def test_read_then_write_survives_a_writer_committing_in_between(
    other_writer: sqlite3.Connection, world: World
) -> None:
    """Why the lock is taken with BEGIN IMMEDIATE at the first write rather than by upgrading the
    deferred transaction: the upgrade fails (SQLITE_BUSY) once another writer has committed after our
    first read, which no waiting fixes."""
    world.org("acme")
    db = world.ctx.db

    def read_then_write(session_factory: object) -> None:
        with session_factory() as s:  # type: ignore[operator]
            org = s.scalars(select(Organisation)).one()
            other_writer.execute("UPDATE organisations SET name = name || '!'")  # commits (autocommit)
            org.slug = org.slug + "x"
            s.commit()

    with pytest.raises(Exception, match="locked"):
        read_then_write(db.session)  # the old way for a request that writes late
    read_then_write(db.request_session)
    with db.session() as s:
        assert s.execute(text("SELECT slug FROM organisations")).scalar_one() == "acmex"
