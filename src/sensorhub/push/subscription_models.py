"""NGSI-LD subscriptions (``/ngsi-ld/v1/subscriptions``): a standing read owned by the credential that
made it, notified over HTTP through the delivery queue (:mod:`sensorhub.push.subscriptions`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, utcnow

# The delivery target kind of NGSI-LD subscriptions' notifications (``deliveries.target_kind``).
TARGET_KIND = "ngsi_ld_subscription"


class NgsiSubscription(Base):
    __tablename__ = "ngsi_subscriptions"
    # Ids are unique per owner: one credential never learns whether another used an id.
    __table_args__ = (UniqueConstraint("credential_id", "sub_id", name="uq_ngsi_subscriptions_owner_id"),)

    pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    sub_id: Mapped[str] = mapped_column(String(512))  # the NGSI-LD id (a URI)
    # The owner: the subscription acts with this credential's *current* access (entities scope).
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"), index=True)
    # The NGSILD-Tenant the subscription was made under (narrows the owner's access), if any.
    tenant: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # The Subscription members as given and checked (id, type and the status members are added on output).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    throttling: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Why the server turned it off (e.g. the endpoint answered 410 Gone); None while the owner decides.
    disabled_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # When a notification was last queued (throttling); counts and outcomes are in the delivery log.
    last_notification: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # What deliveries pruned from the log (sensorhub.push.retention) had counted: added to the log's.
    pruned_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pruned_failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pruned_last_success: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pruned_last_failure: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
