"""Notifications to a person: shown in the web UI, and e-mailed when SMTP is configured."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, new_id, utcnow


class EmailStatus:
    none = "none"  # not e-mailed (no SMTP configured, or the recipient has no address)
    pending = "pending"  # waiting to be sent, or to be retried after a failure (email_error says why)
    sending = "sending"  # claimed by a sender; reclaimed if it stays so past email_next_at
    sent = "sent"


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # Each notice is created once: (recipient, what it is about) is unique, e.g.
        # "token.expiring:<credential>:7" — a second job run, or a second worker, adds nothing.
        UniqueConstraint("user_id", "dedupe_key", name="uq_notifications_user_key"),
        Index("ix_notifications_email", "email_status", "email_next_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    kind: Mapped[str] = mapped_column(String(40))  # token.expiring | token.expired | ...
    dedupe_key: Mapped[str] = mapped_column(String(200))
    credential_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    email_to: Mapped[str | None] = mapped_column(String(320), nullable=True)
    email_status: Mapped[str] = mapped_column(String(16), default=EmailStatus.none)
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    email_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    email_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    email_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
