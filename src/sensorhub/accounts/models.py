"""Organisations, workspaces, users (people and API users), memberships and grants."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sensorhub.db import Base, UTCDateTime, new_id, utcnow


class Role(StrEnum):
    owner = "owner"
    admin = "admin"
    member = "member"
    viewer = "viewer"

    @property
    def is_admin(self) -> bool:
        return self in (Role.owner, Role.admin)


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Token policy: cap on token lifetime (None = no cap) and whether non-expiring tokens are allowed.
    max_token_lifetime_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allow_non_expiring_tokens: Mapped[bool] = mapped_column(Boolean, default=False)
    # The longest grace period (days, 0-7) a rotation may keep the old secret working for.
    max_rotation_grace_days: Mapped[int] = mapped_column(Integer, default=7, server_default="7")
    # Members' PATs read the organisation only once an owner/admin approved them (per token).
    require_pat_approval: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The scopes members' PATs may use here (None: any their role allows).
    allowed_pat_scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Client networks every credential must come from to read this organisation (None: anywhere).
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    workspaces: Mapped[list[Workspace]] = relationship(back_populates="organisation", lazy="raise")


class Workspace(Base):
    """An Akenza workspace = a LEAF department = a Datacake workspace."""

    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("org_id", "slug"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    # Auto-provisioning: an ingest write naming an unknown device creates it here (docs/ingest.md).
    auto_provision: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The entity type of the devices it creates.
    auto_provision_type: Mapped[str] = mapped_column(String(200), default="Device", server_default="Device")
    # The credentials (ids) that may trigger it; None: any credential with ingest on the workspace.
    auto_provision_credentials: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    organisation: Mapped[Organisation] = relationship(back_populates="workspaces", lazy="raise")


class User(Base):
    """A person (email + password) or an API user: a service account of one organisation, no password."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    is_api_user: Mapped[bool] = mapped_column(Boolean, default=False)
    # For API users: the organisation that owns the service account.
    owner_org_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def display(self) -> str:
        return self.email or self.name


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "org_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Grant(Base):
    """A LEAF "management": read access to an organisation, narrowed to a workspace, an entity and a
    half-open time window ``[time_start, time_end)``; each narrowing is optional."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=True
    )
    entity_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    time_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    time_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InvitationStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    cancelled = "cancelled"


class Invitation(Base):
    """An offer of membership, addressed to an email, that only the person with that email can accept.

    Nothing about the invited account is stored or checked at invitation time: the same row is written
    whether an account with that email exists or not, so that inviting reveals nothing about other
    organisations' users. The membership (with ``role`` and read grants on ``workspace_ids``) is created
    on acceptance."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_email_status", "email", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))  # normalised: stripped, lower case
    role: Mapped[str] = mapped_column(String(16))
    workspace_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=InvitationStatus.pending.value)
    invited_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    responded_by: Mapped[str | None] = mapped_column(String(36), nullable=True)


class SignupStatus:
    pending = "pending"  # to be e-mailed (again, after a failure: ``error`` says why, ``next_at`` when)
    sending = "sending"  # claimed by a sender; claimed again once ``next_at`` has passed
    sent = "sent"
    void = "void"  # the invitation was answered, cancelled or expired before the e-mail went out


class InvitationSignup(Base):
    """The sign-up link e-mailed for an invitation to an address that has no account.

    The link carries a random token; only its SHA-256 is stored (``token_digest``), made anew at each
    sending attempt (a message that never arrived leaves no working link behind). It works once
    (``used_at``) and only while its invitation is pending and unexpired."""

    __tablename__ = "invitation_signups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    invitation_id: Mapped[str] = mapped_column(ForeignKey("invitations.id", ondelete="CASCADE"), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    token_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    status: Mapped[str] = mapped_column(String(16), default=SignupStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
