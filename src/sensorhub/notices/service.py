"""Creating notifications (once each), listing them, and e-mailing them with retries.

A notification is a row first: it is shown in the web UI from the moment its transaction commits, and
its e-mail (when SMTP is configured and the person has an address) is delivered by
:func:`deliver_pending` afterwards, each in its own short transaction: an SMTP server that is down
leaves the row ``pending`` with the error and a later retry time, so nothing is lost and the UI says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from sensorhub import mail
from sensorhub.accounts.models import User
from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.errors import NotFound
from sensorhub.notices.models import EmailStatus, Notification

log = logging.getLogger("sensorhub.notices")

# A claimed message not marked sent within this long is claimed again (its sender died).
CLAIM_TIMEOUT = timedelta(minutes=10)
MAX_RETRY_DELAY = timedelta(hours=1)


@dataclass(frozen=True)
class Notice:
    kind: str
    dedupe_key: str
    subject: str
    body: str
    org_id: str | None = None
    credential_id: str | None = None
    link: str | None = None


def notify(s: Session, user: User, notice: Notice, settings: Settings) -> Notification | None:
    """Record ``notice`` for ``user`` unless it already was (then ``None``); queue its e-mail."""
    exists = s.scalar(
        select(Notification.id).where(
            Notification.user_id == user.id, Notification.dedupe_key == notice.dedupe_key
        )
    )
    if exists:
        return None
    configured = mail.SmtpConfig.from_settings(settings) is not None
    email = user.email if (configured and user.email and not user.is_api_user) else None
    n = Notification(
        user_id=user.id,
        org_id=notice.org_id,
        kind=notice.kind,
        dedupe_key=notice.dedupe_key,
        credential_id=notice.credential_id,
        subject=notice.subject,
        body=notice.body,
        link=notice.link,
        email_to=email,
        email_status=EmailStatus.pending if email else EmailStatus.none,
    )
    try:
        with s.begin_nested():  # another worker may have recorded it meanwhile: then it is theirs
            s.add(n)
    except IntegrityError:
        return None
    return n


def list_for(s: Session, user_id: str, *, limit: int = 50, offset: int = 0) -> list[Notification]:
    q = (
        select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id)
        .limit(limit)
        .offset(offset)
    )
    return list(s.scalars(q))


def count_for(s: Session, user_id: str) -> int:
    return int(s.scalar(select(func.count()).where(Notification.user_id == user_id)) or 0)


def unread(s: Session, user_id: str, kinds: tuple[str, ...] = ()) -> list[Notification]:
    q = select(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if kinds:
        q = q.where(Notification.kind.in_(kinds))
    return list(s.scalars(q.order_by(Notification.created_at.desc()).limit(20)))


def mark_read(s: Session, user_id: str, notification_id: str | None = None) -> int:
    """Mark one (or, without an id, every) notification of ``user_id`` read; how many changed."""
    q = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if notification_id is not None:
        if (
            s.scalar(
                select(Notification.id).where(
                    Notification.id == notification_id, Notification.user_id == user_id
                )
            )
            is None
        ):
            raise NotFound(f"notification '{notification_id}' not found")
        q = q.where(Notification.id == notification_id)
    return int(s.execute(q.values(read_at=utcnow())).rowcount)  # type: ignore[attr-defined,unused-ignore]


# -- e-mail delivery ----------------------------------------------------------------------------------
@dataclass
class Delivery:
    sent: int = 0
    failed: int = 0


def deliver_pending(
    db: Database, settings: Settings, now: datetime | None = None, limit: int = 200
) -> Delivery:
    """E-mail the notifications waiting for it; a failure is kept for a retry with backoff."""
    config = mail.SmtpConfig.from_settings(settings)
    if config is None:
        return Delivery()
    now = now or utcnow()
    with db.session() as s:
        due = list(
            s.scalars(
                select(Notification.id)
                .where(sendable(Notification.email_status, Notification.email_next_at, now))
                .order_by(Notification.created_at)
                .limit(limit)
            )
        )
    return send_claimed(
        config,
        due,
        lambda nid: _claim(db, nid, now),
        lambda nid, error: _record_failure(db, nid, error, now),
        lambda nid: _record_sent(db, nid, now),
    )


def sendable(
    status: InstrumentedAttribute[str], next_at: InstrumentedAttribute[datetime | None], now: datetime
) -> ColumnElement[bool]:
    """An e-mail a sender may take: waiting to be sent (``pending``) or claimed by a sender that did not
    finish in time (``sending``), and due (``next_at`` unset or passed)."""
    return and_(status.in_((EmailStatus.pending, EmailStatus.sending)), next_at.is_(None) | (next_at <= now))


def send_claimed(
    config: mail.SmtpConfig,
    ids: Iterable[str],
    claim: Callable[[str], tuple[str, str, str] | None],
    failed: Callable[[str, str], None],
    sent: Callable[[str], None],
) -> Delivery:
    """E-mail each of ``ids`` that ``claim`` takes for sending (it gives the address, subject and text;
    ``None``: another sender has it, or it is moot), then record it ``sent``, or ``failed`` with the error."""
    out = Delivery()
    for i in ids:
        message = claim(i)
        if message is None:
            continue
        to, subject, text = message
        try:
            mail.send_mail(config, [to], subject, text)
        except mail.MailError as e:
            failed(i, str(e))
            out.failed += 1
        else:
            sent(i)
            out.sent += 1
    return out


def retry_at(attempts: int, now: datetime) -> datetime:
    """When an e-mail that failed ``attempts`` times is tried again: after a delay that doubles from one
    minute, at most :data:`MAX_RETRY_DELAY`."""
    return now + min(MAX_RETRY_DELAY, timedelta(minutes=2 ** min(attempts - 1, 10)))


def _claim(db: Database, nid: str, now: datetime) -> tuple[str, str, str] | None:
    """Take ``nid`` for sending (no other sender takes it for CLAIM_TIMEOUT); its address, subject, text."""
    with db.transaction() as s:
        changed = s.execute(
            update(Notification)
            .where(
                Notification.id == nid, sendable(Notification.email_status, Notification.email_next_at, now)
            )
            .values(email_status=EmailStatus.sending, email_next_at=now + CLAIM_TIMEOUT)
        ).rowcount  # type: ignore[attr-defined,unused-ignore]
        if not changed:
            return None
        n = s.get_one(Notification, nid)
        assert n.email_to is not None
        return n.email_to, n.subject, n.body + _footer(n)


def _footer(n: Notification) -> str:
    return f"\n\n{n.link}\n" if n.link else ""


def _record_failure(db: Database, nid: str, error: str, now: datetime) -> None:
    with db.transaction() as s:
        n = s.get_one(Notification, nid)
        n.email_attempts += 1
        n.email_status = EmailStatus.pending
        n.email_error = error[:500]
        n.email_next_at = retry_at(n.email_attempts, now)
    log.warning("notification e-mail not delivered (attempt %d), retrying: %s", n.email_attempts, error)


def _record_sent(db: Database, nid: str, now: datetime) -> None:
    with db.transaction() as s:
        n = s.get_one(Notification, nid)
        n.email_attempts += 1
        n.email_status = EmailStatus.sent
        n.email_sent_at = now
        n.email_error = None
        n.email_next_at = None
