"""The invited person's side: their pending invitations, accepted or declined after logging in.

The same services as ``GET /api/invitations`` and ``POST /api/invitations/{id}/accept|decline``."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from sensorhub.accounts import invitations
from sensorhub.api.deps import request_ip
from sensorhub.auth.dependencies import SessionContext
from sensorhub.web.guards import RequireWebSession
from sensorhub.web.views import attempt, page, render

router = APIRouter(include_in_schema=False)

PAGE = RequireWebSession(csrf=False)
FORM = RequireWebSession()


def invitations_page(
    request: Request, sc: SessionContext, *, error: str | None = None, status: int = 200
) -> Response:
    p = page(request, "Invitations", sc, active="invitations", error=error)
    return render(
        request, "invitations.html", p, status, invitations=invitations.invitations_for(sc.db, sc.user)
    )


def _answer(
    request: Request, sc: SessionContext, service: Callable[..., object], invitation_id: str, done: str
) -> Response:
    """Answer the invitation with ``service``, then back to the list with the notice ``done``."""

    def answered() -> Response:
        service(sc.db, sc.user, invitation_id, ip=request_ip(request))
        return RedirectResponse(f"/invitations?done={done}", status_code=303)

    return attempt(request, sc, answered, invitations_page)


@router.get("/invitations")
def my_invitations(request: Request, sc: SessionContext = Depends(PAGE)) -> Response:
    return invitations_page(request, sc)


@router.post("/invitations/{invitation_id}/accept")
def accept(invitation_id: str, request: Request, sc: SessionContext = Depends(FORM)) -> Response:
    return _answer(request, sc, invitations.accept_invitation, invitation_id, "invitation-accepted")


@router.post("/invitations/{invitation_id}/decline")
def decline(invitation_id: str, request: Request, sc: SessionContext = Depends(FORM)) -> Response:
    return _answer(request, sc, invitations.decline_invitation, invitation_id, "invitation-declined")
