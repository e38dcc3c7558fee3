"""HTTP: Akenza assets (``/v3/assets``, Spring Data pages) and device backfill (``/v3/devices/{id}/backfill``).

Assets are entities read through the entities service; a backfill writes through the ingest service.
Errors have Akenza's JSON shape (``{timestamp, path, status, error, message, …}``), chosen by path in
:mod:`sensorhub.api.errors`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sensorhub.api.deps import ctx, get_read_db
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.compat.akenza.schemas import (
    AggregationBody,
    DataQueryBody,
    TimestampFilter,
    asset_json,
    device_data_json,
    duration_us,
    spring_page,
)
from sensorhub.db import utcnow
from sensorhub.entities import service as entities
from sensorhub.entities.service import EntityQuery
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.paging import LimitPolicy
from sensorhub.kit.time import iso, parse_time
from sensorhub.timeseries import device_data, formats, ingest, provisioning
from sensorhub.timeseries.models import HOUR_US, MAX_TOPIC_LENGTH

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
    db: Session = Depends(get_read_db),
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
    db: Session = Depends(get_read_db),
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
    device_id: str,
    request: Request,
    on_conflict: str | None = Query(
        None,
        description="ignore (default: a stored point keeps its value, counted in duplicates) | overwrite",
    ),
    principal: Principal = Depends(RequireScope("ingest")),
) -> Response:
    """Backfill one device: a record ``{timestamp?, topic?, data: {…}}`` or a list of them. Numbers
    (or ``{"value": n, "unit": "CEL"}``) become time-series points; other values become the latest-state
    properties of the entity. All or nothing; idempotent on (attribute, topic, timestamp).
    Returns ``{accepted, duplicates}``; with ``on_conflict=overwrite`` stored points at the same
    timestamps take the new values (``{accepted, duplicates: 0, overwritten}``)."""
    limits = ingest.Limits.from_settings(ctx(request).settings)
    conflict = ingest.check_on_conflict(on_conflict)
    raw = await _body(request, limits)
    access = principal.access("ingest")
    writer = provisioning.Writer(principal.credential_id, principal.user_id, "backfill")
    now = utcnow()
    result = await ingest.write_off_loop(
        ctx(request).db,
        lambda: ingest.prepare(raw, now, limits),
        lambda s, prepared: ingest.check_target(s, access, device_id, prepared, limits, writer),
        lambda s, prepared: ingest.store(s, access, device_id, prepared, limits, conflict, writer),
    )
    return formats.json_response(result, headers={"X-Sensorhub-On-Conflict": conflict})


# --- device data (Akenza's query API) -----------------------------------------------------------------

TAGS_DATA: list[str | Enum] = ["Akenza device data"]
TIMESERIES = RequireScope("timeseries")


def _time(text: str | None, what: str) -> datetime | None:
    return None if text is None else parse_time(text, what)


def _bounds(f: TimestampFilter | None) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` of Akenza's {gt, gte, lt, lte} (gt/lte: one microsecond on, as times are µs)."""
    if f is None:
        return None, None
    if f.gt is not None and f.gte is not None:
        raise BadRequest("timestamp: give gt or gte, not both")
    if f.lt is not None and f.lte is not None:
        raise BadRequest("timestamp: give lt or lte, not both")
    us = timedelta(microseconds=1)
    start = _time(f.gte, "timestamp.gte") or (
        t + us if (t := _time(f.gt, "timestamp.gt")) is not None else None
    )
    end = _time(f.lt, "timestamp.lt") or (
        t + us if (t := _time(f.lte, "timestamp.lte")) is not None else None
    )
    return start, end


@router.post(
    "/v3/devices/{device_id}/query", tags=TAGS_DATA, summary="Query device data (samples of one topic)"
)
async def query_device_data(
    device_id: str, body: DataQueryBody, request: Request, principal: Principal = Depends(TIMESERIES)
) -> Response:
    """The device's samples on ``topic`` (default ``default``): each ``{deviceId, topic, timestamp,
    data}`` holds the numeric values reported at that timestamp. ``timestamp`` filters with
    ``gt``/``gte``/``lt``/``lte``; ``skip`` then ``limit`` (default 8000) samples, ``sort`` by time
    (``DESC``, newest first, by default)."""
    start, end = _bounds(body.timestamp)
    access = principal.access("timeseries")
    newest = body.sort.upper() == "DESC"
    e, rows = await ctx(request).db.read_off_loop(
        lambda s: device_data.samples(
            s, access, device_id, body.topic, start, end, body.limit, body.skip, newest
        ),
    )
    return formats.json_response([device_data_json(e.entity_id, r) for r in rows])


@router.get("/v3/devices/{device_id}/query/topics", tags=TAGS_DATA, summary="Topics of a device's data")
async def device_topics(
    device_id: str, request: Request, principal: Principal = Depends(TIMESERIES)
) -> Response:
    """The topics the device has data on (a list of strings, sorted)."""
    access = principal.access("timeseries")
    _e, names = await ctx(request).db.read_off_loop(lambda s: device_data.topics(s, access, device_id))
    return formats.json_response(names)


@router.get("/v3/devices/{device_id}/query/latest-sample", tags=TAGS_DATA, summary="A device's latest sample")
async def latest_sample(
    device_id: str,
    request: Request,
    topic: str | None = Query(
        None, min_length=1, max_length=MAX_TOPIC_LENGTH, description="Default: any topic"
    ),
    principal: Principal = Depends(TIMESERIES),
) -> Response:
    """The latest sample ``{deviceId, topic, timestamp, data}`` on ``topic``, or on whichever topic
    reported last; 404 when the device has no readable data."""
    access = principal.access("timeseries")
    e, sample = await ctx(request).db.read_off_loop(
        lambda s: device_data.latest_sample(s, access, device_id, topic)
    )
    if sample is None:
        on = f" on topic '{topic}'" if topic else ""
        raise NotFound(f"device '{device_id}' has no data{on}")
    return formats.json_response(device_data_json(e.entity_id, sample))


def _series_read(device_id: str, body: AggregationBody, aggregation: str) -> device_data.SeriesRead:
    """The series an Akenza query body reads, over its interval."""
    start = parse_time(body.interval.from_, "interval.from")
    end = parse_time(body.interval.to, "interval.to")
    return device_data.SeriesRead(device_id, body.topic, body.dataKey, aggregation, start, end)


def _series_route(hourly: bool) -> Any:
    async def route(
        device_id: str, body: AggregationBody, request: Request, principal: Principal = Depends(TIMESERIES)
    ) -> Response:
        agg = body.aggregation()
        bucket = duration_us(body.bucketInterval)
        if hourly and bucket % HOUR_US:
            raise BadRequest("bucketInterval must be whole hours on the hourly aggregates (e.g. PT1H, P1D)")
        read = _series_read(device_id, body, agg)
        access = principal.access("timeseries")
        e, ts, vals = await ctx(request).db.read_off_loop(
            lambda s: device_data.time_series(s, access, read, bucket)
        )
        return formats.json_response(
            {
                "deviceId": e.entity_id,
                "topic": body.topic,
                "dataKey": body.dataKey,
                "timestamps": [iso(int(t)) for t in ts],
                "dataPoints": vals,
            }
        )

    return route


def _kpi_route() -> Any:
    async def route(
        device_id: str, body: AggregationBody, request: Request, principal: Principal = Depends(TIMESERIES)
    ) -> Response:
        read = _series_read(device_id, body, body.aggregation())
        access = principal.access("timeseries")
        e, value = await ctx(request).db.read_off_loop(lambda s: device_data.kpi(s, access, read))
        return formats.json_response(
            {"deviceId": e.entity_id, "topic": body.topic, "dataKey": body.dataKey, "kpi": value}
        )

    return route


for _path, _hourly in (("raw", False), ("aggregated/hourly", True)):
    router.add_api_route(
        f"/v3/devices/{{device_id}}/query/{_path}/time-series",
        _series_route(_hourly),
        methods=["POST"],
        tags=TAGS_DATA,
        summary=f"Aggregated time series ({_path})",
        description="`accumulator` (MIN, MAX, AVG, SUM, COUNT, FIRST, LAST) of `dataKey` on `topic` per "
        "epoch-aligned `bucketInterval` (ISO 8601 duration, default PT1H) over `interval` [from, to); only "
        "buckets with data. Exact: read from sensorhub's minute/hour/day rollups and raw edges.",
    )
    router.add_api_route(
        f"/v3/devices/{{device_id}}/query/{_path}/kpi",
        _kpi_route(),
        methods=["POST"],
        tags=TAGS_DATA,
        summary=f"One aggregated value (KPI, {_path})",
        description="`accumulator` of `dataKey` on `topic` over `interval` [from, to); `kpi` is null "
        "when the interval holds no point.",
    )
