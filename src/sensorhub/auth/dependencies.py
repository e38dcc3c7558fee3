"""Route guards. Every route declares exactly one of them (a test walks the route table):

- ``RequireScope("timeseries")`` — a token with that scope;
- ``AnyToken()`` — any valid token (introspection, managements);
- ``RequireSession()`` / ``RequireSession(org_admin=True)`` — an interactive session (management);
- ``Public()`` — no credential (login, health, signed downloads).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Membership, Organisation, Role, User
from sensorhub.accounts.service import find_org, membership
from sensorhub.api.deps import ctx, get_db
from sensorhub.auth import sessions
from sensorhub.auth.models import WebSession
from sensorhub.auth.principal import Principal
from sensorhub.errors import Forbidden, NotFound, Unauthorized
from sensorhub.kit.query_params import reject_unknown_query_params

# Every token route may name the tenant it means: ids are unique per organisation only, so an id that exists
# in two organisations a token reads is chosen with this header (without it such an id answers 409).
TENANT_HEADER = Header(
    None,
    alias="NGSILD-Tenant",
    description="Narrow this request to one organisation (`<org>`) or workspace (`<org>/<workspace>`), "
    "by slug or id. Needed when an entity id exists in several organisations the token can read.",
)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# What the hot routes (sensorhub.api.hot) read themselves instead of FastAPI's parameter handling: the
# token guards' only declared parameter, read as FastAPI reads it (the header's first value, or None).
HOT_HEADERS = frozenset({"ngsild-tenant"})


class _TokenGuard:
    scope: str | None
    hot_headers = HOT_HEADERS

    async def __call__(self, request: Request, tenant: str | None = TENANT_HEADER) -> Principal:
        principal = await ctx(request).auth.authenticate(request, self.scope)
        reject_unknown_query_params(request)  # after auth: anonymous callers learn nothing of the route
        return principal.for_tenant(tenant)

    async def hot(self, request: Request) -> Principal:
        """What FastAPI's call of this guard gives, without FastAPI's dependency solving."""
        return await self(request, request.headers.get("ngsild-tenant"))


class RequireScope(_TokenGuard):
    def __init__(self, scope: str) -> None:
        self.scope = scope


class AnyToken(_TokenGuard):
    scope = None


class Public:
    hot_headers: frozenset[str] = frozenset()

    async def __call__(self) -> None:
        # async on purpose: a sync dependency would cost a threadpool hop on every request.
        return None

    async def hot(self, request: Request) -> None:
        return None


@dataclass
class SessionContext:
    user: User
    web_session: WebSession
    db: Session
    org: Organisation | None = None
    membership: Membership | None = None

    @property
    def role(self) -> str | None:
        return self.membership.role if self.membership else None


class RequireSession:
    """An interactive session; for unsafe methods the CSRF token must be echoed in ``X-CSRF-Token``
    (or a ``csrf_token`` form field for the web UI). With ``org_admin``, the path's ``{org}`` must be
    an organisation where the user is owner or admin; with ``org_member``, any member."""

    def __init__(self, *, org_admin: bool = False, org_member: bool = False, csrf: bool = True) -> None:
        self.org_admin = org_admin
        self.org_member = org_member or org_admin
        self.csrf = csrf

    def __call__(self, request: Request, db: Session = Depends(get_db)) -> Iterator[SessionContext]:
        cookie = request.cookies.get(sessions.COOKIE_NAME)
        if not cookie:
            if request.headers.get("authorization") or request.headers.get("x-api-key"):
                raise Forbidden(
                    "Access tokens cannot be used on management routes: log in with POST /api/auth/login "
                    "and use the session cookie"
                )
            raise Unauthorized("Log in first: POST /api/auth/login with your email and password")
        found = sessions.lookup(db, cookie)
        if found is None:
            raise Unauthorized("Your session has expired or was ended; log in again")
        web_session, user = found
        if self.csrf and request.method in UNSAFE_METHODS:
            # The web UI's forms put it in a field, which its own dependency copies to request.state.
            given = request.headers.get("x-csrf-token") or getattr(request.state, "form_csrf", None)
            if not sessions.csrf_matches(web_session, given):
                raise Forbidden("Missing or wrong CSRF token: send the csrf_token from login as X-CSRF-Token")
        sc = SessionContext(user=user, web_session=web_session, db=db)
        if self.org_member:
            ref = request.path_params.get("org")
            org = find_org(db, ref) if ref else None
            m = membership(db, user.id, org.id) if org else None
            if org is None or m is None:
                raise NotFound(f"organisation '{ref}' not found")
            if self.org_admin and not Role(m.role).is_admin:
                raise Forbidden("Only organisation owners and admins can do this")
            sc.org, sc.membership = org, m
        request.state.user = user
        yield sc
