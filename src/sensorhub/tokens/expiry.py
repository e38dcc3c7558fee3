"""Expiry notices: 14, 7 and 1 day(s) before a credential expires (``SENSORHUB_TOKEN_NOTICE_DAYS``)
and once it has expired, its owner is told — in the web UI and by e-mail — and, for organisation API
keys and API users' tokens, the organisation's owners and admins.

:func:`run_expiry_notices` is the periodic job. It is idempotent: each notice is recorded once
(``notifications``, unique per recipient and ``token.expiry:<credential>:<days>``), so it may run as
often as wanted, on several workers, and after a restart it picks up where it was. A credential whose
notices were missed (the server was down) gets only the most urgent one that is due, not all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation, Role, User
from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.kit.urls import configured_link
from sensorhub.notices import service as notices
from sensorhub.notices.models import Notification
from sensorhub.tokens.models import Credential

# Credentials that expired longer ago than this are not announced (e.g. when the feature is turned on).
EXPIRED_LOOKBACK = timedelta(days=7)
EXPIRED = 0  # the "threshold" of the notice sent once a credential has expired


@dataclass
class NoticeRun:
    created: int = 0
    sent: int = 0
    failed: int = 0


def run_expiry_notices(db: Database, settings: Settings, now: datetime | None = None) -> NoticeRun:
    """The job: record the notices that are due, then e-mail what waits for it (with retries)."""
    now = now or utcnow()
    with db.transaction() as s:
        created = create_due_notices(s, settings, now)
    delivery = notices.deliver_pending(db, settings, now)
    return NoticeRun(created, delivery.sent, delivery.failed)


def due_threshold(expires_at: datetime, now: datetime, days: list[int]) -> int | None:
    """The notice due for a credential expiring at ``expires_at``: the smallest configured number of
    days it is within, ``EXPIRED`` (0) once expired, ``None`` while it is further away than all."""
    remaining = expires_at - now
    if remaining <= timedelta(0):
        return EXPIRED
    within = [d for d in days if remaining <= timedelta(days=d)]
    return min(within) if within else None


def create_due_notices(s: Session, settings: Settings, now: datetime) -> int:
    days = settings.token_notice_days
    horizon = now + timedelta(days=max(days, default=0))
    q = select(Credential).where(
        Credential.revoked_at.is_(None),
        Credential.superseded_at.is_(None),  # a rotated secret in its grace is meant to end
        Credential.expires_at.is_not(None),
        Credential.expires_at <= horizon,
        Credential.expires_at > now - EXPIRED_LOOKBACK,
    )
    created = 0
    for cred in s.scalars(q):
        assert cred.expires_at is not None
        threshold = due_threshold(cred.expires_at, now, days)
        if threshold is None or _already_told(s, cred.id, threshold):
            continue
        for user, org in recipients(s, cred):
            if notices.notify(s, user, _notice(cred, threshold, org, settings), settings) is not None:
                created += 1
    return created


def _key(cred_id: str, threshold: int) -> str:
    return f"token.expiry:{cred_id}:{threshold}"


def _already_told(s: Session, cred_id: str, threshold: int) -> bool:
    """A notice for this threshold, or a more urgent one, exists."""
    keys = s.scalars(
        select(Notification.dedupe_key).where(
            Notification.credential_id == cred_id, Notification.dedupe_key.like(f"token.expiry:{cred_id}:%")
        )
    )
    told = {int(k.rsplit(":", 1)[1]) for k in keys}
    return any(t <= threshold for t in told)


def recipients(s: Session, cred: Credential) -> list[tuple[User, Organisation | None]]:
    """Who is told: a person's PAT → the person; an API key or an API user's token → the owners and
    admins of the organisation it belongs to."""
    if cred.kind == "pat" and cred.user_id:
        user = s.get(User, cred.user_id)
        if user is None or user.disabled:
            return []
        if not user.is_api_user:
            return [(user, None)]
        org_id = user.owner_org_id
    else:
        org_id = cred.org_id
    org = s.get(Organisation, org_id) if org_id else None
    if org is None:
        return []
    return [(u, org) for m, u in accounts.list_members(s, org) if Role(m.role).is_admin and not u.disabled]


def describe(cred: Credential, org: Organisation | None) -> str:
    if cred.kind == "key":
        return f"the API key “{cred.name}” of {org.name if org else 'your organisation'}"
    if org is not None:
        return f"the API user token “{cred.name}” of {org.name}"
    return f"your token “{cred.name}”"


def _notice(cred: Credential, threshold: int, org: Organisation | None, settings: Settings) -> notices.Notice:
    assert cred.expires_at is not None
    what = describe(cred, org)
    when = cred.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    path = f"/orgs/{org.slug}/api-keys" if cred.kind == "key" and org else "/integrations"
    if threshold == EXPIRED:
        subject = f"sensorhub: {what} has expired"
        body = (
            f"{what[0].upper()}{what[1:]} ({cred.hint}) expired at {when}. Programs using it are refused "
            "now. Create a new one, or rotate it, and update the programs that used it."
        )
        kind = "token.expired"
    else:
        subject = f"sensorhub: {what} expires in {threshold} day{'s' if threshold > 1 else ''}"
        body = (
            f"{what[0].upper()}{what[1:]} ({cred.hint}) expires at {when}. After that, programs using it "
            "are refused. Rotate it before then (you can keep the old secret working for a few days "
            "while you switch) and put the new secret where the old one is used."
        )
        kind = "token.expiring"
    return notices.Notice(
        kind=kind,
        dedupe_key=_key(cred.id, threshold),
        subject=subject,
        body=body,
        org_id=org.id if org else None,
        credential_id=cred.id,
        link=configured_link(settings.base_url, path),
    )
