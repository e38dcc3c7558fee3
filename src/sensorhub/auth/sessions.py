"""Interactive sessions: login with email + password, a server-side session row, a CSRF token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import User
from sensorhub.accounts.passwords import verify_password
from sensorhub.accounts.service import get_user_by_email
from sensorhub.audit.service import record
from sensorhub.auth.models import WebSession
from sensorhub.auth.token_format import digest
from sensorhub.db import utcnow

COOKIE_NAME = "sensorhub_session"


@dataclass
class LoggedIn:
    cookie: str
    csrf_token: str
    user: User
    session: WebSession


def login(s: Session, email: str, password: str, ip: str | None, lifetime_hours: int) -> LoggedIn | None:
    """A new session for valid credentials of an enabled person, else ``None`` (no reason given)."""
    user = get_user_by_email(s, email)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled or user.is_api_user:
        return None
    return start_session(s, user, ip, lifetime_hours)


def start_session(
    s: Session,
    user: User,
    ip: str | None,
    lifetime_hours: int,
    details: dict[str, str] | None = None,
) -> LoggedIn:
    """A session for ``user``, who just proved who they are (a password, or an OpenID Connect sign-in)."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    ws = WebSession(
        digest=digest(cookie),
        user_id=user.id,
        csrf_token=csrf,
        expires_at=now + timedelta(hours=lifetime_hours),
        ip=ip,
    )
    s.add(ws)
    s.execute(delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at < now))
    record(s, "session.login", actor_user_id=user.id, ip=ip, details=details)
    s.flush()
    return LoggedIn(cookie, csrf, user, ws)


def lookup(s: Session, cookie: str) -> tuple[WebSession, User] | None:
    row = s.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.digest == digest(cookie))
    ).first()
    if row is None:
        return None
    ws, user = row.tuple()
    if ws.expires_at <= utcnow() or user.disabled:
        return None
    return ws, user


def logout(s: Session, cookie: str) -> None:
    s.execute(delete(WebSession).where(WebSession.digest == digest(cookie)))


def csrf_matches(ws: WebSession, given: str | None) -> bool:
    return given is not None and secrets.compare_digest(ws.csrf_token, given)
