"""HTTP routes of sensorhub's own time-series API: v2 reads and telemetry (thin: parse, call one
service function, render). The seed families' routes over the same services (LEAF ``/api/data``,
Akenza backfill) live in :mod:`sensorhub.compat`.

Hot paths are ``async def``: authentication is async, the database work runs in one worker-thread hop,
and bodies are serialised with orjson straight from numpy (no ``jsonable_encoder``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from starlette.responses import Response

from sensorhub.api import threads
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.kit.time import parse_time
from sensorhub.schemas import StrictModel
from sensorhub.timeseries import formats, reads, telemetry
from sensorhub.timeseries.names import MAX_ATTRIBUTE_LENGTH, MAX_DEVICE_REF_LENGTH
from sensorhub.timeseries.query import DEFAULT_RESOLUTION, MAX_RESOLUTION

router = APIRouter()

# Paging parameters are bounded where they are declared: a value beyond them (2**63, 1e30) is a 400
# naming the parameter, never an integer the database driver cannot bind.
PageLimit = Annotated[int, Query(ge=1, le=telemetry.LIMITS.maximum, description=telemetry.LIMITS.range_text)]
PageOffset = Annotated[
    int, Query(ge=0, le=telemetry.OFFSETS.maximum, description=f"0-{telemetry.OFFSETS.maximum}")
]


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
    frame = await threads.read(
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
    frame = await threads.read(
        request,
        lambda s: reads.query(s, access, start, end, body.resolution, refs, body.aggregation, body.fill),
    )
    if media == formats.JSON:
        return formats.json_response(formats.query_body(frame))
    return formats.render(frame, media)


# --- telemetry ---------------------------------------------------------------------------------------


@router.get("/api/devices", tags=["telemetry"])
async def list_devices(
    request: Request,
    type: str | None = None,
    limit: PageLimit = telemetry.LIMITS.default,
    offset: PageOffset = 0,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """Devices (entities with time series) visible to the credential, with their latest values."""
    access = principal.access("telemetry")
    ws = _workspaces(principal)
    rows = await threads.read(request, lambda s: telemetry.list_devices(s, access, ws, type, limit, offset))
    return formats.json_response(rows)


@router.get("/api/devices/{device_id}", tags=["telemetry"])
async def get_device(
    device_id: str, request: Request, principal: Principal = Depends(RequireScope("telemetry"))
) -> Response:
    access = principal.access("telemetry")
    ws = _workspaces(principal)
    return formats.json_response(
        await threads.read(request, lambda s: telemetry.get_device(s, access, ws, device_id))
    )


@router.get("/api/sensors", tags=["telemetry"])
async def list_sensors(
    request: Request,
    limit: PageLimit = telemetry.LIMITS.default,
    offset: PageOffset = 0,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """One row per series ``{id: "<entity_id>.<attribute>", entity_id, attribute, value, unit, observedAt}``."""
    access = principal.access("telemetry")
    return formats.json_response(
        await threads.read(request, lambda s: telemetry.list_sensors(s, access, limit, offset))
    )


@router.get("/api/sensors/{sensor_id}", tags=["telemetry"])
async def get_sensor(
    sensor_id: str, request: Request, principal: Principal = Depends(RequireScope("telemetry"))
) -> Response:
    access = principal.access("telemetry")
    return formats.json_response(
        await threads.read(request, lambda s: telemetry.get_sensor(s, access, sensor_id))
    )
