"""Login / logout for people (web UI and management API)."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from sensorhub.accounts.service import memberships_of
from sensorhub.api.deps import ctx, get_db, request_ip
from sensorhub.auth import sessions
from sensorhub.auth.dependencies import Public, RequireSession, SessionContext
from sensorhub.errors import RateLimited, Unauthorized
from sensorhub.net import is_https

router = APIRouter(tags=["session"])

LOGIN_WINDOW = 300


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str
    password: str


def _login_keys(request: Request, email: str) -> list[tuple[str, int]]:
    """The failure counters a login attempt is checked against, with their limits.

    Failures are counted per (email, client address) and per client address, never per email alone:
    a per-email lock would let anyone, anywhere, lock a person out by typing wrong passwords for
    them. Without a CAPTCHA, the (email, address) counter does block the right password from the
    attacker's own address (a NAT shared with the victim) until the window ends; other addresses are
    unaffected. The per-address limit is higher and stops one address from spraying many emails."""
    c = ctx(request)
    ip = request_ip(request)
    who = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [
        (f"login:ip-email:{ip}:{who}", c.settings.login_attempts_per_window),
        (f"login:ip:{ip}", c.settings.login_failures_per_address),
    ]


def check_login_budget(request: Request, email: str) -> None:
    limiter = ctx(request).limiter
    for key, limit in _login_keys(request, email):
        d = limiter.peek(key, limit, LOGIN_WINDOW)
        if not d.allowed:
            raise RateLimited(
                "Too many failed logins; wait a few minutes and try again", retry_after=d.retry_after
            )


def note_failed_login(request: Request, email: str) -> None:
    limiter = ctx(request).limiter
    for key, limit in _login_keys(request, email):
        limiter.hit(key, limit, LOGIN_WINDOW)


def set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    c = ctx(request)
    response.set_cookie(
        sessions.COOKIE_NAME,
        cookie,
        max_age=c.settings.session_lifetime_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=is_https(request, tuple(c.settings.trusted_proxies)),
        path="/",
    )


def user_summary(db: Session, sc_user: Any) -> dict[str, Any]:
    return {
        "id": sc_user.id,
        "email": sc_user.email,
        "name": sc_user.name,
        "organisations": [
            {"id": o.id, "slug": o.slug, "name": o.name, "role": m.role}
            for m, o in memberships_of(db, sc_user.id)
        ],
    }


@router.post("/api/auth/login", dependencies=[Depends(Public())])
def login(
    body: LoginBody, request: Request, response: Response, db: Session = Depends(get_db)
) -> dict[str, Any]:
    """Start a session. The answer's ``csrf_token`` must be sent as ``X-CSRF-Token`` on unsafe requests."""
    c = ctx(request)
    check_login_budget(request, body.email)
    done = sessions.login(
        db, body.email, body.password, request_ip(request), c.settings.session_lifetime_hours
    )
    if done is None:
        note_failed_login(request, body.email)
        raise Unauthorized("Wrong email or password")
    set_session_cookie(request, response, done.cookie)
    return {
        "user": user_summary(db, done.user),
        "csrf_token": done.csrf_token,
        "expires_at": done.session.expires_at.isoformat(),
    }


@router.post("/api/auth/logout", status_code=204)
def logout(request: Request, sc: SessionContext = Depends(RequireSession())) -> Response:
    cookie = request.cookies.get(sessions.COOKIE_NAME, "")
    sessions.logout(sc.db, cookie)
    resp = Response(status_code=204)
    resp.delete_cookie(sessions.COOKIE_NAME, path="/")
    return resp


@router.get("/api/auth/me")
def me(sc: SessionContext = Depends(RequireSession())) -> dict[str, Any]:
    out = user_summary(sc.db, sc.user)
    out["csrf_token"] = sc.web_session.csrf_token
    return out
