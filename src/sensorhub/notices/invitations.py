"""Telling invited people, as a periodic job (``invitation-notices``), never in the request that invites:
the inviting request never looks the address up, so its answer (and its timing) is the same whether or
not an account exists.

- An address that has an account gets a notification (web UI, and e-mail when SMTP is configured) with
  a link to accept or decline the invitation.
- An address without an account, when SMTP is configured, gets an e-mail with a **sign-up link**: a
  single-use token (only its SHA-256 is stored, made anew at each sending attempt) that lets the person
  create the account for that address, valid while the invitation is pending and unexpired. An SMTP
  server that is down leaves the message pending with the error and a retry time (backoff), like the
  notifications' e-mail.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sensorhub import mail
from sensorhub.accounts.models import (
    Invitation,
    InvitationSignup,
    InvitationStatus,
    Organisation,
    SignupStatus,
    User,
)
from sensorhub.auth.token_format import digest
from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.kit.urls import configured_link
from sensorhub.notices import service as notices

log = logging.getLogger("sensorhub.notices")

SIGNUP_PATH = "/signup"


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
            link=configured_link(settings.base_url, "/invitations"),
        )
        if notices.notify(s, user, notice, settings) is not None:
            created += 1
    return created


def queue_signup_links(s: Session, now: datetime) -> int:
    """A sign-up e-mail to send for each pending invitation to an address without an account; how many."""
    q = (
        select(Invitation)
        .outerjoin(User, User.email == Invitation.email)
        .outerjoin(InvitationSignup, InvitationSignup.invitation_id == Invitation.id)
        .where(
            Invitation.status == InvitationStatus.pending.value,
            Invitation.expires_at > now,
            User.id.is_(None),
            InvitationSignup.id.is_(None),
        )
    )
    queued = 0
    for inv in s.scalars(q):
        try:
            with s.begin_nested():
                s.add(InvitationSignup(invitation_id=inv.id, email=inv.email, created_at=now))
        except IntegrityError:
            continue
        queued += 1
    return queued


def send_signup_links(db: Database, settings: Settings, now: datetime) -> int:
    """E-mail the due sign-up links (a fresh token each attempt); how many went out."""
    config = mail.SmtpConfig.from_settings(settings)
    if config is None:
        return 0
    with db.session() as s:
        due = list(
            s.scalars(
                select(InvitationSignup.id).where(
                    notices.sendable(InvitationSignup.status, InvitationSignup.next_at, now)
                )
            )
        )
    return notices.send_claimed(
        config,
        due,
        lambda sid: _claim(db, settings, sid, now),
        lambda sid, error: _failed(db, sid, error, now),
        lambda sid: _sent(db, sid, now),
    ).sent


def _claim(db: Database, settings: Settings, sid: str, now: datetime) -> tuple[str, str, str] | None:
    """Take ``sid`` for sending and give it a new token; the message, or None (taken, or moot)."""
    with db.transaction() as s:
        changed = s.execute(
            update(InvitationSignup)
            .where(
                InvitationSignup.id == sid,
                notices.sendable(InvitationSignup.status, InvitationSignup.next_at, now),
            )
            .values(status=SignupStatus.sending, next_at=now + notices.CLAIM_TIMEOUT)
        ).rowcount  # type: ignore[attr-defined,unused-ignore]
        if not changed:
            return None
        row = s.get_one(InvitationSignup, sid)
        inv = s.get_one(Invitation, row.invitation_id)
        if inv.status != InvitationStatus.pending or inv.expires_at <= now:
            row.status = SignupStatus.void
            return None
        org = s.get_one(Organisation, inv.org_id)
        token = secrets.token_urlsafe(32)
        row.token_digest = digest(token)
        row.attempts += 1
    until = inv.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"You are invited to join {org.name} on sensorhub as {inv.role}.\n\n"
        f"Create your account for {inv.email} with this link, then accept or decline the invitation:\n\n"
        f"{configured_link(settings.base_url, SIGNUP_PATH)}?invite_token={token}\n\n"
        f"The link works once, until {until}. If you did not expect this invitation, ignore this message."
    )
    return inv.email, f"sensorhub: you are invited to join {org.name}", text


def _failed(db: Database, sid: str, error: str, now: datetime) -> None:
    with db.transaction() as s:
        row = s.get_one(InvitationSignup, sid)
        row.status = SignupStatus.pending
        row.error = error[:500]
        row.next_at = notices.retry_at(row.attempts, now)
    log.warning("invitation sign-up e-mail not delivered (attempt %d), retrying: %s", row.attempts, error)


def _sent(db: Database, sid: str, now: datetime) -> None:
    with db.transaction() as s:
        row = s.get_one(InvitationSignup, sid)
        row.status, row.sent_at, row.error, row.next_at = SignupStatus.sent, now, None, None


def run_invitation_notices(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """The job: notices for invited accounts, sign-up links for the others; how many notices and links."""
    now = now or utcnow()
    with db.transaction() as s:
        created = notify_invitations(s, settings, now)
        if mail.SmtpConfig.from_settings(settings) is not None:
            created += queue_signup_links(s, now)
    notices.deliver_pending(db, settings, now)
    send_signup_links(db, settings, now)
    return created
