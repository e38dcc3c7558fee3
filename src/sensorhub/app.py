"""The ASGI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from sensorhub import __version__, bus, metrics, web
from sensorhub.accounts.endpoints import router as accounts_router
from sensorhub.api import errors as api_errors
from sensorhub.api.health import router as health_router
from sensorhub.api.middleware import RequestContextMiddleware
from sensorhub.api.openapi import build_openapi
from sensorhub.audit import usage as audit_usage
from sensorhub.auth.endpoints import router as session_router
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.entities.endpoints import router as entities_router
from sensorhub.export import endpoints as export_endpoints
from sensorhub.logs import install_redaction
from sensorhub.timeseries.endpoints import router as timeseries_router
from sensorhub.tokens.endpoints import router as tokens_router

# Every router of the application. Domain packages append theirs here (one line each).
ROUTERS: list[APIRouter] = [
    health_router,
    session_router,
    tokens_router,
    accounts_router,
    entities_router,
    timeseries_router,
    export_endpoints.router,
]

DESCRIPTION = """
Sensor data behind scoped, revocable access tokens.

**Data routes** take a token: `Authorization: Bearer <token>` (or `Token <token>`), or `x-api-key: <key>`
for organisation API keys. **Management routes** (`/api/tokens`, `/api/orgs/…`) need a session from
`POST /api/auth/login`; tokens can never manage tokens.
"""


def create_app(settings: Settings | None = None, context: AppContext | None = None) -> FastAPI:
    settings = settings or Settings()
    install_redaction(settings.token_prefix)
    ctx = context or AppContext.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for hook in app.state.startup_hooks:
            await hook(app)
        try:
            yield
        finally:
            for hook in reversed(app.state.shutdown_hooks):
                await hook(app)
            ctx.db.dispose()

    app = FastAPI(
        title="sensorhub",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url=None,  # served below from local files: no CDN, works offline
        redoc_url=None,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.ctx = ctx
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    app.state.readiness_probes = {}
    api_errors.install(app)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, hsts=settings.require_https
    )
    for r in ROUTERS:
        app.include_router(r)
    _mount_docs(app)
    for extend in EXTENSIONS:
        extend(app, ctx)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


# Callables run at app creation (e.g. web UI mounting, Redis bus, metrics): ``fn(app, ctx)``.
EXTENSIONS: list[Any] = [bus.install, metrics.install, web.install, audit_usage.install]
EXTENSIONS.append(export_endpoints.install)


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /api/docs with its assets served by us (the bundle ships in fastapi-offline)."""
    import fastapi_offline
    from fastapi import Depends
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    from sensorhub.auth.dependencies import Public

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/api/docs/static", StaticFiles(directory=static), name="swagger-static")

    @app.get("/api/docs", include_in_schema=False, dependencies=[Depends(Public())])
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="sensorhub API",
            swagger_js_url="/api/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/api/docs/static/swagger-ui.css",
            swagger_favicon_url="/api/docs/static/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )


def factory() -> FastAPI:
    """For ``uvicorn --factory sensorhub.app:factory`` (settings from the environment)."""
    return create_app()
