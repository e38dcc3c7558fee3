"""The logged-in person's notifications (token expiry notices and other messages to them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from sensorhub.auth.dependencies import RequireSession, SessionContext
from sensorhub.kit.paging import LimitPolicy, OffsetBounds
from sensorhub.kit.query_params import reject_unknown_query_params
from sensorhub.notices import service
from sensorhub.notices.models import Notification

router = APIRouter(tags=["notifications"])

LIMIT = LimitPolicy(default=50, maximum=500)
OFFSET = OffsetBounds(maximum=1_000_000)


def notification_out(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind,
        "subject": n.subject,
        "body": n.body,
        "link": n.link,
        "organisation_id": n.org_id,
        "credential_id": n.credential_id,
        "created_at": n.created_at,
        "read_at": n.read_at,
        "email": {
            "to": n.email_to,
            "status": n.email_status,
            "attempts": n.email_attempts,
            "error": n.email_error,
            "sent_at": n.email_sent_at,
            "next_attempt_at": n.email_next_at if n.email_status == "pending" else None,
        },
    }


@router.get("/api/notifications")
def list_notifications(
    request: Request,
    limit: int | None = None,
    offset: int = 0,
    sc: SessionContext = Depends(RequireSession()),
) -> dict[str, Any]:
    """Your notifications, newest first, with the delivery state of their e-mails."""
    reject_unknown_query_params(request)
    n = LIMIT.resolve(limit)
    rows = service.list_for(sc.db, sc.user.id, limit=n, offset=OFFSET.check(offset))
    return {
        "total": service.count_for(sc.db, sc.user.id),
        "items": [notification_out(r) for r in rows],
    }


@router.post("/api/notifications/{notification_id}/read")
def read_notification(notification_id: str, sc: SessionContext = Depends(RequireSession())) -> dict[str, int]:
    """Mark one notification read."""
    return {"changed": service.mark_read(sc.db, sc.user.id, notification_id)}


@router.post("/api/notifications/read-all")
def read_all(sc: SessionContext = Depends(RequireSession())) -> dict[str, int]:
    """Mark every notification read."""
    return {"changed": service.mark_read(sc.db, sc.user.id)}
