"""Export metadata: one row per file produced for a credential."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, new_id, utcnow


class ExportStatus:
    """Stored states; ``expired`` is derived from ``expires_at`` when listing."""

    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


class Export(Base):
    __tablename__ = "exports"
    __table_args__ = (
        Index("ix_exports_credential_created", "credential_id", "created_at"),
        Index("ix_exports_expires", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The credential that asked for it (listing is per credential). Kept when the credential row goes
    # away so that the periodic cleanup still finds the file.
    credential_id: Mapped[str | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL"), nullable=True
    )
    format: Mapped[str] = mapped_column(String(16))  # "csv" | "parquet"
    status: Mapped[str] = mapped_column(String(16), default=ExportStatus.RUNNING)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    row_cap: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The request as understood: start/end (ISO), series, aggregation, function.
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    store: Mapped[str] = mapped_column(String(16))  # "local" | "s3"
    object_key: Mapped[str] = mapped_column(String(1024))
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set when the cleanup removed the file (the row is kept for the listing).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
