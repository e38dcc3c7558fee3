"""Login / logout for people (web UI and management API)."""

from __future__ import annotations

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


def check_login_budget(request: Request, email: str) -> None:
    c = ctx(request)
    ip = request_ip(request)
    limit = c.settings.login_attempts_per_window
    for key in (f"login:ip:{ip}", f"login:email:{email.strip().lower()}"):
        d = c.limiter.peek(key, limit, LOGIN_WINDOW)
        if not d.allowed:
            raise RateLimited("Too many failed logins; wait a few minutes and try again", retry_after=d.retry_after)


def note_failed_login(request: Request, email: str) -> None:
    c = ctx(request)
    ip = request_ip(request)
    limit = c.settings.login_attempts_per_window
    c.limiter.hit(f"login:ip:{ip}", limit, LOGIN_WINDOW)
    c.limiter.hit(f"login:email:{email.strip().lower()}", limit, LOGIN_WINDOW)


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
            {"id": o.id, "slug": o.slug, "name": o.name, "role": m.role} for m, o in memberships_of(db, sc_user.id)
        ],
    }


@router.post("/api/auth/login", dependencies=[Depends(Public())])
def login(body: LoginBody, request: Request, response: Response, db: Session = Depends(get_db)) -> dict[str, Any]:
    """Start a session. The answer's ``csrf_token`` must be sent as ``X-CSRF-Token`` on unsafe requests."""
    c = ctx(request)
    check_login_budget(request, body.email)
    done = sessions.login(db, body.email, body.password, request_ip(request), c.settings.session_lifetime_hours)
    if done is None:
        note_failed_login(request, body.email)
        db.rollback()
        raise Unauthorized("Wrong email or password")
    db.commit()
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
    sc.db.commit()
    resp = Response(status_code=204)
    resp.delete_cookie(sessions.COOKIE_NAME, path="/")
    return resp


@router.get("/api/auth/me")
def me(sc: SessionContext = Depends(RequireSession())) -> dict[str, Any]:
    out = user_summary(sc.db, sc.user)
    out["csrf_token"] = sc.web_session.csrf_token
    return out
