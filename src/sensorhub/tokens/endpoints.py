"""Personal Access Tokens of the logged-in person, and token self-introspection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.responses import Response

from sensorhub.api.deps import ctx, get_db, request_ip
from sensorhub.auth.dependencies import AnyToken, Public, RequireSession, SessionContext
from sensorhub.auth.principal import Principal
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, RateLimited
from sensorhub.kit.downloads import csv_attachment
from sensorhub.kit.paging import LimitPolicy, OffsetBounds
from sensorhub.kit.query_params import reject_unknown_query_params
from sensorhub.schemas import StrictModel
from sensorhub.tokens import introspection, inventory, leaks, service
from sensorhub.tokens.schemas import RotateRequest, TokenCreate, TokenCreated, TokenOut

router = APIRouter(tags=["tokens"])


def _created(sc: SessionContext, minted: service.Minted) -> TokenCreated:
    """A new PAT's secret and metadata, with its standing in each organisation it reaches."""
    out = TokenCreated.minted(minted, utcnow())
    out.organisation_access = inventory.access_states(sc.db, minted.credential)
    return out


@router.post("/api/tokens", status_code=201, response_model=TokenCreated)
def create_token(
    body: TokenCreate, request: Request, sc: SessionContext = Depends(RequireSession())
) -> TokenCreated:
    """Create a Personal Access Token. The secret is in ``token`` and is shown only in this response."""
    minted = service.create_pat(
        sc.db,
        sc.user,
        body.new_token(),
        settings=ctx(request).settings,
        created_by=sc.user.id,
        ip=request_ip(request),
    )
    return _created(sc, minted)


@router.get("/api/tokens", response_model=list[TokenOut])
def list_tokens(
    include_revoked: bool = True, sc: SessionContext = Depends(RequireSession())
) -> list[TokenOut]:
    """Your tokens (metadata only: the secrets are never shown again)."""
    now = utcnow()
    out = []
    for c in service.list_pats(sc.db, sc.user.id, include_revoked):
        t = TokenOut.of(c, now)
        t.organisation_access = inventory.access_states(sc.db, c)
        out.append(t)
    return out


@router.get("/api/tokens/self")
async def token_self(principal: Principal = Depends(AnyToken())) -> Response:
    """What the presented token can do, where, and until when."""
    # A Response (not a dict for FastAPI to validate and dump): a hot route's direct lane (api/hot.py).
    return Response(orjson.dumps(introspection.describe(principal, utcnow())), media_type="application/json")


@router.get("/api/tokens/{token_id}", response_model=TokenOut)
def get_token(token_id: str, sc: SessionContext = Depends(RequireSession())) -> TokenOut:
    c = service.get_pat(sc.db, sc.user.id, token_id)
    out = TokenOut.of(c, utcnow())
    out.organisation_access = inventory.access_states(sc.db, c)
    return out


@router.delete("/api/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: str, request: Request, sc: SessionContext = Depends(RequireSession())) -> TokenOut:
    """Revoke a token: it is refused from the very next request. Revoking twice changes nothing."""
    cred = service.revoke_pat(sc.db, sc.user, token_id, ip=request_ip(request))
    return TokenOut.of(cred, utcnow())


@router.post("/api/tokens/{token_id}/rotate", response_model=TokenCreated)
def rotate_token(
    token_id: str,
    request: Request,
    body: RotateRequest | None = None,
    sc: SessionContext = Depends(RequireSession()),
) -> TokenCreated:
    """A new secret with the same settings. The old secret stops working at once, or with
    ``grace_days`` keeps working that many days (shown as status ``grace``) so a deployment can switch."""
    minted = service.rotate_pat(
        sc.db,
        sc.user,
        token_id,
        settings=ctx(request).settings,
        ip=request_ip(request),
        grace_days=RotateRequest.days(body),
    )
    return _created(sc, minted)


# -- the organisation's credential inventory ------------------------------------------------------------
INVENTORY_LIMIT = LimitPolicy(default=100, maximum=500)
INVENTORY_OFFSET = OffsetBounds(maximum=1_000_000)
ADMIN = RequireSession(org_admin=True)


class Decision(StrictModel):
    reason: str | None = Field(None, description="Why (told to the token's owner; required to deny)")


@router.get(
    "/api/orgs/{org}/credentials",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV with format=csv"}},
)
def org_credentials(
    org: str,
    kind: str | None = Query(None, description="api_key | api_user_token | member_pat"),
    status: str | None = Query(
        None, description="active, grace, expired, rotated, revoked, pending, denied, revoked_here"
    ),
    q: str | None = Query(None, max_length=200, description="In the name, the secret's hint or the owner"),
    expiring_within_days: int | None = Query(None, description="Only those expiring within so many days"),
    include_revoked: bool = Query(False, description="Also revoked and rotated ones (without status)"),
    sort: str = Query("name", description="name, owner, kind, created_at, last_used_at, expires_at; -desc"),
    limit: int | None = Query(None, description="Page size (1-500, default 100)"),
    offset: int = 0,
    format: str = Query("json", description="json, or csv for every matching row (no paging)"),
    *,
    request: Request,
    sc: SessionContext = Depends(ADMIN),
) -> Any:
    """Every credential that can read the organisation — its API keys, its API users' tokens, and its
    members' PATs that reach it — with owner, scopes, restrictions, created, last use (time, IP), expiry
    and this organisation's decision on each member's PAT. Owners and admins only."""
    assert sc.org is not None
    reject_unknown_query_params(request)
    if format not in ("json", "csv"):
        raise BadRequest("format must be json or csv")
    query = inventory.InventoryQuery(kind, status, q, expiring_within_days, include_revoked, sort)
    now = utcnow()
    rows = inventory.search(sc.db, sc.org, query, now)
    if format == "csv":
        return csv_attachment(inventory.to_csv(rows), f"{sc.org.slug}-credentials.csv")
    n, start = INVENTORY_LIMIT.resolve(limit), INVENTORY_OFFSET.check(offset)
    return {"total": len(rows), "items": [r.out(now) for r in rows[start : start + n]]}


def _decided(
    decide: Callable[..., inventory.InventoryRow],
    sc: SessionContext,
    credential_id: str,
    reason: str | None,
    request: Request,
) -> dict[str, Any]:
    """One decision of the inventory (approve, deny, revoke for the organisation) by the signed-in admin."""
    assert sc.org is not None
    row = decide(
        sc.db, sc.org, credential_id, actor=sc.user, reason=reason, settings=ctx(request).settings,
        ip=request_ip(request),
    )  # fmt: skip
    return row.out(utcnow())


@router.post("/api/orgs/{org}/credentials/{credential_id}/approve")
def approve_credential(
    org: str,
    credential_id: str,
    request: Request,
    body: Decision | None = None,
    sc: SessionContext = Depends(ADMIN),
) -> dict[str, Any]:
    """Let a member's PAT read the organisation (where approval is required). The member is told."""
    return _decided(inventory.approve, sc, credential_id, body.reason if body else None, request)


@router.post("/api/orgs/{org}/credentials/{credential_id}/deny")
def deny_credential(
    org: str, credential_id: str, body: Decision, request: Request, sc: SessionContext = Depends(ADMIN)
) -> dict[str, Any]:
    """Refuse a member's PAT this organisation, with a reason the member is told."""
    return _decided(inventory.deny, sc, credential_id, body.reason, request)


@router.post("/api/orgs/{org}/credentials/{credential_id}/revoke")
def revoke_credential(
    org: str,
    credential_id: str,
    request: Request,
    body: Decision | None = None,
    sc: SessionContext = Depends(ADMIN),
) -> dict[str, Any]:
    """Revoke for this organisation: an API key or API-user token is revoked; a member's PAT loses this
    organisation only (it keeps working elsewhere) and the member is told. Idempotent."""
    return _decided(inventory.revoke_for_org, sc, credential_id, body.reason if body else None, request)


# -- leaked-token reports (secret scanners) ---------------------------------------------------------
class LeakReport(StrictModel):
    tokens: list[str] = Field(
        description="Strings that contain leaked tokens (1-100); the documented token regex picks them out"
    )
    source: str | None = Field(None, description="Where they were found (a URL, a file); told to the owners")


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post("/api/tokens/leaked", status_code=202, dependencies=[Depends(Public())])
def report_leaked(
    body: LeakReport,
    request: Request,
    raw: bytes = Depends(_raw_body),
    db: Session = Depends(get_db),
    timestamp: str | None = Header(None, alias=leaks.TIMESTAMP_HEADER, description="Unix seconds"),
    signature: str | None = Header(
        None, alias=leaks.SIGNATURE_HEADER, description="sha256=<hex HMAC-SHA256 of '<timestamp>.<body>'>"
    ),
) -> dict[str, Any]:
    """Report leaked tokens (for secret scanners): every real, live one is revoked at once and its owner
    is told where it was found. Signed with the shared secret (``SENSORHUB_LEAK_REPORT_SECRET``): send
    ``X-Sensorhub-Timestamp`` and ``X-Sensorhub-Signature``. The answer is the same whichever of the
    strings were real credentials. Rate-limited per client address."""
    c = ctx(request)
    ip = request_ip(request)
    decision = c.limiter.hit(f"leakreport:{ip}", c.settings.leak_reports_per_minute, 60)
    if not decision.allowed:
        raise RateLimited(
            "Too many leak reports from this address; try again later", retry_after=decision.retry_after
        )
    leaks.check_signature(c.settings, timestamp, signature, raw)
    result = leaks.report(db, body.tokens, body.source, c.settings, ip)
    return {"status": "accepted", "received": result.received}
