"""The ASGI application factory: what runs, in which order, readable top to bottom.

``create_app`` adds the middleware (outermost last), the routers, the API docs and the web UI; its
lifespan runs the background steps (the Redis invalidation bus, the export cleanup task, the push event
relay and the background jobs of :mod:`sensorhub.background`) and releases
the database when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from sensorhub import __version__, web
from sensorhub.accounts.endpoints import router as accounts_router
from sensorhub.api import errors as api_errors
from sensorhub.api import hot as hot_routes
from sensorhub.api.health import router as health_router
from sensorhub.api.middleware import EdgeMiddleware
from sensorhub.api.openapi import build_openapi
from sensorhub.auth.dependencies import Public
from sensorhub.auth.endpoints import router as session_router
from sensorhub.background import build_runner
from sensorhub.bus import RedisBus
from sensorhub.compat.akenza.routes import router as akenza_router
from sensorhub.compat.datacake.routes import router as datacake_router
from sensorhub.compat.influxdb.routes import router as influxdb_router
from sensorhub.compat.leaf.routes import router as leaf_router
from sensorhub.compat.ngsi_ld.routes import router as ngsi_ld_router
from sensorhub.compat.ngsi_ld.subscriptions import router as ngsi_ld_subscriptions_router
from sensorhub.compat.ngsi_ld.temporal import router as ngsi_ld_temporal_router
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.export import endpoints as export_endpoints
from sensorhub.export import service as export_service
from sensorhub.export.stores import ExportStore, store_from_settings
from sensorhub.jobs import JobRunner
from sensorhub.logs import install_redaction
from sensorhub.mqtt.broker import MqttService, embedded_broker, mqtt_enabled
from sensorhub.mqtt.plugin_api import router as mqtt_plugin_router
from sensorhub.notices.endpoints import router as notices_router
from sensorhub.push import stream as live_stream
from sensorhub.push.endpoints import router as push_router
from sensorhub.push.hub import PushBus
from sensorhub.timeseries.endpoints import router as timeseries_router
from sensorhub.tokens.endpoints import router as tokens_router

# Every API router of the application, one line each.
ROUTERS: list[APIRouter] = [
    health_router,
    session_router,
    tokens_router,
    notices_router,
    accounts_router,
    ngsi_ld_router,
    ngsi_ld_temporal_router,
    ngsi_ld_subscriptions_router,
    akenza_router,
    timeseries_router,
    leaf_router,
    export_endpoints.router,
    live_stream.router,
    datacake_router,
    push_router,
    influxdb_router,
    mqtt_plugin_router,
]

DESCRIPTION = """
Sensor data behind scoped, revocable access tokens.

**Data routes** take a token: `Authorization: Bearer <token>` (or `Token <token>`), or `x-api-key: <key>`
for organisation API keys. **Management routes** (`/api/tokens`, `/api/orgs/…`) need a session from
`POST /api/auth/login`; tokens can never manage tokens.

**GraphQL** (Datacake's API) is served at `/graphql` with the same credentials; it is described by its
own schema (introspection, or `GET /graphql/schema.graphql`), not by this document.
"""


def create_app(settings: Settings | None = None, context: AppContext | None = None) -> FastAPI:
    settings = settings or Settings()
    install_redaction(settings.token_prefix)
    ctx = context or AppContext.build(settings)
    export_store = store_from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as steps:
            if ctx.bus is not None:
                await steps.enter_async_context(_redis_bus(ctx.bus))
            await steps.enter_async_context(_export_cleanup(ctx, export_store))
            if ctx.push_bus is not None:
                await steps.enter_async_context(_push_bus(ctx.push_bus))
            if settings.embedded_worker:
                await steps.enter_async_context(_background_jobs(build_runner(ctx)))
            if mqtt_enabled(settings):
                app.state.mqtt = await steps.enter_async_context(_mqtt_broker(ctx))
            steps.push_async_callback(ctx.live.stop)  # the live hub starts with its first stream
            steps.push_async_callback(_stop_mqtt_relayed, app)
            yield
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
    app.state.export_store = export_store
    # Extra /readyz checks by name (the database and the export store are always checked).
    app.state.readiness_probes = {"redis": ctx.bus.probe} if ctx.bus is not None else {}
    if ctx.db.replica is not None:
        app.state.readiness_probes["database_replica"] = ctx.db.replica.probe
    api_errors.install(app)
    # One middleware: request ids, headers, the body limit, request metrics, the token-use audit.
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes, hsts=settings.require_https)
    for r in ROUTERS:
        app.include_router(r)
    _mount_docs(app)
    web.install(app, ctx)  # the HTML pages, their static files and their error pages
    hot_routes.install(app)  # last: a few read-only routes reached without the nested router walk
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _redis_bus(bus: RedisBus) -> AsyncIterator[None]:
    """Lifespan step: the Redis subscriber thread runs while the app does."""
    bus.start()
    # Give the first subscription a moment so the first requests can use the cache; not fatal.
    for _ in range(40):
        if bus.healthy():
            break
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        await asyncio.to_thread(bus.stop)


@asynccontextmanager
async def _export_cleanup(ctx: AppContext, store: ExportStore) -> AsyncIterator[None]:
    """Lifespan step: a task deleting expired export files while the app runs."""
    task = asyncio.create_task(
        export_service.cleanup_periodically(
            ctx.db, store, stale_after_seconds=ctx.settings.export_url_ttl_seconds
        ),
        name="sensorhub-export-cleanup",
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def _push_bus(bus: PushBus) -> AsyncIterator[None]:
    """Lifespan step: new outbox event ids are relayed between processes over Redis."""
    bus.start()
    try:
        yield
    finally:
        await asyncio.to_thread(bus.stop)


@asynccontextmanager
async def _background_jobs(runner: JobRunner) -> AsyncIterator[None]:
    """Lifespan step (the embedded worker): the background jobs (push delivery, periodic jobs) run on
    the runner's threads while the app does; ``sensorhub worker`` runs the same runner on its own."""
    runner.start()
    try:
        yield
    finally:
        await asyncio.to_thread(runner.stop)


async def _stop_mqtt_relayed(app: FastAPI) -> None:
    """The writer of the QoS 1 messages the Mosquitto plugin has stored (``/internal/mqtt/ingest``)."""
    relayed = getattr(app.state, "mqtt_relayed", None)
    if relayed is not None:
        app.state.mqtt_relayed = None  # bound to this event loop: a restarted app makes a new one
        await relayed.stop()


@asynccontextmanager
async def _mqtt_broker(ctx: AppContext) -> AsyncIterator[MqttService]:
    """Lifespan step: the embedded MQTT broker (docs/mqtt.md) runs while the app does."""
    async with embedded_broker(ctx) as service:
        yield service


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /api/docs with its assets served by us (the bundle ships in fastapi-offline)."""
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
