"""Personal Access Tokens of the logged-in person, and token self-introspection."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from sensorhub.api.deps import ctx, request_ip
from sensorhub.auth.dependencies import AnyToken, RequireSession, SessionContext
from sensorhub.auth.principal import Principal
from sensorhub.db import utcnow
from sensorhub.tokens import introspection, service
from sensorhub.tokens.schemas import RotateRequest, TokenCreate, TokenCreated, TokenOut

router = APIRouter(tags=["tokens"])


@router.post("/api/tokens", status_code=201, response_model=TokenCreated)
def create_token(
    body: TokenCreate, request: Request, sc: SessionContext = Depends(RequireSession())
) -> TokenCreated:
    """Create a Personal Access Token. The secret is in ``token`` and is shown only in this response."""
    settings = ctx(request).settings
    minted = service.create_pat(
        sc.db,
        sc.user,
        name=body.name,
        scopes=body.scopes,
        expiry=body.expiry(),
        restrictions=body.restriction_spec(),
        settings=settings,
        created_by=sc.user.id,
        ip=request_ip(request),
    )
    return TokenCreated.minted(minted.credential, minted.token, utcnow())


@router.get("/api/tokens", response_model=list[TokenOut])
def list_tokens(
    include_revoked: bool = True, sc: SessionContext = Depends(RequireSession())
) -> list[TokenOut]:
    """Your tokens (metadata only: the secrets are never shown again)."""
    now = utcnow()
    return [TokenOut.of(c, now) for c in service.list_pats(sc.db, sc.user.id, include_revoked)]


@router.get("/api/tokens/self")
async def token_self(principal: Principal = Depends(AnyToken())) -> dict[str, Any]:
    """What the presented token can do, where, and until when."""
    return introspection.describe(principal, utcnow())


@router.get("/api/tokens/{token_id}", response_model=TokenOut)
def get_token(token_id: str, sc: SessionContext = Depends(RequireSession())) -> TokenOut:
    return TokenOut.of(service.get_pat(sc.db, sc.user.id, token_id), utcnow())


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
    return TokenCreated.minted(minted.credential, minted.token, utcnow())
