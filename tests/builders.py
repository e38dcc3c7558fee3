"""Builders for tests: real rows through the real services, no mocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, User, Workspace
from sensorhub.context import AppContext
from sensorhub.entities.models import Entity
from sensorhub.tokens import service as tokens

PASSWORD = "correct-horse-battery"


@dataclass
class World:
    """Creates organisations, people, grants and tokens directly in the app's database."""

    ctx: AppContext

    def org(self, slug: str, workspaces: tuple[str, ...] = ("main",)) -> Organisation:
        with self.ctx.db.transaction() as s:
            org = accounts.find_org(s, slug) or accounts.create_org(s, slug, slug.title())
            for ws in workspaces:
                if not any(w.slug == ws for w in accounts.list_workspaces(s, org)):
                    accounts.create_workspace(s, org, ws, ws.title())
        return org

    def workspace(self, org: str, slug: str) -> Workspace:
        with self.ctx.db.session() as s:
            return accounts.get_workspace(s, accounts.get_org(s, org), slug)

    def user(
        self,
        email: str,
        org: str | None = None,
        role: str = "member",
        *,
        grant_org: bool = True,
        password: str = PASSWORD,
    ) -> User:
        with self.ctx.db.transaction() as s:
            u = accounts.get_user_by_email(s, email) or accounts.create_user(s, email, password)
            if org:
                o = accounts.get_org(s, org)
                accounts.set_membership(s, u, o, role)
                if grant_org and role in ("member", "viewer"):
                    accounts.create_grant(
                        s,
                        o,
                        u,
                        workspace=None,
                        entity_id=None,
                        time_start=None,
                        time_end=None,
                        actor_id=None,
                    )
        return u

    def grant(
        self,
        email: str,
        org: str,
        workspace: str | None = None,
        entity: str | None = None,
        time_start: Any = None,
        time_end: Any = None,
    ) -> None:
        with self.ctx.db.transaction() as s:
            o = accounts.get_org(s, org)
            u = accounts.get_user_by_email(s, email)
            assert u is not None
            ws = accounts.get_workspace(s, o, workspace) if workspace else None
            accounts.create_grant(
                s,
                o,
                u,
                workspace=ws,
                entity_id=entity,
                time_start=time_start,
                time_end=time_end,
                actor_id=None,
            )

    def pat(
        self, email: str, scopes: list[str] | None = None, name: str = "test", **restrictions: Any
    ) -> str:
        with self.ctx.db.transaction() as s:
            u = accounts.get_user_by_email(s, email)
            assert u is not None
            minted = tokens.create_pat(
                s,
                u,
                tokens.NewToken(
                    name,
                    scopes or ["entities", "timeseries", "export", "telemetry", "ingest"],
                    restrictions=tokens.RestrictionSpec(**restrictions),
                ),
                settings=self.ctx.settings,
                created_by=u.id,
            )
        return minted.token

    def api_key(
        self,
        org: str,
        scopes: list[str] | None = None,
        name: str = "key",
        workspaces: tuple[str, ...] = (),
        **kw: Any,
    ) -> str:
        with self.ctx.db.transaction() as s:
            o = accounts.get_org(s, org)
            minted = tokens.create_api_key(
                s,
                o,
                tokens.NewToken(
                    name,
                    scopes or ["entities", "timeseries", "export", "telemetry", "ingest"],
                    restrictions=tokens.RestrictionSpec(workspaces=workspaces),
                ),
                settings=self.ctx.settings,
                created_by=None,
                **kw,
            )
        return minted.token

    def entity(self, org: str, workspace: str, entity_id: str, type_: str = "Device", **attrs: Any) -> Entity:
        with self.ctx.db.transaction() as s:
            o = accounts.get_org(s, org)
            ws = accounts.get_workspace(s, o, workspace)
            e = Entity(
                entity_id=entity_id,
                org_id=o.id,
                workspace_id=ws.id,
                type=type_,
                attrs={k: {"type": "Property", "value": v} for k, v in attrs.items()},
            )
            s.add(e)
            s.flush()
            s.expunge(e)
        return e


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Log ``client`` in (cookie jar) and return the CSRF token; also set it as a default header."""
    r = client.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    csrf: str = r.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = csrf
    return csrf


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
