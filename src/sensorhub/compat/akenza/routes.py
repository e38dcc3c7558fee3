"""HTTP: Akenza assets (``/v3/assets``, Spring Data pages) and device backfill (``/v3/devices/{id}/backfill``).

Assets are entities read through the entities service; a backfill writes through the ingest service.
Errors have Akenza's JSON shape (``{timestamp, path, status, error, message, …}``), chosen by path in
:mod:`sensorhub.api.errors`.
"""

from __future__ import annotations

from enum import Enum

import orjson
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sensorhub import metrics
from sensorhub.api.deps import ctx, get_db
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.compat.akenza.schemas import asset_json, spring_page
from sensorhub.db import utcnow
from sensorhub.entities import service as entities
from sensorhub.entities.service import EntityQuery
from sensorhub.kit.paging import LimitPolicy
from sensorhub.timeseries import formats, ingest

router = APIRouter()
ENTITIES = RequireScope("entities")
TAGS_AKENZA: list[str | Enum] = ["Akenza assets"]
# Spring's `size`: 25 when absent, values above 500 are clamped to 500.
SIZES = LimitPolicy(default=25, maximum=500, clamp=True, param="size")


@router.get("/v3/assets", tags=TAGS_AKENZA, summary="List assets (Spring page)")
def list_assets(
    workspaceId: str | None = Query(None, description="Workspace id or slug"),
    page: int = Query(0, description="0-based page number"),
    size: int = Query(SIZES.default, description=f"Page size (at most {SIZES.maximum})"),
    type: str | None = Query(None, description="Entity type(s), comma-separated"),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    access = principal.access("entities")
    ws_ids = entities.asset_workspaces(access, principal.workspaces, workspaceId)
    sel = entities.make_selector(entities.split_list(type, "type"))
    query = EntityQuery(selectors=(sel,) if sel.types else (), workspace_ids=ws_ids)
    size = SIZES.resolve(size)
    rows, total = entities.list_assets(db, access, query, page, size)
    content = [asset_json(e, entities.entity_attrs(access, e)) for e in rows]
    body = spring_page(content, page, size, total)
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/v3/assets/{asset_id}", tags=TAGS_AKENZA, summary="Get one asset")
def get_asset(
    asset_id: str,
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    access = principal.access("entities")
    e = entities.get_entity(db, access, asset_id)
    body = asset_json(e, entities.entity_attrs(access, e))
    return Response(orjson.dumps(body), media_type="application/json")


# --- backfill ---------------------------------------------------------------------------------------


_RECORD_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "timestamp": {"type": "string", "format": "date-time", "description": "Default: now"},
        "topic": {"type": "string", "default": "default"},
        "data": {
            "type": "object",
            "description": 'Numbers (or {"value": n, "unit": "CEL"}) become points; other values properties',
            "additionalProperties": True,
        },
    },
}
_BACKFILL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_RECORD_SCHEMA, {"type": "array", "items": _RECORD_SCHEMA}]},
                "example": [
                    {"timestamp": "2026-01-01T00:00:00Z", "data": {"temperature": 21.3, "status": "ok"}}
                ],
            }
        },
    }
}


async def _body(request: Request, limits: ingest.Limits) -> bytes:
    """The request body, refused (413) as soon as it outgrows ``limits.max_body_bytes``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit():
        limits.check_body(int(length))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        limits.check_body(size)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/v3/devices/{device_id}/backfill", tags=["ingest"], openapi_extra=_BACKFILL_BODY)
async def backfill(
    device_id: str, request: Request, principal: Principal = Depends(RequireScope("ingest"))
) -> Response:
    """Backfill one device: a record ``{timestamp?, topic?, data: {…}}`` or a list of them. Numbers
    (or ``{"value": n, "unit": "CEL"}``) become time-series points; other values become the latest-state
    properties of the entity. All or nothing; idempotent on (attribute, timestamp).
    Returns ``{accepted, duplicates}``."""
    limits = ingest.Limits.from_settings(ctx(request).settings)
    raw = await _body(request, limits)
    access = principal.access("ingest")
    now = utcnow()
    db = ctx(request).db

    def work() -> dict[str, int]:
        # Parse and check everything first; then what the database decides (visible device, units,
        # new series) in a read transaction, so that a refused request never waits for or holds the
        # write lock; only then the write transaction, which repeats those checks under the lock.
        prepared = ingest.prepare(raw, now, limits)
        with db.session() as s:
            ingest.check_target(s, access, device_id, prepared, limits)
        with db.transaction() as s:
            return ingest.store(s, access, device_id, prepared, limits)

    result = await to_thread.run_sync(work)
    metrics.ingest_points.inc(result["accepted"])
    metrics.ingest_duplicates.inc(result["duplicates"])
    return formats.json_response(result)
