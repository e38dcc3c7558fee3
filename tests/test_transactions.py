"""One transaction per request: committed at the edge before the answer is sent, rolled back on any error,
and auth caches invalidated only after a commit."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Grant, User, Workspace
from sensorhub.auth.token_format import digest
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.tokens import service as tokens
from sensorhub.tokens.models import Credential
from tests.builders import World, bearer, login


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No embedded job runner: its jobs share the engine, and the statement counts here are a request's."""
    return settings.model_copy(update={"embedded_worker": False})


def _admin(client: TestClient, world: World) -> None:
    world.org("acme", ("main", "lab"))
    world.user("owner@acme.test", "acme", "owner")
    login(client, "owner@acme.test")


def _committed(ctx: AppContext, query: Any) -> Any:
    """``query`` on a connection of its own: it sees only what has been committed."""
    with ctx.db.engine.connect() as c:
        return c.execute(query).scalar()


@contextmanager
def _failing_commits(ctx: AppContext) -> Iterator[None]:
    """Every commit of a request's session fails the way a lock timeout does."""

    def fail(session: Session) -> None:
        if session.info.get("sqlite_promote_on_write"):  # set on request sessions only
            raise sqlite3.OperationalError("database is locked")

    event.listen(ctx.db.sessionmaker, "before_commit", fail)
    try:
        yield
    finally:
        event.remove(ctx.db.sessionmaker, "before_commit", fail)


def test_a_failed_commit_is_an_error_answer_and_stores_nothing(
    client: TestClient, world: World, ctx: AppContext
) -> None:
    _admin(client, world)
    with _failing_commits(ctx):
        r = client.post("/api/orgs/acme/workspaces", json={"slug": "new"})
    assert r.status_code == 503, r.text
    assert "nothing was stored" in r.json()["message"]
    assert _committed(ctx, select(Workspace.id).where(Workspace.slug == "new")) is None
    assert client.post("/api/orgs/acme/workspaces", json={"slug": "new"}).status_code == 201


class _CheckAtResponseStart:
    """ASGI wrapper: runs ``check`` when the answer's first byte leaves the app."""

    def __init__(self, app: FastAPI, check: Callable[[], Any]) -> None:
        self.app, self.check, self.seen = app, check, []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_and_check(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.append(self.check())
            await send(message)

        await self.app(scope, receive, send_and_check)


def test_the_write_is_committed_before_the_answer_is_sent(
    app: FastAPI, world: World, ctx: AppContext
) -> None:
    probe = _CheckAtResponseStart(
        app, lambda: _committed(ctx, select(Workspace.slug).where(Workspace.slug == "fresh"))
    )
    with TestClient(probe, base_url="http://testserver") as client:  # type: ignore[arg-type]
        _admin(client, world)
        probe.seen.clear()
        r = client.post("/api/orgs/acme/workspaces", json={"slug": "fresh"})
    assert r.status_code == 201
    assert probe.seen == ["fresh"]  # another connection already read it when the 201 started


def test_a_service_error_after_a_write_leaves_nothing_written(
    client: TestClient, world: World, ctx: AppContext
) -> None:
    """The API user and its first grant are written before the unknown workspace is found: all undone."""
    _admin(client, world)
    users_before = _committed(ctx, select(func.count()).select_from(User))
    body = {"name": "robot", "role": "member", "workspaces": ["main", "nowhere"]}
    r = client.post("/api/orgs/acme/api-users", json=body)
    assert r.status_code == 404 and "nowhere" in r.json()["message"]
    assert client.get("/api/orgs/acme/api-users").json() == []
    assert _committed(ctx, select(func.count()).select_from(User)) == users_before
    # The same use case from the web form: the page shows the error, nothing is stored either.
    page = client.post(
        "/orgs/acme/api-users",
        data={"name": "robot", "role": "member", "workspaces": ["main", "nowhere"]},
        headers={"X-CSRF-Token": client.headers["X-CSRF-Token"]},
    )
    assert page.status_code == 404 and "nowhere" in page.text
    assert client.get("/api/orgs/acme/api-users").json() == []
    assert client.post("/api/orgs/acme/api-users", json={"name": "robot"}).status_code == 201


def test_revocation_is_invalidated_only_after_commit(
    client: TestClient, world: World, ctx: AppContext
) -> None:
    world.org("acme")
    world.user("m@acme.test", "acme", "member")
    token = world.pat("m@acme.test", ["timeseries"])
    assert client.get("/api/tokens/self", headers=bearer(token)).status_code == 200  # cached now

    def revoked_in_db() -> bool:
        return (
            _committed(ctx, select(Credential.revoked_at).where(Credential.digest == digest(token)))
            is not None
        )

    seen: list[bool] = []
    ctx.broadcasters.append(lambda: seen.append(revoked_in_db()))

    with pytest.raises(RuntimeError), ctx.db.transaction() as s:
        cred = s.scalars(select(Credential).where(Credential.digest == digest(token))).one()
        tokens.revoke(s, cred, actor_id=None)
        raise RuntimeError("the rest of the transaction failed")
    assert seen == []  # nothing invalidated
    assert not revoked_in_db()
    assert client.get("/api/tokens/self", headers=bearer(token)).status_code == 200

    # Through the API, with a commit that fails: an error, the token keeps working, nothing invalidated.
    login(client, "m@acme.test")
    token_id = client.get("/api/tokens").json()[0]["id"]
    with _failing_commits(ctx):
        assert client.delete(f"/api/tokens/{token_id}").status_code == 503
    assert seen == [] and not revoked_in_db()
    assert client.get("/api/tokens/self", headers=bearer(token)).status_code == 200

    assert client.delete(f"/api/tokens/{token_id}").status_code == 200
    assert seen == [True]  # once, and the revocation was already committed when it ran
    assert client.get("/api/tokens/self", headers=bearer(token)).status_code == 401


def test_the_grants_list_costs_the_same_statements_for_any_number_of_grants(
    client: TestClient, world: World, ctx: AppContext
) -> None:
    _admin(client, world)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def list_grants() -> int:
        statements.clear()
        event.listen(ctx.db.engine, "before_cursor_execute", count)
        try:
            r = client.get("/api/orgs/acme/grants")
        finally:
            event.remove(ctx.db.engine, "before_cursor_execute", count)
        assert r.status_code == 200
        return len(statements)

    def add_grants(n: int) -> None:
        for i in range(n):
            email = f"m{len(grant_users) + i}@acme.test"
            world.user(email, "acme", "member", grant_org=False)
            world.grant(email, "acme", workspace="main")
        grant_users.extend(range(n))

    grant_users: list[int] = []
    add_grants(1)
    one = list_grants()
    add_grants(5)
    six = list_grants()
    assert one == six, statements
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Grant)) == 6
    rows = client.get("/api/orgs/acme/grants").json()
    assert {r["department"] for r in rows} == {"Main"} and all(r["user"] for r in rows)


def test_create_api_key_takes_its_workspaces_from_the_spec_and_leaves_it_as_given(
    world: World, ctx: AppContext
) -> None:
    world.org("acme", ("main",))
    spec = tokens.RestrictionSpec(workspaces=("main",), entities=("urn:a",))
    new = tokens.NewToken("k", ["timeseries"], restrictions=spec)
    with ctx.db.transaction() as s:
        minted = tokens.create_api_key(
            s, accounts.get_org(s, "acme"), new, settings=ctx.settings, created_by=None
        )
        assert "workspaces" in minted.credential.restrictions
        assert "entities" in minted.credential.restrictions
    assert new == tokens.NewToken("k", ["timeseries"], restrictions=spec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.workspaces = ["lab"]  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.restrictions = tokens.RestrictionSpec()  # type: ignore[misc]
