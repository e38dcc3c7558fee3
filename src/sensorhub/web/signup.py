"""Creating an account from an invitation's sign-up link (``/signup?invite_token=…``, e-mailed by the
``invitation-notices`` job to an invited address without an account): the person picks a name and a
password — or signs in with the OpenID Connect provider using that address — and then answers the
invitation under *Invitations*. The token is in a query parameter ending in ``token`` so that the log
redaction hides it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from sensorhub.accounts import invitations
from sensorhub.accounts.passwords import MIN_PASSWORD_LENGTH
from sensorhub.api.deps import ctx, get_db, request_ip
from sensorhub.auth import sessions
from sensorhub.auth.dependencies import Public
from sensorhub.auth.endpoints import set_session_cookie
from sensorhub.errors import BadRequest, SensorhubError
from sensorhub.web import forms
from sensorhub.web.endpoints import LOGIN_CSRF_COOKIE, login_csrf_ok, render_login_form
from sensorhub.web.guards import read_form
from sensorhub.web.views import page, render

router = APIRouter(include_in_schema=False)


def _refused(request: Request, e: SensorhubError) -> Response:
    p = page(request, "Sign-up link", None)
    return render(
        request,
        "error.html",
        p,
        e.status,
        status=e.status,
        title="This link cannot be used",
        message=e.message,
    )


def _form(
    request: Request,
    found: invitations.SignupView,
    token: str,
    *,
    name: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    p = page(request, "Create your account", None, error=error)
    return render_login_form(
        request,
        "signup.html",
        p,
        status,
        invitation=found.view,
        token=token,
        name=name,
        min_password=MIN_PASSWORD_LENGTH,
    )


@router.get("/signup", dependencies=[Depends(Public())])
def signup_form(request: Request, invite_token: str = "", db: Session = Depends(get_db)) -> Response:
    try:
        found = invitations.signup_for_token(db, invite_token)
    except SensorhubError as e:
        return _refused(request, e)
    return _form(request, found, invite_token)


@router.post("/signup", dependencies=[Depends(Public())])
def signup_submit(
    request: Request, form: FormData | None = Depends(read_form), db: Session = Depends(get_db)
) -> Response:
    token, name = forms.text(form, "invite_token"), forms.text(form, "name")
    password, again = forms.text(form, "password"), forms.text(form, "password_again")
    try:
        found = invitations.signup_for_token(db, token)
    except SensorhubError as e:
        return _refused(request, e)
    if not login_csrf_ok(request, form):
        return _form(
            request, found, token, name=name, error="The form expired. Please fill it in again.", status=400
        )
    try:
        if password != again:
            raise BadRequest("the two passwords differ; type the same password twice")
        user, _ = invitations.sign_up(db, token, name=name, password=password, ip=request_ip(request))
        done = sessions.start_session(
            db,
            user,
            request_ip(request),
            ctx(request).settings.session_lifetime_hours,
            details={"method": "signup"},
        )
    except SensorhubError as e:
        db.rollback()
        return _form(
            request,
            found,
            token,
            name=name,
            error=e.message[:1].upper() + e.message[1:] + ".",
            status=e.status,
        )
    resp = RedirectResponse("/invitations?done=signed-up", status_code=303)
    set_session_cookie(request, resp, done.cookie)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return resp
