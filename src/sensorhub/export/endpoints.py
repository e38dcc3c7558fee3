"""``/api/datahub/export*``: create exports, list them, download local files through signed URLs."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from sensorhub.api.deps import ctx, request_ip
from sensorhub.auth.dependencies import Public, RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.export import service
from sensorhub.export.schemas import ExportOut, ExportRequest
from sensorhub.export.stores import ExportStore, store_from_settings
from sensorhub.kit.urls import base_url

log = logging.getLogger("sensorhub.export")

router = APIRouter(tags=["export"])

MAX_LIST_LIMIT = 500
# Every answer carrying a download URL (a bearer capability until it expires) or a token: never stored
# by browsers, proxies or caches.
NO_STORE = {"Cache-Control": "no-store"}


def export_store(request: Request) -> ExportStore:
    """The app's export store (built once from the settings)."""
    state = request.app.state
    store: ExportStore | None = getattr(state, "export_store", None)
    if store is None:
        store = store_from_settings(ctx(request).settings)
        state.export_store = store
    return store


def _base_url(request: Request) -> str:
    return base_url(request, ctx(request).settings.base_url)


def _wants_csv(request: Request) -> bool:
    return "text/csv" in request.headers.get("accept", "").lower()


def _attachment(filename: str) -> str:
    return f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"


@router.post(
    "/api/datahub/export",
    response_model=ExportOut,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "The export, or the CSV itself with Accept: text/csv",
        }
    },
)
async def create_export(
    body: ExportRequest,
    request: Request,
    response: Response,
    principal: Principal = Depends(RequireScope("export")),
) -> Any:
    """Export series as a CSV or Parquet file behind a signed, expiring ``download_url`` (no token needed
    to download). One ``timestamp`` column (UTC) plus one column per series named
    ``<entity_id>.<attribute>``. Personal Access Tokens stop at 10,000 rows and say so with
    ``truncated: true``; organisation API keys have a higher, configurable cap.

    With ``Accept: text/csv`` the CSV is streamed in the response instead (no file); the
    ``X-Export-Rows`` and ``X-Export-Truncated`` headers then carry the row count and the cap flag."""
    c = ctx(request)
    if _wants_csv(request):
        inline = await anyio.to_thread.run_sync(service.stream_csv, c.db, principal, body)
        return StreamingResponse(
            inline.body,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": _attachment(inline.filename.rsplit(".", 1)[0] + ".csv"),
                "X-Export-Rows": str(inline.rows),
                "X-Export-Truncated": "true" if inline.truncated else "false",
                "X-Export-Row-Cap": str(inline.row_cap),
                **NO_STORE,
            },
        )

    def run() -> ExportOut:
        return service.create_file_export(
            c.db,
            export_store(request),
            principal,
            body,
            ttl_seconds=c.settings.export_url_ttl_seconds,
            base_url=_base_url(request),
            ip=request_ip(request),
        )

    response.headers.update(NO_STORE)
    return await anyio.to_thread.run_sync(run)


@router.get("/api/datahub/exports", response_model=list[ExportOut])
async def list_exports(
    request: Request,
    response: Response,
    limit: int = Query(50, ge=1, le=MAX_LIST_LIMIT, description=f"1-{MAX_LIST_LIMIT} (default 50)"),
    principal: Principal = Depends(RequireScope("export")),
) -> list[ExportOut]:
    """This credential's recent exports (newest first) with their state: running, ready, failed or
    expired; ready ones carry a fresh ``download_url``."""
    c = ctx(request)
    response.headers.update(NO_STORE)
    return await anyio.to_thread.run_sync(
        lambda: service.list_exports(
            c.db, export_store(request), principal.credential_id, _base_url(request), limit
        )
    )


@router.get("/api/datahub/exports/{export_id}/download", dependencies=[Depends(Public())])
async def download_export(
    export_id: str, request: Request, expires: str | None = None, signature: str | None = None
) -> Response:
    """Download an export file. No token: the signed URL identifies the export, and the credential
    that made it is checked on every request — a changed link is refused with 403, an expired one with
    410, and so is a link whose token was revoked or expired, whose owner was disabled, or which may no
    longer read the exported series (403 saying which). ``HEAD`` and ``Range`` requests are served
    (DuckDB's httpfs and other remote Parquet readers use them). With the S3 store the answer is a
    307 redirect to a presigned URL valid for one minute."""
    c = ctx(request)
    d = await anyio.to_thread.run_sync(
        lambda: service.resolve_download(
            c.db,
            export_store(request),
            c.settings,
            export_id,
            expires,
            signature,
            method=request.method,
        )
    )
    if d.redirect_url is not None:
        return RedirectResponse(d.redirect_url, status_code=307, headers=NO_STORE)
    assert d.path is not None
    return FileResponse(
        d.path,
        media_type=d.content_type,
        headers={"Content-Disposition": _attachment(d.filename), "Cache-Control": "private, no-store"},
    )


# HEAD (same handler; FileResponse sends the headers only), kept out of the schema to avoid a duplicate
# operation id.
router.add_api_route(
    "/api/datahub/exports/{export_id}/download",
    download_export,
    methods=["HEAD"],
    dependencies=[Depends(Public())],
    include_in_schema=False,
)
