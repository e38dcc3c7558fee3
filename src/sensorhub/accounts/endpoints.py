"""Organisation administration: workspaces, members, API users (+ their tokens), API keys, grants,
token policy and audit events. Owners and admins only (members may read the organisation and its
workspaces)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from sqlalchemy.orm import Session

from sensorhub.accounts import invitations
from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Grant, Membership, Organisation, User, Workspace
from sensorhub.api.deps import ctx, request_ip
from sensorhub.audit.service import list_events
from sensorhub.auth.dependencies import RequireSession, SessionContext
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest
from sensorhub.schemas import StrictModel
from sensorhub.tokens import service as tokens
from sensorhub.tokens.schemas import ApiKeyCreate, TokenCreate, TokenCreated, TokenOut

router = APIRouter(tags=["organisations"])
ADMIN = RequireSession(org_admin=True)
MEMBER = RequireSession(org_member=True)


_In = StrictModel


class WorkspaceCreate(_In):
    slug: str
    name: str | None = None


class MemberAdd(_In):
    email: str
    role: str = "member"
    password: str | None = Field(
        None,
        description="Refused with 400: invited people accept with their own account (no account is created here)",
    )
    workspaces: list[str] = Field(
        default_factory=list,
        description="Grant read access to these workspaces once the invitation is accepted",
    )


class MemberUpdate(_In):
    role: str


class ApiUserCreate(_In):
    name: str
    role: str = "member"
    workspaces: list[str] = Field(default_factory=list, description="Grant these workspaces")
    entities: list[str] = Field(default_factory=list, description="Grant these entities (devices)")


class ApiUserUpdate(_In):
    role: str | None = None
    disabled: bool | None = None


class GrantCreate(_In):
    user: str = Field(description="User id or email (or API user id)")
    workspace: str | None = None
    entity: str | None = None
    time_start: datetime | None = None
    time_end: datetime | None = None


class PolicyUpdate(_In):
    max_token_lifetime_days: int | None = None
    allow_non_expiring_tokens: bool = False


def org_out(o: Organisation) -> dict[str, Any]:
    return {
        "id": o.id,
        "slug": o.slug,
        "name": o.name,
        "policy": {
            "max_token_lifetime_days": o.max_token_lifetime_days,
            "allow_non_expiring_tokens": o.allow_non_expiring_tokens,
        },
    }


def ws_out(w: Workspace) -> dict[str, Any]:
    return {"id": w.id, "slug": w.slug, "name": w.name, "created_at": w.created_at}


def grant_out(db: Session, g: Grant) -> dict[str, Any]:
    ws = db.get(Workspace, g.workspace_id) if g.workspace_id else None
    user = db.get(User, g.user_id)
    return {
        "id": g.id,
        "user_id": g.user_id,
        "user": user.display if user else None,
        "workspace_id": g.workspace_id,
        "department": ws.name if ws else None,
        "entity": g.entity_id,
        "time_start": g.time_start,
        "time_end": g.time_end,
        "created_at": g.created_at,
    }


def _dt_tz(v: datetime | None, label: str) -> datetime | None:
    if v is not None and v.tzinfo is None:
        raise BadRequest(f"{label} needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return v


@router.get("/api/orgs")
def my_orgs(sc: SessionContext = Depends(RequireSession())) -> list[dict[str, Any]]:
    return [dict(org_out(o), role=m.role) for m, o in accounts.memberships_of(sc.db, sc.user.id)]


@router.get("/api/orgs/{org}")
def get_org(org: str, sc: SessionContext = Depends(MEMBER)) -> dict[str, Any]:
    assert sc.org is not None
    return dict(org_out(sc.org), role=sc.role)


@router.put("/api/orgs/{org}/policy")
def set_policy(
    org: str, body: PolicyUpdate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Token policy: maximum lifetime (days, or null for no cap) and whether tokens may never expire."""
    assert sc.org is not None
    accounts.update_policy(
        sc.db,
        sc.org,
        max_token_lifetime_days=body.max_token_lifetime_days,
        allow_non_expiring_tokens=body.allow_non_expiring_tokens,
        invalidate=ctx(request).invalidate_auth,
    )
    sc.db.commit()
    return org_out(sc.org)


# -- workspaces ---------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/workspaces")
def list_workspaces(org: str, sc: SessionContext = Depends(MEMBER)) -> list[dict[str, Any]]:
    assert sc.org is not None
    return [ws_out(w) for w in accounts.list_workspaces(sc.db, sc.org)]


@router.post("/api/orgs/{org}/workspaces", status_code=201)
def create_workspace(
    org: str, body: WorkspaceCreate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    assert sc.org is not None
    ws = accounts.create_workspace(sc.db, sc.org, body.slug, body.name)
    sc.db.commit()
    ctx(request).invalidate_auth()
    return ws_out(ws)


# -- members ------------------------------------------------------------------------------------
def member_out(m: Membership, u: User) -> dict[str, Any]:
    return {"user_id": u.id, "email": u.email, "name": u.name, "role": m.role, "disabled": u.disabled}


def invitation_out(v: invitations.InvitationView) -> dict[str, Any]:
    """The same keys for every invitation: nothing here depends on whether the email has an account."""
    i = v.invitation
    return {
        "id": i.id,
        "organisation": {"id": v.organisation.id, "slug": v.organisation.slug, "name": v.organisation.name},
        "email": i.email,
        "role": i.role,
        "workspaces": [w.slug for w in v.workspaces],
        "status": v.state,
        "created_at": i.created_at,
        "expires_at": i.expires_at,
    }


@router.get("/api/orgs/{org}/members")
def list_members(org: str, sc: SessionContext = Depends(ADMIN)) -> list[dict[str, Any]]:
    assert sc.org is not None
    return [member_out(m, u) for m, u in accounts.list_members(sc.db, sc.org)]


@router.post("/api/orgs/{org}/members", status_code=202)
def add_member(
    org: str, body: MemberAdd, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Invite a person by email. The answer is the same whether an account with that email exists or
    not; the membership exists only once that person accepts (``POST /api/invitations/{id}/accept``)."""
    assert sc.org is not None
    view = invitations.invite_member(
        sc.db,
        sc.org,
        email=body.email,
        role=body.role,
        workspaces=body.workspaces,
        actor=sc.user,
        actor_role=sc.role,
        password=body.password,
        ip=request_ip(request),
    )
    sc.db.commit()
    return invitation_out(view)


@router.get("/api/orgs/{org}/invitations")
def list_invitations(org: str, sc: SessionContext = Depends(ADMIN)) -> list[dict[str, Any]]:
    """Invitations of this organisation that wait for an answer (``status``: pending or expired)."""
    assert sc.org is not None
    return [invitation_out(v) for v in invitations.list_org_invitations(sc.db, sc.org)]


@router.delete("/api/orgs/{org}/invitations/{invitation_id}", status_code=204)
def cancel_invitation(
    org: str, invitation_id: str, request: Request, sc: SessionContext = Depends(ADMIN)
) -> None:
    """Cancel a pending invitation: it can no longer be accepted."""
    assert sc.org is not None
    invitations.cancel_invitation(sc.db, sc.org, invitation_id, sc.user, ip=request_ip(request))
    sc.db.commit()


@router.get("/api/invitations", tags=["invitations"])
def my_invitations(sc: SessionContext = Depends(RequireSession())) -> list[dict[str, Any]]:
    """Invitations addressed to the logged-in person's email that still wait for an answer."""
    return [invitation_out(v) for v in invitations.invitations_for(sc.db, sc.user)]


@router.post("/api/invitations/{invitation_id}/accept", tags=["invitations"])
def accept_invitation(
    invitation_id: str, request: Request, sc: SessionContext = Depends(RequireSession())
) -> dict[str, Any]:
    """Join the organisation with the invitation's role and grants."""
    m, o = invitations.accept_invitation(
        sc.db, sc.user, invitation_id, ctx(request).invalidate_auth, ip=request_ip(request)
    )
    sc.db.commit()
    return dict(org_out(o), role=m.role)


@router.post("/api/invitations/{invitation_id}/decline", status_code=204, tags=["invitations"])
def decline_invitation(
    invitation_id: str, request: Request, sc: SessionContext = Depends(RequireSession())
) -> None:
    invitations.decline_invitation(sc.db, sc.user, invitation_id, ip=request_ip(request))
    sc.db.commit()


@router.patch("/api/orgs/{org}/members/{user_ref}")
def update_member(
    org: str, user_ref: str, body: MemberUpdate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Change a member's role; their tokens follow at once (a demoted member's tokens lose power)."""
    assert sc.org is not None
    user = accounts.get_member_user(sc.db, sc.org, user_ref)
    m = accounts.set_membership(
        sc.db, user, sc.org, body.role, ctx(request).invalidate_auth, actor_role=sc.role
    )
    sc.db.commit()
    return member_out(m, user)


@router.delete("/api/orgs/{org}/members/{user_ref}", status_code=204)
def remove_member(org: str, user_ref: str, request: Request, sc: SessionContext = Depends(ADMIN)) -> None:
    """Remove a member: their tokens lose this organisation on the next request."""
    assert sc.org is not None
    user = accounts.get_member_user(sc.db, sc.org, user_ref)
    accounts.remove_membership(sc.db, user, sc.org, ctx(request).invalidate_auth, actor_role=sc.role)
    sc.db.commit()


# -- API users ----------------------------------------------------------------------------------
def api_user_out(u: User, m: Membership | None) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "role": m.role if m else None,
        "disabled": u.disabled,
        "created_at": u.created_at,
    }


@router.get("/api/orgs/{org}/api-users")
def list_api_users(org: str, sc: SessionContext = Depends(ADMIN)) -> list[dict[str, Any]]:
    assert sc.org is not None
    return [api_user_out(u, m) for u, m in accounts.list_api_users(sc.db, sc.org)]


@router.post("/api/orgs/{org}/api-users", status_code=201)
def create_api_user(
    org: str, body: ApiUserCreate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """A service account (no password) with a role, and grants on workspaces or entities (devices)."""
    assert sc.org is not None
    c = ctx(request)
    user, m = accounts.create_api_user(sc.db, sc.org, body.name, body.role, c.invalidate_auth)
    for ref in body.workspaces:
        ws = accounts.get_workspace(sc.db, sc.org, ref)
        accounts.create_grant(
            sc.db,
            sc.org,
            user,
            workspace=ws,
            entity_id=None,
            time_start=None,
            time_end=None,
            actor_id=sc.user.id,
            invalidate=c.invalidate_auth,
        )
    for ent in body.entities:
        accounts.create_grant(
            sc.db,
            sc.org,
            user,
            workspace=None,
            entity_id=ent,
            time_start=None,
            time_end=None,
            actor_id=sc.user.id,
            invalidate=c.invalidate_auth,
        )
    sc.db.commit()
    return api_user_out(user, m)


@router.patch("/api/orgs/{org}/api-users/{user_id}")
def update_api_user(
    org: str, user_id: str, body: ApiUserUpdate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Change an API user's role or disable it (disabling cuts off all its tokens at once)."""
    assert sc.org is not None
    c = ctx(request)
    user = accounts.get_api_user(sc.db, sc.org, user_id)
    if body.role is not None:
        if body.role == "owner":
            raise BadRequest("API users cannot be owners; use admin, member or viewer")
        accounts.set_membership(sc.db, user, sc.org, body.role, c.invalidate_auth, actor_role=sc.role)
    if body.disabled is not None:
        accounts.set_user_disabled(sc.db, user, body.disabled, c.invalidate_auth)
    sc.db.commit()
    return api_user_out(user, accounts.membership(sc.db, user.id, sc.org.id))


@router.get("/api/orgs/{org}/api-users/{user_id}/tokens", response_model=list[TokenOut])
def list_api_user_tokens(org: str, user_id: str, sc: SessionContext = Depends(ADMIN)) -> list[TokenOut]:
    assert sc.org is not None
    user = accounts.get_api_user(sc.db, sc.org, user_id)
    now = utcnow()
    return [TokenOut.of(t, now) for t in tokens.list_pats(sc.db, user.id)]


@router.post("/api/orgs/{org}/api-users/{user_id}/tokens", status_code=201, response_model=TokenCreated)
def create_api_user_token(
    org: str, user_id: str, body: TokenCreate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> TokenCreated:
    assert sc.org is not None
    c = ctx(request)
    user = accounts.get_api_user(sc.db, sc.org, user_id)
    if user.disabled:
        raise BadRequest("this API user is disabled; enable it before creating tokens")
    minted = tokens.create_pat(
        sc.db,
        user,
        name=body.name,
        scopes=body.scopes,
        expiry=body.expiry(),
        restrictions=body.restriction_spec(),
        settings=c.settings,
        created_by=sc.user.id,
        ip=request_ip(request),
    )
    sc.db.commit()
    return TokenCreated.minted(minted.credential, minted.token, utcnow())


@router.delete("/api/orgs/{org}/api-users/{user_id}/tokens/{token_id}", response_model=TokenOut)
def revoke_api_user_token(
    org: str, user_id: str, token_id: str, request: Request, sc: SessionContext = Depends(ADMIN)
) -> TokenOut:
    assert sc.org is not None
    user = accounts.get_api_user(sc.db, sc.org, user_id)
    cred = tokens.get_pat(sc.db, user.id, token_id)
    tokens.revoke(
        sc.db, cred, actor_id=sc.user.id, invalidate=ctx(request).invalidate_auth, ip=request_ip(request)
    )
    sc.db.commit()
    return TokenOut.of(cred, utcnow())


@router.post("/api/orgs/{org}/api-users/{user_id}/tokens/{token_id}/rotate", response_model=TokenCreated)
def rotate_api_user_token(
    org: str, user_id: str, token_id: str, request: Request, sc: SessionContext = Depends(ADMIN)
) -> TokenCreated:
    assert sc.org is not None
    c = ctx(request)
    user = accounts.get_api_user(sc.db, sc.org, user_id)
    cred = tokens.get_pat(sc.db, user.id, token_id)
    minted = tokens.rotate(
        sc.db,
        cred,
        settings=c.settings,
        actor_id=sc.user.id,
        invalidate=c.invalidate_auth,
        ip=request_ip(request),
    )
    sc.db.commit()
    return TokenCreated.minted(minted.credential, minted.token, utcnow())


# -- API keys -----------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/api-keys", response_model=list[TokenOut])
def list_api_keys(
    org: str, include_revoked: bool = True, sc: SessionContext = Depends(ADMIN)
) -> list[TokenOut]:
    assert sc.org is not None
    now = utcnow()
    return [TokenOut.of(k, now) for k in tokens.list_api_keys(sc.db, sc.org.id, include_revoked)]


@router.post("/api/orgs/{org}/api-keys", status_code=201, response_model=TokenCreated)
def create_api_key(
    org: str, body: ApiKeyCreate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> TokenCreated:
    """An organisation API key: permissions = scopes × workspaces (no workspaces = all of them).
    Use it with the ``x-api-key`` header (or as a Bearer token)."""
    assert sc.org is not None
    c = ctx(request)
    spec = body.restriction_spec()
    minted = tokens.create_api_key(
        sc.db,
        sc.org,
        name=body.name,
        scopes=body.scopes,
        workspaces=body.workspaces,
        expiry=body.expiry(),
        restrictions=spec,
        settings=c.settings,
        created_by=sc.user.id,
        rate_limit_per_minute=body.rate_limit_per_minute,
        export_row_cap=body.export_row_cap,
        ip=request_ip(request),
    )
    sc.db.commit()
    return TokenCreated.minted(minted.credential, minted.token, utcnow())


@router.delete("/api/orgs/{org}/api-keys/{key_id}", response_model=TokenOut)
def revoke_api_key(org: str, key_id: str, request: Request, sc: SessionContext = Depends(ADMIN)) -> TokenOut:
    assert sc.org is not None
    cred = tokens.get_api_key(sc.db, sc.org.id, key_id)
    tokens.revoke(
        sc.db, cred, actor_id=sc.user.id, invalidate=ctx(request).invalidate_auth, ip=request_ip(request)
    )
    sc.db.commit()
    return TokenOut.of(cred, utcnow())


@router.post("/api/orgs/{org}/api-keys/{key_id}/rotate", response_model=TokenCreated)
def rotate_api_key(
    org: str, key_id: str, request: Request, sc: SessionContext = Depends(ADMIN)
) -> TokenCreated:
    assert sc.org is not None
    c = ctx(request)
    cred = tokens.get_api_key(sc.db, sc.org.id, key_id)
    minted = tokens.rotate(
        sc.db,
        cred,
        settings=c.settings,
        actor_id=sc.user.id,
        invalidate=c.invalidate_auth,
        ip=request_ip(request),
    )
    sc.db.commit()
    return TokenCreated.minted(minted.credential, minted.token, utcnow())


# -- grants -------------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/grants")
def list_grants(
    org: str, user: str | None = None, sc: SessionContext = Depends(ADMIN)
) -> list[dict[str, Any]]:
    assert sc.org is not None
    user_id = accounts.get_member_user(sc.db, sc.org, user).id if user else None
    return [grant_out(sc.db, g) for g in accounts.list_grants(sc.db, sc.org, user_id)]


@router.post("/api/orgs/{org}/grants", status_code=201)
def create_grant(
    org: str, body: GrantCreate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Give a member or API user read access to the organisation, a workspace, an entity, optionally
    only within ``[time_start, time_end)``."""
    assert sc.org is not None
    user = accounts.get_member_user(sc.db, sc.org, body.user)
    ws = accounts.get_workspace(sc.db, sc.org, body.workspace) if body.workspace else None
    g = accounts.create_grant(
        sc.db,
        sc.org,
        user,
        workspace=ws,
        entity_id=body.entity,
        time_start=_dt_tz(body.time_start, "time_start"),
        time_end=_dt_tz(body.time_end, "time_end"),
        actor_id=sc.user.id,
        invalidate=ctx(request).invalidate_auth,
    )
    sc.db.commit()
    return grant_out(sc.db, g)


@router.delete("/api/orgs/{org}/grants/{grant_id}", status_code=204)
def delete_grant(org: str, grant_id: str, request: Request, sc: SessionContext = Depends(ADMIN)) -> None:
    assert sc.org is not None
    accounts.delete_grant(sc.db, sc.org, grant_id, sc.user.id, ctx(request).invalidate_auth)
    sc.db.commit()


# -- audit --------------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/audit-events")
def audit_events(
    org: str, limit: int = 100, credential: str | None = None, sc: SessionContext = Depends(ADMIN)
) -> list[dict[str, Any]]:
    assert sc.org is not None
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000")
    return [
        {
            "id": e.id,
            "at": e.at,
            "action": e.action,
            "actor_user_id": e.actor_user_id,
            "credential_id": e.credential_id,
            "target": e.target,
            "ip": e.ip,
            "details": e.details,
        }
        for e in list_events(sc.db, org_id=sc.org.id, credential_id=credential, limit=limit)
    ]
