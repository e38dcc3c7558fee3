"""Credentials: Personal Access Tokens (owned by a user or API user) and org API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, new_id, utcnow


class Credential(Base):
    __tablename__ = "credentials"
    __table_args__ = (
        # A name is unique among an owner's live credentials; revoked ones free their name, and so does a
        # rotated one living out its grace period (its successor has the name).
        Index(
            "uq_credentials_owner_name_live",
            "owner_key",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL AND superseded_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL AND superseded_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))  # "pat" | "key"
    name: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the full token text (hex). The plaintext is never stored.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    # Display hint: prefix and the last four characters, e.g. "shub_pat_…x9Q2".
    hint: Mapped[str] = mapped_column(String(40))
    # "user:<id>" for PATs, "org:<id>" for API keys: the namespace for names.
    owner_key: Mapped[str] = mapped_column(String(48))
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # Restrictions as data: {"organisations": [...], "workspaces": [...], "entities": [...],
    # "time_start": iso, "time_end": iso, "allowed_ips": [...]} (see sensorhub.auth.restrictions).
    restrictions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    export_row_cap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    rotated_from: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Set when the credential was rotated with a grace period: its secret keeps working until
    # ``expires_at`` (moved to the end of the grace), and ``rotated_to`` is the new credential.
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rotated_to: Mapped[str | None] = mapped_column(String(36), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "rotated" if self.superseded_at is not None else "expired"
        if self.superseded_at is not None:
            return "grace"  # rotated; the old secret works until expires_at
        return "active"


class OrgAccessState:
    pending = "pending"  # awaits an owner's/admin's approval (the organisation requires it)
    approved = "approved"
    denied = "denied"  # an admin refused it, with a reason
    revoked = "revoked"  # revoked for this organisation (from the inventory); the token lives on elsewhere


class CredentialOrgAccess(Base):
    """What one organisation decided about one member's PAT: approval, denial, or revocation for that
    organisation only. No row: the organisation decided nothing (the token reads it unless the
    organisation requires approval)."""

    __tablename__ = "credential_org_access"
    __table_args__ = (UniqueConstraint("credential_id", "org_id", name="uq_credential_org_access"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
