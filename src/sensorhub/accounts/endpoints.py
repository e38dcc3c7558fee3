"""Organisation administration: workspaces, members, API users (+ their tokens), API keys, grants,
token policy and audit events. Owners and admins only (members may read the organisation and its
workspaces)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import Field

from sensorhub.accounts import invitations
from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Membership, Organisation, User, Workspace
from sensorhub.api.deps import ctx, request_ip
from sensorhub.audit.models import AuditEvent
from sensorhub.audit.service import matching_events_csv, search_events
from sensorhub.auth.dependencies import RequireSession, SessionContext
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest
from sensorhub.kit.downloads import csv_attachment
from sensorhub.kit.paging import LimitPolicy, OffsetBounds
from sensorhub.kit.query_params import reject_unknown_query_params
from sensorhub.kit.urls import next_link
from sensorhub.schemas import StrictModel
from sensorhub.tokens import service as tokens
from sensorhub.tokens.schemas import ApiKeyCreate, RotateRequest, TokenCreate, TokenCreated, TokenOut

router = APIRouter(tags=["organisations"])
ADMIN = RequireSession(org_admin=True)
MEMBER = RequireSession(org_member=True)


_In = StrictModel


class WorkspaceCreate(_In):
    slug: str
    name: str | None = None


class AutoProvisioning(_In):
    enabled: bool = Field(description="Ingest writes naming an unknown device create it in this workspace")
    type: str = Field("Device", description="Entity type of the devices it creates")
    credentials: list[str] | None = Field(
        None,
        description="Ids of the tokens/API keys that may trigger it (null: any credential with the ingest "
        "scope on this workspace)",
    )


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

    def invite(self) -> invitations.Invite:
        return invitations.Invite(self.email, self.role, self.workspaces, self.password)


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

    def new_grant(self) -> accounts.NewGrant:
        return accounts.NewGrant(
            self.user,
            self.workspace,
            self.entity,
            _dt_tz(self.time_start, "time_start"),
            _dt_tz(self.time_end, "time_end"),
        )


class PolicyUpdate(_In):
    max_token_lifetime_days: int | None = None
    allow_non_expiring_tokens: bool = False
    max_rotation_grace_days: int = Field(
        7, description="Longest grace (0-7 days) a rotation may keep the old secret working for"
    )
    require_pat_approval: bool = Field(
        False,
        description="Members' PATs read the organisation only once an owner/admin approved them "
        "(turning it on records the members' existing tokens as approved)",
    )
    allowed_pat_scopes: list[str] = Field(
        default_factory=list, description="Scopes members' PATs may use here (empty: any their role allows)"
    )
    allowed_ips: list[str] = Field(
        default_factory=list,
        description="Client IPs/CIDR networks every credential must come from to read this organisation "
        "(empty: anywhere)",
    )

    def token_policy(self) -> accounts.TokenPolicy:
        return accounts.TokenPolicy(
            self.max_token_lifetime_days,
            self.allow_non_expiring_tokens,
            self.max_rotation_grace_days,
            self.require_pat_approval,
            self.allowed_pat_scopes,
            self.allowed_ips,
        )


def org_out(o: Organisation) -> dict[str, Any]:
    return {
        "id": o.id,
        "slug": o.slug,
        "name": o.name,
        "policy": {
            "max_token_lifetime_days": o.max_token_lifetime_days,
            "allow_non_expiring_tokens": o.allow_non_expiring_tokens,
            "max_rotation_grace_days": o.max_rotation_grace_days,
            "require_pat_approval": o.require_pat_approval,
            "allowed_pat_scopes": o.allowed_pat_scopes or [],
            "allowed_ips": o.allowed_ips or [],
        },
    }


def ws_out(w: Workspace) -> dict[str, Any]:
    return {
        "id": w.id,
        "slug": w.slug,
        "name": w.name,
        "created_at": w.created_at,
        "auto_provisioning": {
            "enabled": w.auto_provision,
            "type": w.auto_provision_type,
            "credentials": w.auto_provision_credentials,
        },
    }


def grant_out(row: accounts.GrantRow) -> dict[str, Any]:
    g, ws, user = row.grant, row.workspace, row.user
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
def set_policy(org: str, body: PolicyUpdate, sc: SessionContext = Depends(ADMIN)) -> dict[str, Any]:
    """Token policy (the whole of it: a member left out gets its default): maximum lifetime (days, or
    null for no cap), whether tokens may never expire, the longest rotation grace, approval of members'
    PATs, the scopes members' PATs may use, and an IP allowlist for every credential."""
    assert sc.org is not None
    accounts.update_policy(sc.db, sc.org, body.token_policy(), actor_id=sc.user.id)
    return org_out(sc.org)


# -- workspaces ---------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/workspaces")
def list_workspaces(org: str, sc: SessionContext = Depends(MEMBER)) -> list[dict[str, Any]]:
    assert sc.org is not None
    return [ws_out(w) for w in accounts.list_workspaces(sc.db, sc.org)]


@router.post("/api/orgs/{org}/workspaces", status_code=201)
def create_workspace(org: str, body: WorkspaceCreate, sc: SessionContext = Depends(ADMIN)) -> dict[str, Any]:
    assert sc.org is not None
    return ws_out(accounts.create_workspace(sc.db, sc.org, body.slug, body.name))


@router.put("/api/orgs/{org}/workspaces/{workspace}/auto-provisioning")
def set_auto_provisioning(
    org: str, workspace: str, body: AutoProvisioning, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Auto-provisioning (default off): an ingest write (backfill, gateway, line protocol, MQTT) naming a
    device that does not exist creates it here, of ``type``, when the credential has ``ingest`` on this
    workspace and is among ``credentials`` (null: any). Audited (``workspace.auto_provisioning``; each
    device created: ``entity.auto_provision``). Returns the workspace."""
    assert sc.org is not None
    ws = accounts.get_workspace(sc.db, sc.org, workspace)
    accounts.set_auto_provisioning(
        sc.db,
        sc.org,
        ws,
        enabled=body.enabled,
        entity_type=body.type,
        credentials=body.credentials,
        actor_id=sc.user.id,
        ip=request_ip(request),
    )
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
        sc.db, sc.org, body.invite(), actor=sc.user, actor_role=sc.role, ip=request_ip(request)
    )
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


@router.get("/api/invitations", tags=["invitations"])
def my_invitations(sc: SessionContext = Depends(RequireSession())) -> list[dict[str, Any]]:
    """Invitations addressed to the logged-in person's email that still wait for an answer."""
    return [invitation_out(v) for v in invitations.invitations_for(sc.db, sc.user)]


@router.post("/api/invitations/{invitation_id}/accept", tags=["invitations"])
def accept_invitation(
    invitation_id: str, request: Request, sc: SessionContext = Depends(RequireSession())
) -> dict[str, Any]:
    """Join the organisation with the invitation's role and grants."""
    m, o = invitations.accept_invitation(sc.db, sc.user, invitation_id, ip=request_ip(request))
    return dict(org_out(o), role=m.role)


@router.post("/api/invitations/{invitation_id}/decline", status_code=204, tags=["invitations"])
def decline_invitation(
    invitation_id: str, request: Request, sc: SessionContext = Depends(RequireSession())
) -> None:
    invitations.decline_invitation(sc.db, sc.user, invitation_id, ip=request_ip(request))


@router.patch("/api/orgs/{org}/members/{user_ref}")
def update_member(
    org: str, user_ref: str, body: MemberUpdate, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Change a member's role; their tokens follow at once (a demoted member's tokens lose power)."""
    assert sc.org is not None
    m, user = accounts.change_member_role(sc.db, sc.org, user_ref, body.role, actor_role=sc.role)
    return member_out(m, user)


@router.delete("/api/orgs/{org}/members/{user_ref}", status_code=204)
def remove_member(org: str, user_ref: str, sc: SessionContext = Depends(ADMIN)) -> None:
    """Remove a member: their tokens lose this organisation on the next request."""
    assert sc.org is not None
    accounts.remove_member(sc.db, sc.org, user_ref, actor_role=sc.role)


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
def create_api_user(org: str, body: ApiUserCreate, sc: SessionContext = Depends(ADMIN)) -> dict[str, Any]:
    """A service account (no password) with a role, and grants on workspaces or entities (devices)."""
    assert sc.org is not None
    user, m = accounts.create_api_user(
        sc.db,
        sc.org,
        body.name,
        body.role,
        workspaces=body.workspaces,
        entities=body.entities,
        actor_id=sc.user.id,
    )
    return api_user_out(user, m)


@router.patch("/api/orgs/{org}/api-users/{user_id}")
def update_api_user(
    org: str, user_id: str, body: ApiUserUpdate, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Change an API user's role or disable it (disabling cuts off all its tokens at once)."""
    assert sc.org is not None
    user, m = accounts.update_api_user(
        sc.db, sc.org, user_id, role=body.role, disabled=body.disabled, actor_role=sc.role
    )
    return api_user_out(user, m)


def _rotated(
    rotate: Callable[..., tokens.Minted],
    sc: SessionContext,
    request: Request,
    body: RotateRequest | None,
    *refs: str,
) -> TokenCreated:
    """One rotation (of an API user's token, of an API key: ``refs`` name it) by the signed-in admin."""
    assert sc.org is not None
    minted = rotate(
        sc.db,
        sc.org,
        *refs,
        settings=ctx(request).settings,
        actor_id=sc.user.id,
        ip=request_ip(request),
        grace_days=RotateRequest.days(body),
    )
    return TokenCreated.minted(minted, utcnow())


@router.get("/api/orgs/{org}/api-users/{user_id}/tokens", response_model=list[TokenOut])
def list_api_user_tokens(org: str, user_id: str, sc: SessionContext = Depends(ADMIN)) -> list[TokenOut]:
    assert sc.org is not None
    now = utcnow()
    return [TokenOut.of(t, now) for t in tokens.list_api_user_tokens(sc.db, sc.org, user_id)]


@router.post("/api/orgs/{org}/api-users/{user_id}/tokens", status_code=201, response_model=TokenCreated)
def create_api_user_token(
    org: str, user_id: str, body: TokenCreate, request: Request, sc: SessionContext = Depends(ADMIN)
) -> TokenCreated:
    assert sc.org is not None
    minted = tokens.create_api_user_token(
        sc.db,
        sc.org,
        user_id,
        body.new_token(),
        settings=ctx(request).settings,
        created_by=sc.user.id,
        ip=request_ip(request),
    )
    return TokenCreated.minted(minted, utcnow())


@router.delete("/api/orgs/{org}/api-users/{user_id}/tokens/{token_id}", response_model=TokenOut)
def revoke_api_user_token(
    org: str, user_id: str, token_id: str, request: Request, sc: SessionContext = Depends(ADMIN)
) -> TokenOut:
    assert sc.org is not None
    cred = tokens.revoke_api_user_token(
        sc.db, sc.org, user_id, token_id, actor_id=sc.user.id, ip=request_ip(request)
    )
    return TokenOut.of(cred, utcnow())


@router.post("/api/orgs/{org}/api-users/{user_id}/tokens/{token_id}/rotate", response_model=TokenCreated)
def rotate_api_user_token(
    org: str,
    user_id: str,
    token_id: str,
    request: Request,
    body: RotateRequest | None = None,
    sc: SessionContext = Depends(ADMIN),
) -> TokenCreated:
    """A new secret; with ``grace_days`` the old one keeps working that many days."""
    return _rotated(tokens.rotate_api_user_token, sc, request, body, user_id, token_id)


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
    minted = tokens.create_api_key(
        sc.db,
        sc.org,
        body.new_token(),
        settings=ctx(request).settings,
        created_by=sc.user.id,
        rate_limit_per_minute=body.rate_limit_per_minute,
        export_row_cap=body.export_row_cap,
        ip=request_ip(request),
    )
    return TokenCreated.minted(minted, utcnow())


@router.delete("/api/orgs/{org}/api-keys/{key_id}", response_model=TokenOut)
def revoke_api_key(org: str, key_id: str, request: Request, sc: SessionContext = Depends(ADMIN)) -> TokenOut:
    assert sc.org is not None
    cred = tokens.revoke_api_key(sc.db, sc.org, key_id, actor_id=sc.user.id, ip=request_ip(request))
    return TokenOut.of(cred, utcnow())


@router.post("/api/orgs/{org}/api-keys/{key_id}/rotate", response_model=TokenCreated)
def rotate_api_key(
    org: str,
    key_id: str,
    request: Request,
    body: RotateRequest | None = None,
    sc: SessionContext = Depends(ADMIN),
) -> TokenCreated:
    """A new secret; with ``grace_days`` the old one keeps working that many days."""
    return _rotated(tokens.rotate_api_key, sc, request, body, key_id)


# -- grants -------------------------------------------------------------------------------------
@router.get("/api/orgs/{org}/grants")
def list_grants(
    org: str, user: str | None = None, sc: SessionContext = Depends(ADMIN)
) -> list[dict[str, Any]]:
    assert sc.org is not None
    return [grant_out(row) for row in accounts.grant_rows(sc.db, sc.org, user)]


@router.post("/api/orgs/{org}/grants", status_code=201)
def create_grant(org: str, body: GrantCreate, sc: SessionContext = Depends(ADMIN)) -> dict[str, Any]:
    """Give a member or API user read access to the organisation, a workspace, an entity, optionally
    only within ``[time_start, time_end)``."""
    assert sc.org is not None
    return grant_out(accounts.grant_access(sc.db, sc.org, body.new_grant(), actor_id=sc.user.id))


@router.delete("/api/orgs/{org}/grants/{grant_id}", status_code=204)
def delete_grant(org: str, grant_id: str, sc: SessionContext = Depends(ADMIN)) -> None:
    assert sc.org is not None
    accounts.delete_grant(sc.db, sc.org, grant_id, sc.user.id)


# -- audit --------------------------------------------------------------------------------------
AUDIT_LIMIT = LimitPolicy(default=100, maximum=1000)
AUDIT_OFFSET = OffsetBounds(maximum=1_000_000)


def audit_out(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at,
        "action": e.action,
        "actor_user_id": e.actor_user_id,
        "credential_id": e.credential_id,
        "target": e.target,
        "ip": e.ip,
        "details": e.details,
    }


@router.get(
    "/api/orgs/{org}/audit-events",
    responses={200: {"content": {"text/csv": {}}, "description": "Events, newest first (or CSV)"}},
)
def audit_events(
    org: str,
    request: Request,
    limit: int | None = Query(None, description="Page size (1-1000, default 100)"),
    offset: int = 0,
    action: str | None = Query(
        None, max_length=64, description="An action, or a prefix ending in '.': token."
    ),
    actor: str | None = Query(None, max_length=320, description="The acting user (id or email)"),
    credential: str | None = Query(None, max_length=36, description="The credential's id"),
    target: str | None = Query(None, max_length=200, description="Part of the target's name"),
    ip: str | None = Query(None, max_length=64, description="The client address"),
    since: str | None = Query(None, description="From this time on (ISO 8601)"),
    until: str | None = Query(None, description="Before this time (ISO 8601)"),
    format: str = Query("json", description="json, or csv (every matching event, up to 100,000)"),
    sc: SessionContext = Depends(ADMIN),
) -> Any:
    """The organisation's audit log, newest first: who (user, credential) did what to which target, from
    where, when. ``X-Total-Count`` says how many match; ``Link: rel="next"`` points at the next page.
    A credential's use (``token.used``) appears only in the organisations whose data it touched."""
    assert sc.org is not None
    reject_unknown_query_params(request)
    if format not in ("json", "csv"):
        raise BadRequest("format must be json or csv")
    n, start = AUDIT_LIMIT.resolve(limit), AUDIT_OFFSET.check(offset)
    f = accounts.audit_query(
        sc.db, sc.org, action=action, actor=actor, credential=credential, target=target, ip=ip,
        since=since, until=until,
    )  # fmt: skip
    if format == "csv":
        return csv_attachment(matching_events_csv(sc.db, sc.org.id, f), f"{sc.org.slug}-audit.csv")
    rows, total = search_events(sc.db, sc.org.id, f, limit=n, offset=start)
    headers = {"X-Total-Count": str(total)}
    if start + n < total:
        headers["Link"] = next_link(request, ctx(request).settings.base_url, offset=start + n, limit=n)
    return JSONResponse(jsonable_encoder([audit_out(e) for e in rows]), headers=headers)
