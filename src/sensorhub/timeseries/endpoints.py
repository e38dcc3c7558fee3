"""HTTP routes of the time-series domain (thin: parse, call one service function, render).

Hot paths are ``async def``: authentication is async, the database work runs in one worker-thread hop,
and bodies are serialised with orjson straight from numpy (no ``jsonable_encoder``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.responses import Response

from sensorhub import metrics
from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.db import utcnow
from sensorhub.schemas import StrictModel
from sensorhub.timeseries import formats, ingest, leaf, reads, telemetry
from sensorhub.timeseries.names import MAX_ATTRIBUTE_LENGTH, MAX_DEVICE_REF_LENGTH
from sensorhub.timeseries.query import DEFAULT_RESOLUTION, MAX_RESOLUTION
from sensorhub.kit.time import parse_time

router = APIRouter()

# Paging parameters are bounded where they are declared: a value beyond them (2**63, 1e30) is a 400
# naming the parameter, never an integer the database driver cannot bind.
PageLimit = Annotated[int, Query(ge=1, le=telemetry.MAX_PAGE, description=f"1-{telemetry.MAX_PAGE}")]
PageOffset = Annotated[int, Query(ge=0, le=telemetry.MAX_OFFSET, description=f"0-{telemetry.MAX_OFFSET}")]

T = TypeVar("T")


async def _read(request: Request, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` with a read session in one worker-thread hop."""
    db = ctx(request).db

    def work() -> T:
        with db.session() as s:
            return fn(s)

    return await to_thread.run_sync(work)


def _workspaces(p: Principal) -> dict[str, str]:
    return {w.id: w.slug for w in p.workspaces.values()}


# --- time series v2 -------------------------------------------------------------------------------


@router.get("/api/timeseries/v2/entities/{entity_id}/data", tags=["timeseries"])
async def entity_data(
    request: Request,
    entity_id: str,
    start_time: Annotated[str, Query(description="ISO 8601, inclusive (e.g. 2026-01-01T00:00:00Z)")],
    end_time: Annotated[str, Query(description="ISO 8601, exclusive")],
    attribute: Annotated[
        list[str] | None,
        Query(
            description=f"Repeatable (at most {reads.MAX_READ_ATTRIBUTES}); all numeric attributes if absent"
        ),
    ] = None,
    resolution: Annotated[
        int, Query(ge=1, le=MAX_RESOLUTION, description="At most this many points (1-100000)")
    ] = DEFAULT_RESOLUTION,
    aggregation: Annotated[str, Query(description="avg|min|max|sum|count|first|last")] = "avg",
    format: Annotated[str | None, Query(description="json|csv|arrow (overrides Accept)")] = None,
    principal: Principal = Depends(RequireScope("timeseries")),
) -> Response:
    """An entity's numeric attributes over ``[start_time, end_time)``: raw points when at most
    ``resolution`` of them fall in the range, else aggregated into the smallest standard bucket
    (1s … 7d) that fits; bucket timestamps are epoch-aligned bucket starts. ``Accept:
    application/vnd.apache.arrow.stream`` or ``text/csv`` (or ``format=``) switch the encoding."""
    media = formats.negotiate(request.headers.get("accept"), format)
    start = parse_time(start_time, "start_time")
    end = parse_time(end_time, "end_time")
    access = principal.access("timeseries")
    frame = await _read(
        request,
        lambda s: reads.entity_data(s, access, entity_id, start, end, attribute, resolution, aggregation),
    )
    if media == formats.JSON:
        return formats.json_response(formats.entity_body(frame))
    return formats.render(frame, media)


class SeriesSpec(StrictModel):
    entity_id: str = Field(
        description="Entity id (or asset id)", min_length=1, max_length=MAX_DEVICE_REF_LENGTH
    )
    attribute: str = Field(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)
    aggregation: Literal["avg", "min", "max", "sum", "count", "first", "last"] | None = None


class QueryBody(StrictModel):
    start_time: str = Field(description="ISO 8601, inclusive")
    end_time: str = Field(description="ISO 8601, exclusive")
    resolution: int = Field(
        DEFAULT_RESOLUTION, ge=1, le=MAX_RESOLUTION, description="At most this many points (1-100000)"
    )
    series: list[SeriesSpec] = Field(min_length=1, max_length=reads.MAX_QUERY_SERIES)
    aggregation: Literal["avg", "min", "max", "sum", "count", "first", "last"] = "avg"
    fill: Literal["previous"] | None = None


@router.post("/api/timeseries/v2/query", tags=["timeseries"])
async def query(
    body: QueryBody,
    request: Request,
    format: Annotated[str | None, Query(description="json|csv|arrow (overrides Accept)")] = None,
    principal: Principal = Depends(RequireScope("timeseries")),
) -> Response:
    """Several series on one aligned time axis, keyed by ``<entity_id>.<attribute>`` (for PowerBI,
    Tableau, notebooks). ``fill: "previous"`` carries values forward over gaps."""
    media = formats.negotiate(request.headers.get("accept"), format)
    start = parse_time(body.start_time, "start_time")
    end = parse_time(body.end_time, "end_time")
    refs = [reads.SeriesRef(x.entity_id, x.attribute, x.aggregation) for x in body.series]
    access = principal.access("timeseries")
    frame = await _read(
        request,
        lambda s: reads.query(s, access, start, end, body.resolution, refs, body.aggregation, body.fill),
    )
    if media == formats.JSON:
        return formats.json_response(formats.query_body(frame))
    return formats.render(frame, media)


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


# --- telemetry ---------------------------------------------------------------------------------------


@router.get("/api/devices", tags=["telemetry"])
async def list_devices(
    request: Request,
    type: str | None = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """Devices (entities with time series) visible to the credential, with their latest values."""
    access = principal.access("telemetry")
    ws = _workspaces(principal)
    rows = await _read(request, lambda s: telemetry.list_devices(s, access, ws, type, limit, offset))
    return formats.json_response(rows)


@router.get("/api/devices/{device_id}", tags=["telemetry"])
async def get_device(
    device_id: str, request: Request, principal: Principal = Depends(RequireScope("telemetry"))
) -> Response:
    access = principal.access("telemetry")
    ws = _workspaces(principal)
    return formats.json_response(
        await _read(request, lambda s: telemetry.get_device(s, access, ws, device_id))
    )


@router.get("/api/sensors", tags=["telemetry"])
async def list_sensors(
    request: Request,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """One row per series ``{id: "<entity_id>.<attribute>", entity_id, attribute, value, unit, observedAt}``."""
    access = principal.access("telemetry")
    return formats.json_response(
        await _read(request, lambda s: telemetry.list_sensors(s, access, limit, offset))
    )


@router.get("/api/sensors/{sensor_id}", tags=["telemetry"])
async def get_sensor(
    sensor_id: str, request: Request, principal: Principal = Depends(RequireScope("telemetry"))
) -> Response:
    access = principal.access("telemetry")
    return formats.json_response(await _read(request, lambda s: telemetry.get_sensor(s, access, sensor_id)))


# --- LEAF --------------------------------------------------------------------------------------------


@router.get("/api/data/recent", tags=["leaf"])
async def data_recent(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=leaf.MAX_LIMIT, description="1-10000")] = leaf.DEFAULT_RECENT,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """The most recent readings across everything the credential may read, newest first."""
    access = principal.access("telemetry")
    return formats.json_response(await _read(request, lambda s: leaf.recent(s, principal, access, limit)))


@router.get("/api/data", tags=["leaf"])
async def data(
    request: Request,
    organisation: str | None = None,
    department: str | None = None,
    entity: str | None = None,
    metric: str | None = None,
    from_: Annotated[str | None, Query(alias="from", description="ISO 8601 or a date, inclusive")] = None,
    to: Annotated[str | None, Query(description="ISO 8601 or a date, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=leaf.MAX_LIMIT, description="1-10000")] = leaf.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=leaf.MAX_CURSOR_LENGTH)] = None,
    principal: Principal = Depends(RequireScope("timeseries")),
) -> Response:
    """Rows ``{time, entity, metric, value, tags}`` ordered by (time, entity, metric). While more rows
    exist the response carries ``Link: <…&cursor=…>; rel="next"``."""
    start = leaf.parse_bound(from_, "from")
    end = leaf.parse_bound(to, "to")
    access = principal.access("timeseries")

    def fn(s: Session) -> tuple[list[dict[str, Any]], str | None]:
        return leaf.data(
            s,
            principal,
            access,
            organisation=organisation,
            department=department,
            entity=entity,
            metric=metric,
            start=start,
            end=end,
            limit=limit,
            cursor=cursor,
        )

    rows, next_cursor = await _read(request, fn)
    headers = {}
    if next_cursor is not None:
        headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
    return formats.json_response(rows, headers=headers)
