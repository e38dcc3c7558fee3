"""The web UI: server-rendered pages (Jinja2) over the same services as the management API.

:func:`install` is called by :func:`sensorhub.app.create_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from sensorhub.web.guards import LoginRequired, PageError, login_url

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI, ctx: Any) -> None:
    from sensorhub.web.admin import router as admin_router
    from sensorhub.web.endpoints import router as pages_router
    from sensorhub.web.invitations import router as invitations_router
    from sensorhub.web.live import router as live_router
    from sensorhub.web.notifications import router as notifications_router
    from sensorhub.web.oidc import router as oidc_router
    from sensorhub.web.push_pages import router as push_router
    from sensorhub.web.signup import router as signup_router
    from sensorhub.web.subscription_pages import router as subscriptions_router
    from sensorhub.web.views import page, render

    app.include_router(pages_router)
    app.include_router(oidc_router)
    app.include_router(signup_router)
    app.include_router(admin_router)
    app.include_router(invitations_router)
    app.include_router(live_router)
    app.include_router(push_router)
    app.include_router(subscriptions_router)
    app.include_router(notifications_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def _login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    async def _page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        p = page(request, exc.title, None)
        return render(
            request, "error.html", p, exc.status, status=exc.status, title=exc.title, message=exc.message
        )

    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(PageError, _page_error)
