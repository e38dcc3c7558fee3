"""Recording and listing audit events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.audit.models import AuditEvent


def record(
    s: Session,
    action: str,
    *,
    org_id: str | None = None,
    actor_user_id: str | None = None,
    credential_id: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    s.add(
        AuditEvent(
            action=action,
            org_id=org_id,
            actor_user_id=actor_user_id,
            credential_id=credential_id,
            target=target,
            ip=ip,
            details=details or {},
        )
    )


def list_events(
    s: Session, *, org_id: str | None = None, credential_id: str | None = None, limit: int = 100
) -> list[AuditEvent]:
    q = select(AuditEvent)
    if org_id:
        q = q.where(AuditEvent.org_id == org_id)
    if credential_id:
        q = q.where(AuditEvent.credential_id == credential_id)
    return list(s.scalars(q.order_by(AuditEvent.at.desc()).limit(limit)))
