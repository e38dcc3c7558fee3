"""Telling invited people: a pending invitation to an address that has an account becomes a notification
(in the web UI, and e-mailed when SMTP is configured) with a link to accept or decline it.

This runs as a periodic job, not in the request that invites: the inviting request never looks the
address up, so its answer (and its timing) is the same whether or not an account exists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Invitation, InvitationStatus, Organisation, User
from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.notices import service as notices


def notify_invitations(s: Session, settings: Settings, now: datetime) -> int:
    """Record a notice for each pending, unexpired invitation whose address has an account; how many."""
    q = (
        select(Invitation, User, Organisation)
        .join(User, User.email == Invitation.email)
        .join(Organisation, Organisation.id == Invitation.org_id)
        .where(Invitation.status == InvitationStatus.pending.value, Invitation.expires_at > now)
    )
    created = 0
    for inv, user, org in s.execute(q).tuples():
        if user.disabled or user.is_api_user:
            continue
        until = inv.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        notice = notices.Notice(
            kind="invitation",
            dedupe_key=f"invitation:{inv.id}",
            subject=f"sensorhub: you are invited to join {org.name}",
            body=(
                f"You are invited to join {org.name} as {inv.role}. Accept or decline the invitation under "
                f"Invitations after logging in; it expires at {until}. You become a member only if you accept."
            ),
            org_id=org.id,
            link=(settings.base_url.rstrip("/") if settings.base_url else "") + "/invitations",
        )
        if notices.notify(s, user, notice, settings) is not None:
            created += 1
    return created


def run_invitation_notices(db: Database, settings: Settings, now: datetime | None = None) -> int:
    now = now or utcnow()
    with db.transaction() as s:
        created = notify_invitations(s, settings, now)
    notices.deliver_pending(db, settings, now)
    return created
