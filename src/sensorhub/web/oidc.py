"""Sign in with an OpenID Connect provider (``SENSORHUB_OIDC_*``): ``/login/oidc`` sends the browser to the
provider, ``/login/oidc/callback`` takes its answer back (:mod:`sensorhub.auth.oidc_login` checks it) and
starts the same web session as a password login. A failure is shown on the login page, and nothing of it
is stored (the request's transaction is rolled back)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.responses import Response

from sensorhub.api.deps import ctx, get_db, request_ip
from sensorhub.auth import oidc_login
from sensorhub.auth.dependencies import Public
from sensorhub.auth.endpoints import set_session_cookie
from sensorhub.auth.oidc import ProviderConfig
from sensorhub.errors import SensorhubError
from sensorhub.kit.urls import base_url
from sensorhub.net import is_https
from sensorhub.web.endpoints import login_page
from sensorhub.web.guards import safe_next

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sensorhub.oidc")

STATE_COOKIE = "sensorhub_oidc_state"
STATE_COOKIE_PATH = "/login/oidc"
CALLBACK_PATH = "/login/oidc/callback"


def _config(request: Request) -> ProviderConfig | None:
    return ProviderConfig.from_settings(ctx(request).settings)


def _failed(request: Request, db: Session, config: ProviderConfig | None, e: SensorhubError) -> Response:
    db.rollback()
    name = config.display_name if config else "a provider"
    log.warning("OpenID Connect sign-in failed (%s): %s", e.status, e.message)
    resp = login_page(request, error=f"Sign-in with {name} failed: {e.message}.", status=e.status)
    resp.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
    return resp


@router.get("/login/oidc", dependencies=[Depends(Public())])
def start(request: Request, next: str = "/", db: Session = Depends(get_db)) -> Response:
    config = _config(request)
    if config is None:
        return login_page(
            request, error="Sign-in with a provider is not configured on this server.", status=404
        )
    redirect_uri = base_url(request, ctx(request).settings.base_url) + CALLBACK_PATH
    try:
        req = oidc_login.begin(db, config, redirect_uri, safe_next(next))
    except SensorhubError as e:
        return _failed(request, db, config, e)
    resp = RedirectResponse(req.url, status_code=303)
    # The provider sends the browser back with a top-level GET: SameSite=Lax cookies come along.
    resp.set_cookie(
        STATE_COOKIE,
        req.state,
        max_age=int(oidc_login.STATE_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=is_https(request, tuple(ctx(request).settings.trusted_proxies)),
        path=STATE_COOKIE_PATH,
    )
    return resp


@router.get(CALLBACK_PATH, dependencies=[Depends(Public())])
def callback(request: Request, db: Session = Depends(get_db)) -> Response:
    config = _config(request)
    if config is None:
        return login_page(
            request, error="Sign-in with a provider is not configured on this server.", status=404
        )
    params = {k: v for k, v in request.query_params.multi_items()}
    try:
        done, next_path = oidc_login.finish(
            db, ctx(request).settings, config, params, request.cookies.get(STATE_COOKIE), request_ip(request)
        )
    except SensorhubError as e:
        return _failed(request, db, config, e)
    resp = RedirectResponse(safe_next(next_path), status_code=303)
    set_session_cookie(request, resp, done.cookie)
    resp.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
    return resp
