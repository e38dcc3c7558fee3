"""The logged-in person's notifications page (token expiry notices and other messages to them).

The same services as ``GET /api/notifications`` and ``POST /api/notifications/{id}/read``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from sensorhub import mail
from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import SessionContext
from sensorhub.notices import service as notices
from sensorhub.web.guards import RequireWebSession
from sensorhub.web.views import attempt, page, render

router = APIRouter(include_in_schema=False)

PAGE = RequireWebSession(csrf=False)
FORM = RequireWebSession()
PER_PAGE = 50


def notifications_page(
    request: Request, sc: SessionContext, *, error: str | None = None, status: int = 200
) -> Response:
    p = page(request, "Notifications", sc, active="notifications", error=error)
    try:
        number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    total = notices.count_for(sc.db, sc.user.id)
    items = notices.list_for(sc.db, sc.user.id, limit=PER_PAGE, offset=(number - 1) * PER_PAGE)
    return render(
        request,
        "notifications.html",
        p,
        status,
        items=items,
        number=number,
        pages=max(1, -(-total // PER_PAGE)),
        total=total,
        mail_configured=mail.SmtpConfig.from_settings(ctx(request).settings) is not None,
    )


@router.get("/notifications")
def my_notifications(request: Request, sc: SessionContext = Depends(PAGE)) -> Response:
    return notifications_page(request, sc)


@router.post("/notifications/read-all")
def read_all(request: Request, sc: SessionContext = Depends(FORM)) -> Response:
    def act() -> Response:
        notices.mark_read(sc.db, sc.user.id)
        return RedirectResponse("/notifications", status_code=303)

    return attempt(request, sc, act, notifications_page)


@router.post("/notifications/{notification_id}/read")
def read_one(notification_id: str, request: Request, sc: SessionContext = Depends(FORM)) -> Response:
    def act() -> Response:
        notices.mark_read(sc.db, sc.user.id, notification_id)
        return RedirectResponse("/notifications", status_code=303)

    return attempt(request, sc, act, notifications_page)
